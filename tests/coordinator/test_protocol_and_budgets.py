"""The coordinator's pure parts: frames, the secret's challenge, and budget leases in proportion to demand."""

from __future__ import annotations

import random

import pytest

from aiquery.config import Secret
from aiquery.coordinator.budgets import LEASE_S, MIN_SHARE, Budgets
from aiquery.coordinator.handshake import coordinator_proof, proven, worker_proof
from aiquery.coordinator.protocol import FrameReader, ProtocolError, encode_frame, new_secret
from aiquery.coordinator.task_kills import KilledTasks


def test_frames_survive_any_split_of_the_stream() -> None:
    frames = [({"op": "sync", "seq": i, "b": [f"r{i}"]}, f"payload {i}\n".encode() * i) for i in range(20)]
    stream = b"".join(encode_frame(meta, payload) for meta, payload in frames)
    cuts = sorted(random.Random(7).sample(range(1, len(stream)), 40))
    reader = FrameReader()
    got = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        got.extend(reader.feed(stream[start:end]))
    assert got == frames


def test_a_frame_too_large_or_not_json_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="too large"):
        list(FrameReader().feed(b"\xff\xff\xff\xff\x00\x00\x00\x00"))
    with pytest.raises(ProtocolError, match="not JSON"):
        list(FrameReader().feed(b"\x00\x00\x00\x03\x00\x00\x00\x00abc"))


def test_the_proofs_depend_on_secret_nonces_and_side_and_never_contain_the_secret() -> None:
    secret = new_secret()
    ours, theirs = b"n" * 32, b"w" * 32
    proof = worker_proof(secret, ours, theirs)
    assert proven(proof, worker_proof(secret, ours, theirs))
    assert not proven(proof, worker_proof(secret, b"m" * 32, theirs))
    assert not proven(proof, worker_proof(secret, ours, b"m" * 32))
    assert not proven(proof, worker_proof(Secret("another"), ours, theirs))
    # A worker's proof cannot be reflected as the coordinator's, for the same nonces or swapped ones.
    assert not proven(coordinator_proof(secret, ours, theirs), proof)
    assert not proven(coordinator_proof(secret, theirs, ours), worker_proof(secret, ours, theirs))
    for malformed in (None, 7, ["x"], "é" * 64, "\ud800" * 64):
        assert not proven(proof, malformed)
    assert secret.reveal() not in proof and secret.reveal() not in repr(secret)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def lease(budgets: Budgets, worker: str, calls: float, rpm: float | None = 6000) -> float | None:
    return budgets.sync(worker, {"ep": [calls, 0.0, rpm, None]}, None)["ep"][0]


def test_leases_follow_demand_and_never_add_up_past_the_rate() -> None:
    clock = Clock()
    budgets = Budgets(clock)
    assert lease(budgets, "a", 500) == pytest.approx(100.0)  # alone: the whole 100/s
    # b arrives: it gets only what nobody holds (nothing yet), a shrinks to its share at its next renewal.
    assert lease(budgets, "b", 500) == MIN_SHARE
    clock.now += 0.25
    assert lease(budgets, "a", 500) == pytest.approx(50.0)
    assert lease(budgets, "b", 500) == pytest.approx(50.0)
    # Demand 9:1 gives shares 9:1: b shrinks at once, a grows into what b gave back at its next renewal.
    clock.now += 0.25
    assert lease(budgets, "a", 900) == pytest.approx(50.0)
    assert lease(budgets, "b", 100) == pytest.approx(10.0)
    assert lease(budgets, "a", 900) == pytest.approx(90.0)
    # b finishes: its share is free at once, and a takes it at its next renewal.
    clock.now += 0.25
    assert lease(budgets, "b", 0) == MIN_SHARE
    assert lease(budgets, "a", 900) == pytest.approx(100.0)


def test_a_worker_that_stops_renewing_loses_its_share_after_the_lease() -> None:
    clock = Clock()
    budgets = Budgets(clock)
    lease(budgets, "a", 10)
    clock.now += 0.1
    assert lease(budgets, "b", 10) == MIN_SHARE  # a holds everything
    clock.now += LEASE_S + 0.01  # a went silent
    assert lease(budgets, "b", 10) == pytest.approx(100.0)


def test_random_demands_never_lease_more_than_the_rate() -> None:
    clock = Clock()
    budgets = Budgets(clock)
    rng = random.Random(3)
    workers = [f"w{i}" for i in range(8)]
    held: dict[str, tuple[float, float]] = {}
    for _ in range(2000):
        clock.now += rng.uniform(0.0, 0.3)
        worker = rng.choice(workers)
        granted = lease(budgets, worker, rng.choice([0, 0, 1, 5, 50, 500]))
        assert granted is not None
        held[worker] = (granted, clock.now + LEASE_S)
        live = sum(rate for rate, expires in held.values() if expires > clock.now and rate > MIN_SHARE)
        assert live <= 100.0 + 1e-6


def test_without_a_configured_budget_the_pace_is_learned_from_everyones_429s() -> None:
    clock = Clock()
    budgets = Budgets(clock)
    assert lease(budgets, "a", 100, rpm=None) is None  # no limit seen: no pacing
    # Two workers see the same limit; together they tell one pace.
    for _ in range(4):
        for worker in ("a", "b"):
            clock.now += 0.5
            budgets.sync(worker, None, {"ep": [50, 200]})
    rate = budgets.paces()["ep"]
    assert rate is not None and rate < 150
    assert lease(budgets, "a", 100, rpm=None) == pytest.approx(rate)


def test_a_failed_job_kills_the_tasks_of_the_stages_no_other_active_job_needs() -> None:
    killed = KilledTasks()
    killed.job_started(1, [10, 11])
    killed.job_started(2, [11, 12])  # stage 11 is shared (a shuffle both jobs read)
    for task, stage in ((100, 10), (101, 11), (102, 12)):
        killed.task_started(task, stage)
    assert killed.killed([100, 101, 102, None]) == set()
    killed.job_ended(2, failed=False)
    assert killed.killed([100, 101, 102]) == set()
    killed.job_started(3, [11, 13])
    killed.job_ended(1, failed=True)
    assert killed.killed([100, 101, 102, None]) == {100}  # stage 11 still serves job 3
    killed.task_ended(100)
    assert killed.killed([100]) == set()
