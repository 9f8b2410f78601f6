"""Batch mode's collect pass through a real coordinator: store hits answer their rows without a record, misses
reach the run's collector with their fingerprints and requests, nothing is sent, and nothing is lost silently."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from coordinator_helpers import Worker, coordinator_with_store, journaled, site_for

from aiquery.apis.base import TokenUsage
from aiquery.apis.request_json import request_from_json
from aiquery.coordinator.collect_queue import COLLECT_SYNC_BYTES
from aiquery.coordinator.server import Coordinator
from aiquery.engine.batch import Outcome
from aiquery.engine.engine import CallSite
from aiquery.engine.governor import CollectCounts
from aiquery.engine.prepared import PreparedSite
from aiquery.errors import BatchCollectionLost
from aiquery.store.base import StoredAnswer
from aiquery.store.disk import DiskStore

RUN = "run-7"


@pytest.fixture
def coordinator(tmp_path: Path) -> Iterator[Coordinator]:
    yield from coordinator_with_store(tmp_path)


class Collected:
    """A collector: what it was handed, call by call (it runs on the coordinator's loop thread)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[tuple[str, Any]]]] = []
        self.thread: str | None = None

    def __call__(self, endpoint: str, requests: list[tuple[str, Any]]) -> None:
        self.thread = threading.current_thread().name
        self.calls.append((endpoint, requests))

    def by_fingerprint(self) -> dict[str, Any]:
        return {fingerprint: request for _, requests in self.calls for fingerprint, request in requests}


def batch_site(gateway: Any) -> CallSite:
    return site_for(gateway, "collect-chat", base_url=gateway.url + "/v1", model="gpt-6.2-sol", batch=True)


def store_answers(tmp_path: Path, site: CallSite, answers: dict[str, str]) -> None:
    """Put answers in the coordinator's store (its SQLite file) as an earlier run would have."""
    prepared = PreparedSite(site, "")
    usage = TokenUsage(input_tokens=5, output_tokens=2, total_tokens=7)
    store = DiskStore(tmp_path / "answers", ttl=3600.0, max_bytes=1 << 30)
    store.put_many(
        {
            prepared.fingerprint(prepared.body(prepared.request(p))): StoredAnswer.of(v, usage).encode()
            for p, v in answers.items()
        }
    )
    store.close()


def collect(worker: Worker, site: CallSite, prompts: list[str | None], batchable: bool = True) -> list[Outcome]:
    async def go() -> list[Outcome]:
        return await worker.engine.collect(site, prompts, run=RUN, batchable=batchable)

    return worker.loop.run(go(), timeout=120)


def test_hits_answer_without_a_record_and_misses_reach_the_collector(
    gateway: Any, coordinator: Coordinator, tmp_path: Path
) -> None:
    collected = Collected()
    coordinator.set_collector(RUN, collected)
    site = batch_site(gateway)
    worker = Worker(coordinator, str(tmp_path / "spool"), store="test-store")
    try:
        store_answers(tmp_path, site, {"known 1": "answer 1", "known 2": "answer 2"})
        prompts = ["known 1", None, "new 1", "new 2", "known 2", "new 1", "new 3"]
        outcomes = collect(worker, site, prompts)
        # A chunk of NULLs and of a request that cannot be made (not valid Unicode): NULL, nothing collected.
        assert collect(worker, site, [None, "bad \udc80"]) == [Outcome(), Outcome()]
        # Another endpoint, without a batch API: counted, nothing sent, NULL.
        other = collect(worker, site_for(gateway, "collect-live"), ["a", "b", None], batchable=False)
    finally:
        worker.close()
    assert gateway.stats()["requests"] == 0
    assert [o.value for o in outcomes] == ["answer 1", None, None, None, "answer 2", None, None]
    assert all(o.error is None for o in [*outcomes, *other]) and all(o.value is None for o in other)
    assert journaled(coordinator, tmp_path / "spool") == []  # the hits made no record
    prepared = PreparedSite(site, "")
    found = collected.by_fingerprint()
    expected = {prepared.fingerprint(prepared.body(prepared.request(p))): p for p in ("new 1", "new 2", "new 3")}
    assert found.keys() == expected.keys()  # the live request's fingerprint: the run pass finds the answer by it
    for fingerprint, request in found.items():
        assert request_from_json(request) == prepared.request(expected[fingerprint])
    assert {endpoint for endpoint, _ in collected.calls} == {"collect-chat"}
    assert collected.thread == "aiquery-coordinator"
    assert coordinator.collect_counts(RUN) == {
        "collect-chat": CollectCounts(rows=7, hits=2, misses=4, skipped=0),
        "collect-live": CollectCounts(rows=2, hits=0, misses=0, skipped=2),
    }
    assert coordinator.collect_counts("another-run") == {}


def test_a_large_chunk_goes_in_syncs_of_bounded_size(gateway: Any, coordinator: Coordinator, tmp_path: Path) -> None:
    collected = Collected()
    coordinator.set_collector(RUN, collected, raw=True)  # the requests as the JSON text they travel as
    worker = Worker(coordinator, str(tmp_path / "spool"), store="test-store")
    prompts: list[str | None] = [f"{i} " + "long prompt " * 20_000 for i in range(48)]  # 240 KB each, 11.5 MB
    try:
        outcomes = collect(worker, batch_site(gateway), prompts)
    finally:
        worker.close()
    assert all(o.value is None and o.error is None for o in outcomes)
    texts = collected.by_fingerprint()
    assert sorted(request_from_json(json.loads(text)).prompt for text in texts.values()) == sorted(prompts)
    sizes = [sum(len(text) for _, text in requests) for _, requests in collected.calls]
    assert len(sizes) >= 3 and max(sizes) <= COLLECT_SYNC_BYTES
    assert coordinator.collect_counts(RUN)["collect-chat"] == CollectCounts(rows=48, hits=0, misses=48)


def test_a_worker_cut_off_fails_rather_than_drop_its_requests(
    gateway: Any, coordinator: Coordinator, tmp_path: Path
) -> None:
    coordinator.set_collector(RUN, Collected())
    worker = Worker(coordinator, str(tmp_path / "spool"), store="test-store")
    try:
        collect(worker, batch_site(gateway), ["first"])
        coordinator.stop_listening()
        with pytest.raises(BatchCollectionLost, match=r"cannot be reached|could not be handed"):
            collect(worker, batch_site(gateway), ["second"])
        with pytest.raises(BatchCollectionLost, match="cannot be reached"):
            collect(worker, site_for(gateway, "collect-live"), ["third"], batchable=False)
    finally:
        coordinator.resume_listening()
        worker.close()
    assert gateway.stats()["requests"] == 0


def test_a_failing_collector_fails_the_task_saying_why(gateway: Any, coordinator: Coordinator, tmp_path: Path) -> None:
    def broken(endpoint: str, requests: list[tuple[str, dict[str, Any]]]) -> None:
        raise OSError("disk full")

    coordinator.set_collector(RUN, broken)
    worker = Worker(coordinator, str(tmp_path / "spool"), store="test-store")
    try:
        with pytest.raises(BatchCollectionLost, match="the collector of batch run 'run-7' failed: OSError: disk full"):
            collect(worker, batch_site(gateway), ["one", "two"])
    finally:
        worker.close()
    coordinator.set_collector(RUN, None)
    assert coordinator.collect_counts(RUN) == {}  # the refused sync applied nothing


def test_without_a_coordinator_collect_mode_refuses(gateway: Any) -> None:
    from aiquery.engine.engine import Engine
    from aiquery.engine.loop import LoopThread

    loop = LoopThread()
    try:

        async def go() -> list[Outcome]:
            return await Engine().collect(batch_site(gateway), ["x"], run=RUN, batchable=True)

        with pytest.raises(BatchCollectionLost, match="without the driver's coordinator"):
            loop.run(go(), timeout=30)
    finally:
        loop.stop()
