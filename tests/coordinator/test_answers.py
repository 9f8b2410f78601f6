"""The answer store through the coordinator: answers paid once, identical requests in flight sent once."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from coordinator_helpers import Worker, journaled, site_for, start_worker_child

from aiquery.config import CacheSettings
from aiquery.coordinator.server import Coordinator
from aiquery.store import open_store


@pytest.fixture
def coordinator(tmp_path: Path) -> Iterator[Coordinator]:
    started = Coordinator(
        bind_host="127.0.0.1",
        advertised_host="127.0.0.1",
        application=f"answers-{tmp_path.name}-{uuid.uuid4().hex[:8]}",
    )
    started.start()
    started.add_journal(str(tmp_path / "spool"))
    started.add_store("test-store", lambda: open_store(CacheSettings(), tmp_path / "answers"))
    yield started
    started.stop()


def worker(coordinator: Coordinator, tmp_path: Path, task: int = 1) -> Worker:
    return Worker(coordinator, str(tmp_path / "spool"), task=task, store="test-store")


def test_an_answer_paid_once_answers_the_same_request_later(
    gateway: Any, coordinator: Coordinator, tmp_path: Path
) -> None:
    gateway.configure(reasoning_tokens=3)
    first, second = worker(coordinator, tmp_path), worker(coordinator, tmp_path, task=2)
    try:
        prompts = [f"question {i}" for i in range(20)]
        priced = site_for(gateway, price={"input_per_million": 1.0, "output_per_million": 4.0}, currency="EUR")
        answers = first.run(priced, prompts)
        assert gateway.stats()["requests"] == 20
        again = second.run(priced, [*prompts, "a new one"])
        assert gateway.stats()["requests"] == 21  # only the new prompt was sent
        assert [o.value for o in again[:20]] == [o.value for o in answers]
        # Another endpoint (so another model) is another request.
        second.run(site_for(gateway, "coord-other"), prompts[:2])
        assert gateway.stats()["requests"] == 23
    finally:
        first.close()
        second.close()
    records = journaled(coordinator, tmp_path / "spool")
    hits = [r for r in records if r.get("cache_hit")]
    sent = [r for r in records if not r.get("cache_hit")]
    assert len(hits) == 20 and len(sent) == 23
    by_hash = {r["request_hash"]: r for r in sent}
    for hit in hits:  # the tokens it would have used, no status, no latency: no request was made
        paid = by_hash[hit["request_hash"]]
        assert (hit["input_tokens"], hit["output_tokens"], hit["output_reasoning_tokens"]) == (
            paid["input_tokens"],
            paid["output_tokens"],
            paid["output_reasoning_tokens"],
        )
        assert "status_code" not in hit and "latency_ms" not in hit and hit["attempt"] == 0
        # Nothing billed; what it would have cost is the cost of the request that paid for the answer.
        assert (hit["cost"], hit["avoided_cost"], hit["currency"]) == (0.0, paid["cost"], "EUR") and paid["cost"] > 0
    assert not {h["request_id"] for h in hits} & {r["request_id"] for r in sent}
    other = [r for r in sent if r["endpoint_name"] == "coord-other"]
    assert len(other) == 2 and all("cost" not in r and "currency" not in r for r in other)  # no price: NULL


def test_identical_requests_in_flight_in_two_workers_are_sent_once(
    gateway: Any, coordinator: Coordinator, tmp_path: Path
) -> None:
    gateway.configure(latency_ms=800)
    workers = [worker(coordinator, tmp_path, task=task) for task in (1, 2, 3)]
    results: list[list[Any]] = []
    prompts = [f"the same question {i}" for i in range(10)]
    try:
        threads = [
            threading.Thread(target=lambda w=w: results.append(w.run(site_for(gateway), prompts))) for w in workers
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        for each in workers:
            each.close()
    assert gateway.stats()["requests"] == 10
    assert len(results) == 3 and all([o.value for o in r] == [o.value for o in results[0]] for r in results)
    assert all(o.value is not None for r in results for o in r)


def test_errors_are_not_stored_and_a_waiter_sends_for_itself_when_the_owner_fails(
    gateway: Any, coordinator: Coordinator, tmp_path: Path
) -> None:
    gateway.configure(latency_ms=500)
    first, second = worker(coordinator, tmp_path), worker(coordinator, tmp_path, task=2)
    failing = ["refused [[fault:400]]"]
    try:
        done = []
        thread = threading.Thread(target=lambda: done.append(first.run(site_for(gateway), failing)))
        thread.start()
        time.sleep(0.2)  # the first worker owns the request now
        again = second.run(site_for(gateway), failing)
        thread.join(30)
        assert done[0][0].error is not None and again[0].error is not None
        assert gateway.stats()["requests"] == 2  # the waiter was told to send it itself
        third = second.run(site_for(gateway), failing)
        assert third[0].error is not None and gateway.stats()["requests"] == 3  # a re-run sends failed rows again
    finally:
        first.close()
        second.close()


def test_a_waiter_takes_over_when_the_owner_dies(gateway: Any, coordinator: Coordinator, tmp_path: Path) -> None:
    gateway.configure(latency_ms=30_000)
    child = start_worker_child(coordinator, gateway, tmp_path / "spool", "7", "3", "test-store")
    waiter = worker(coordinator, tmp_path, task=8)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "sent"
        gateway.configure(latency_ms=0)
        prompts = [f"slow {i}" for i in range(3)]  # what the child sends: the same requests
        future = waiter.loop.submit(waiter.engine.run(site_for(gateway, "child-chat"), prompts))
        time.sleep(1.0)
        assert not future.done() and gateway.stats()["requests"] == 3  # waiting for the child's answers
        child.kill()
        child.wait(30)
        outcomes = future.result(30)
        assert all(o.value is not None for o in outcomes)
        assert gateway.stats()["requests"] == 6  # the child's claims were freed; the waiter sent them itself
    finally:
        child.kill()
        waiter.close()
