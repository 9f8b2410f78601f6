"""Spending caps on the coordinator: who owns a cap, and what a request without a usage report counts.

The book's arithmetic is checked directly (:class:`CapBook` is the coordinator's own state, fed what workers
report); the timed-out case runs a real coordinator, a worker's client and engine, and the emulator hanging.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from coordinator_helpers import Worker, journaled, site_for, started_coordinator

from aiquery.coordinator.cap import CapSetting
from aiquery.coordinator.cap_book import CapBook
from aiquery.coordinator.server import Coordinator
from aiquery.engine.governor import CapClaim, TaskInfo
from aiquery.errors import BudgetExceeded

PRICE = {"input_per_million": 1000.0, "output_per_million": 1000.0}
"""1,000 USD per million tokens: a request of a hundred tokens costs a tenth of a dollar."""


@pytest.fixture
def coordinator(tmp_path: Path) -> Iterator[Coordinator]:
    yield from started_coordinator(tmp_path)


def claim(input_tokens: int = 100, output_limit: int | None = None, endpoint: str = "e") -> list[Any]:
    return CapClaim(endpoint, input_tokens, output_limit, 1000.0, 1000.0).wire()


def test_a_request_without_a_usage_report_counts_input_and_the_largest_output_billed() -> None:
    book = CapBook()
    book.set_application(CapSetting(max_cost=10.0))
    assert book.admit(["a", "b", "c", "d"], "USD", "", [claim(), claim(), claim(output_limit=30), claim()]) == []
    # Nothing billed yet: a timed-out request counts its input twice (input, and the input again for the output).
    book.spent({"a": 0})
    assert book.application is not None
    assert book.application.spent_cost == pytest.approx(0.2)
    # A readable answer: its real cost, and the endpoint's largest output so far.
    book.spent({"b": ["USD", 0.15, 150, 50]})
    assert book.application.spent_cost == pytest.approx(0.35)
    # max_tokens set by the call wins over the largest output; without it the largest output stands in.
    book.spent({"c": 0, "d": 0})
    assert book.application.spent_cost == pytest.approx(0.35 + 0.13 + 0.15)
    assert book.application.spent_tokens == 200 + 150 + 130 + 150


def test_a_session_cap_counts_its_own_requests_and_no_other_session_lifts_it() -> None:
    book = CapBook()
    book.set_session("A", CapSetting(max_cost=0.5))
    assert book.admit(["a1", "a2"], "USD", "A", [claim(), claim()]) == []
    book.spent({"a1": ["USD", 0.2, 200, 100], "a2": ["USD", 0.2, 200, 100]})
    # Session B analyses a query without a cap: its setting is empty, A's cap stays.
    assert book.set_session("B", CapSetting()) is False
    assert book.admit(["b1", "b2", "b3"], "USD", "", [claim()] * 3) == []  # B's requests: no cap counts them
    book.spent({"b1": ["USD", 5.0, 200, 100]})
    session_a = book.sessions["A"]
    assert session_a.spent_cost == pytest.approx(0.4)
    refused = book.admit(["a3"], "USD", "A", [claim()])
    assert [index for index, _ in refused] == [0]
    assert "this session's spending cap of 0.5 USD (aiquery.budget.max_cost) is reached" in refused[0][1]
    assert "RESET" in refused[0][1]
    # The same setting again changes nothing; a new currency is a new cap, counting from then.
    assert book.set_session("A", CapSetting(max_cost=0.5)) is False
    assert book.set_session("A", CapSetting(max_cost=0.5, currency="EUR")) is True
    assert book.sessions["A"].spent_cost == 0.0


def test_the_application_cap_counts_every_session_and_the_stricter_cap_stops_first() -> None:
    book = CapBook()
    book.set_application(CapSetting(max_cost=1.0))
    book.set_session("A", CapSetting(max_cost=100.0))  # a job's SET cannot raise the application's cap
    assert book.admit(["a1"], "USD", "A", [claim()]) == []
    assert book.admit(["b1"], "USD", "", [claim()]) == []
    book.spent({"a1": ["USD", 0.6, 600, 100], "b1": ["USD", 0.6, 600, 100]})
    refused = book.admit(["a2"], "USD", "A", [claim()])
    assert refused and "the application's spending cap of 1 USD (aiquery run --max-cost) is reached" in refused[0][1]
    assert book.set_session("A", CapSetting()) is True  # RESET in the job: only its session cap goes
    assert book.admit(["b2"], "USD", "", [claim()])  # the application's cap stays reached
    assert book.snapshot() is not None and book.snapshot()["application"] is True  # type: ignore[index]


def test_timed_out_requests_stop_at_the_cap_over_their_input_cost(
    gateway: Any, coordinator: Coordinator, tmp_path: Path
) -> None:
    """Every attempt times out (no usage report): at 1,000 USD per million tokens under a 1 USD cap, at most
    cap / (input cost of one request) requests go, plus those in flight; the ledger's cost stays NULL."""
    gateway.configure(fault_rates={"hang": 1.0}, hang_seconds=30)
    coordinator.set_application_cap(CapSetting(max_cost=1.0))
    concurrency = 4
    site = site_for(gateway, price=PRICE, timeout=1.0, max_retries=2, max_concurrency=concurrency)
    spool = tmp_path / "spool"
    worker = Worker(coordinator, str(spool))
    worker.loop.call(worker.client.start_task, TaskInfo(task_attempt_id=1, stage_id=1, query="q-test"), True)
    prompt = "word " * 80  # 400 characters: at least 100 input tokens, at least 0.1 USD of input
    try:
        outcomes = worker.run(site, [f"{index} {prompt}" for index in range(24)])
    finally:
        worker.close()
    sent = gateway.stats()["requests"]
    input_cost = 100 * PRICE["input_per_million"] / 1e6
    assert 0 < sent <= 1.0 / input_cost + concurrency, sent
    refused = [o.error for o in outcomes if isinstance(o.error, BudgetExceeded)]
    assert refused and "1 USD (aiquery run --max-cost) is reached" in refused[0].message
    state = coordinator.cap_state()
    # Each request counted at least its input (the output adds as much again: nothing was billed to compare with).
    assert state is not None and state["reached"] and state["spent_cost"] >= 2 * sent * input_cost, state
    records = journaled(coordinator, spool)
    assert len(records) == sent and all(record.get("cost") is None for record in records)
