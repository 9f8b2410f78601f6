"""Batch mode's run pass through a real coordinator: the run's answers (from the store or its results source) are
hits paid in the batch, a failed line fails its row without a request, and calls outside the run pass see the
same lookups as before."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from coordinator_helpers import Worker, coordinator_with_store, journaled, site_for

from aiquery.apis.base import TokenUsage
from aiquery.coordinator.answer_waits import AnswerWaits
from aiquery.coordinator.server import Coordinator
from aiquery.engine.batch import Outcome
from aiquery.engine.engine import CallSite
from aiquery.engine.prepared import PreparedSite
from aiquery.errors import BatchLineFailed
from aiquery.store.base import StoredAnswer

PRICE = {"input_per_million": 2.0, "output_per_million": 8.0}
USAGE = TokenUsage(input_tokens=1000, output_tokens=500, total_tokens=1500)


@pytest.fixture
def coordinator(tmp_path: Path) -> Iterator[Coordinator]:
    yield from coordinator_with_store(tmp_path)


class Results:
    """A run's results as the flow keeps them: answers and failed lines by fingerprint."""

    def __init__(self, answers: Mapping[str, str], failures: Mapping[str, str]) -> None:
        self._answers, self._failures = answers, failures
        self.threads: set[str] = set()
        self.broken = False

    def answers(self, fingerprints: Sequence[str]) -> Mapping[str, str]:
        self.threads.add(threading.current_thread().name)
        if self.broken:
            raise OSError("state folder unreadable")
        return {key: self._answers[key] for key in fingerprints if key in self._answers}

    def failures(self, fingerprints: Sequence[str]) -> Mapping[str, str]:
        return {key: self._failures[key] for key in fingerprints if key in self._failures}


def fingerprint(site: CallSite, prompt: str) -> str:
    prepared = PreparedSite(site, "")
    return prepared.fingerprint(prepared.body(prepared.request(prompt)))


def setup(gateway: Any, coordinator: Coordinator) -> tuple[CallSite, Results]:
    """A priced site, and results for it: 'paid' answered in batch_1, 'expired' a failed line."""
    site = site_for(gateway, "run-chat", price=PRICE)
    results = Results(
        {fingerprint(site, "paid"): StoredAnswer.of("from the batch", USAGE, batch_id="batch_1").encode()},
        {fingerprint(site, "expired"): "the batch expired before this line ran"},
    )
    coordinator.set_batch_results(results)
    return site, results


def run(worker: Worker, site: CallSite, prompts: list[str | None], fail_fast: bool = False) -> list[Outcome]:
    async def go() -> list[Outcome]:
        try:
            return await worker.engine.run(site, prompts, fail_fast=fail_fast)
        finally:
            await worker.client.flush()

    return worker.loop.run(go(), timeout=120)


def test_a_run_pass_takes_the_batch_answers_and_fails_the_failed_lines(
    gateway: Any, coordinator: Coordinator, tmp_path: Path
) -> None:
    site, results = setup(gateway, coordinator)
    run_site = dataclasses.replace(site, batch_run="run-7")
    worker = Worker(coordinator, str(tmp_path / "spool"), store="test-store")
    try:
        outcomes = run(worker, run_site, ["paid", "expired", None, "paid"])
        assert gateway.stats()["requests"] == 0
        with pytest.raises(BatchLineFailed, match=r"^endpoint 'run-chat': \[AI_QUERY_BATCH_LINE_FAILED\] .*expired"):
            run(worker, run_site, ["paid", "expired"], fail_fast=True)
    finally:
        worker.close()
    assert [o.value for o in outcomes] == ["from the batch", None, None, "from the batch"]
    error = outcomes[1].error
    assert isinstance(error, BatchLineFailed) and error.attempts == 0
    assert "the batch expired before this line ran" in str(error)
    assert gateway.stats()["requests"] == 0
    assert results.threads and "aiquery-coordinator" not in results.threads  # asked off the coordinator's loop
    records = journaled(coordinator, tmp_path / "spool")
    assert len(records) == 2  # one per answered call (the identical rows share one), none for the failed line
    for record in records:
        assert record["cache_hit"] and record["batch_id"] == "batch_1"
        assert (record["cost"], record["avoided_cost"], record["total_tokens"]) == (0.0, 0.0, 1500)


def test_outside_a_run_pass_lookups_are_as_before(gateway: Any, coordinator: Coordinator, tmp_path: Path) -> None:
    site, _ = setup(gateway, coordinator)
    worker = Worker(coordinator, str(tmp_path / "spool"), store="test-store")
    try:
        outcomes = run(worker, site, ["paid", "expired"])
    finally:
        worker.close()
    # The batch's answer is an ordinary hit; the failed line's request is sent (and its answer stored).
    assert outcomes[0].value == "from the batch" and outcomes[1].error is None and outcomes[1].value
    assert gateway.stats()["requests"] == 1
    hit, sent = sorted(journaled(coordinator, tmp_path / "spool"), key=lambda r: not r.get("cache_hit"))
    assert hit["cache_hit"] and "batch_id" not in hit and hit["avoided_cost"] == pytest.approx(0.006)
    assert not sent.get("cache_hit") and sent["status_code"] == 200


def test_results_that_cannot_be_read_fail_the_rows_rather_than_pay_again(
    gateway: Any, coordinator: Coordinator, tmp_path: Path
) -> None:
    site, results = setup(gateway, coordinator)
    results.broken = True
    worker = Worker(coordinator, str(tmp_path / "spool"), store="test-store")
    try:
        outcomes = run(worker, dataclasses.replace(site, batch_run="run-7"), ["paid", "new"])
    finally:
        worker.close()
        coordinator.set_batch_results(None)
    assert gateway.stats()["requests"] == 0
    assert all("results could not be read (OSError: state folder unreadable)" in str(o.error) for o in outcomes)


def test_a_call_waiting_for_a_failed_line_learns_its_error() -> None:
    async def scenario() -> None:
        waits = AnswerWaits()
        failed, answered = waits.wait("f1", True), waits.wait("f2", True)
        waits.resolve({"f2": StoredAnswer("yes", {}, 1.0)}, (), {"f1": "line failed: invalid_request"})
        assert (await answered).value == "yes"
        with pytest.raises(BatchLineFailed, match="line failed: invalid_request"):
            await failed
        assert not waits

    asyncio.run(scenario())
