"""Requests in flight on the driver: what is kept of requests closed as lost stays bounded."""

from __future__ import annotations

import pytest

from aiquery.coordinator import requests
from aiquery.coordinator.requests import CLOSED_KEEP_S, GRACE_S, InFlight


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def close_as_lost(in_flight: InFlight, clock: Clock, workers: int, each: int, first_task: int = 0) -> list[str]:
    """``workers`` workers begin ``each`` requests in one task each, vanish, and their tasks fail."""
    ids: list[str] = []
    for number in range(workers):
        worker, task = f"w{first_task + number}", first_task + number
        begun = [f"{worker}-r{index}" for index in range(each)]
        in_flight.begun(worker, "journal", begun, task)
        in_flight.disconnected(worker)
        in_flight.task_failed(task)
        ids += begun
    clock.now += GRACE_S + 1
    closed = in_flight.lost()
    assert sorted(closed["journal"]) == sorted(ids)
    return ids


def test_requests_closed_as_lost_are_forgotten_once_their_late_end_came_and_a_resend_is_still_dropped() -> None:
    clock = Clock()
    in_flight = InFlight(clock)
    ids = close_as_lost(in_flight, clock, workers=10, each=1000)
    assert in_flight.closed_count() == 10_000
    for number in range(10):  # each worker comes back and delivers its ends: all dropped, all settled
        worker = f"w{number}"
        in_flight.connected(worker)
        late = [request_id for request_id in ids if request_id.startswith(f"{worker}-")]
        assert in_flight.unrecorded(worker, late[:500]) == [] and in_flight.unrecorded(worker, late[500:]) == []
    assert in_flight.closed_count() == 0
    # A further copy is still dropped, whoever delivers it; a new end is kept.
    assert in_flight.unrecorded("w3", ["w3-r7", "new"]) == [1]
    assert in_flight.unrecorded("w5", ["w3-r8", "w3-r8", "new"]) == [2]


def test_requests_closed_as_lost_whose_end_never_comes_are_forgotten_after_a_while() -> None:
    clock = Clock()
    in_flight = InFlight(clock)
    close_as_lost(in_flight, clock, workers=5, each=200)
    clock.now += CLOSED_KEEP_S / 2
    in_flight.lost()
    assert in_flight.closed_count() == 1000  # a late end is still dropped for a while
    assert in_flight.unrecorded("w1", ["w1-r3"]) == []
    clock.now += CLOSED_KEEP_S
    in_flight.lost()
    assert in_flight.closed_count() == 0


def test_requests_closed_as_lost_are_remembered_up_to_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(requests, "MAX_CLOSED", 1000)
    clock = Clock()
    in_flight = InFlight(clock)
    for round_number in range(5):
        close_as_lost(in_flight, clock, workers=3, each=500, first_task=round_number * 10)
        assert in_flight.closed_count() <= 1000
    assert in_flight.closed_count() == 1000
    assert in_flight.unrecorded("w42", ["w42-r499"]) == []  # the newest are the ones kept
