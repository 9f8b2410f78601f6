"""Helpers of the coordinator tests: a coordinator fixture's pieces and a worker on its own event-loop thread."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiquery.config import CacheSettings, Settings
from aiquery.coordinator.client import CoordinatorClient
from aiquery.coordinator.protocol import CoordinatorAddress
from aiquery.coordinator.server import Coordinator
from aiquery.engine.engine import CallSite, Engine
from aiquery.engine.governor import TaskInfo
from aiquery.engine.loop import LoopThread
from aiquery.errors import TaskCancelled
from aiquery.store import open_store


def started_coordinator(tmp_path: Path, **options: Any) -> Iterator[Coordinator]:
    """A coordinator on loopback with a journal in ``tmp_path / "spool"``, stopped after the test (a fixture's body).

    Its application name is unique: a worker's local journal is named after it, and tmp_path's name repeats across
    runs.
    """
    started = Coordinator(
        bind_host="127.0.0.1",
        advertised_host="127.0.0.1",
        application=f"test-{tmp_path.name}-{uuid.uuid4().hex[:8]}",
        parallelism=2,
        **options,
    )
    started.start()
    started.add_journal(str(tmp_path / "spool"))
    yield started
    started.stop()


def coordinator_with_store(tmp_path: Path) -> Iterator[Coordinator]:
    """:func:`started_coordinator` serving an answer store as ``test-store`` (SQLite in ``tmp_path / "answers"``)."""
    for started in started_coordinator(tmp_path):
        started.add_store("test-store", lambda: open_store(CacheSettings(), tmp_path / "answers"))
        yield started


class Worker:
    """A client and an engine on their own loop thread, as in one Spark Python worker."""

    def __init__(
        self, coordinator: Coordinator | CoordinatorAddress, journal: str, task: int = 1, store: str | None = None
    ) -> None:
        self.loop = LoopThread()
        address = coordinator if isinstance(coordinator, CoordinatorAddress) else coordinator.address
        self.client = CoordinatorClient(address, journal, store)
        self.engine = Engine(governor=self.client)
        self.engine.context = {"task_attempt_id": task, "query_tag": "q-test"}
        self.loop.call(self.client.start_task, TaskInfo(task_attempt_id=task, stage_id=1, query="q-test"))

    def run(self, site: CallSite, prompts: list[str | None]) -> list[Any]:
        async def go() -> list[Any]:
            outcomes = await self.engine.run(site, prompts)
            await self.client.flush()
            return outcomes

        return self.loop.run(go(), timeout=120)

    def close(self) -> None:
        self.loop.run(self.engine.aclose(), timeout=60)
        self.loop.stop()


def site_for(gateway: Any, name: str = "coord-chat", **options: Any) -> CallSite:
    settings = Settings(host=gateway.url, environ={"DATABRICKS_TOKEN": gateway.token}).with_endpoint(
        name, api="chat", **options
    )
    return CallSite(endpoint=settings.endpoint(name), budget_share=0.5)


def journaled(coordinator: Coordinator, spool: Path) -> list[dict[str, Any]]:
    coordinator.rotate(str(spool))
    return [json.loads(line) for path in sorted(spool.glob("usage-*.json")) for line in path.read_text().splitlines()]


def journaled_ids_match_the_emulator(coordinator: Coordinator, spool: Path, gateway: Any) -> bool:
    """Whether the driver's journal holds one record per request the emulator served, and no other."""
    records = journaled(coordinator, spool)
    return sorted(r["request_id"] for r in records) == sorted(e["client_request_id"] for e in gateway.requests())


def start_worker_child(coordinator: Coordinator, gateway: Any, spool: Path, *args: str) -> subprocess.Popen[str]:
    """``worker_child.py`` in a process of its own, connected to ``coordinator``; ``args`` follow its usage line."""
    address = coordinator.address
    environ = {**os.environ, "AIQUERY_TEST_SAME_MACHINE": "1" if address.same_machine else "0"}
    return subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).with_name("worker_child.py")),
            address.host,
            str(address.port),
            address.secret.reveal(),
            str(spool),
            gateway.url,
            gateway.token,
            *args,
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=environ,
    )


def wait_for(condition: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def assert_a_task_being_killed_stops_sending(coordinator: Coordinator, gateway: Any, spool: Path) -> None:
    """A task whose job fails mid-run sends nothing more; what it sent is recorded with its answer, nothing else.

    Spark kills a failed job's tasks, their Python workers 2 s later: a request begun and not yet sent then would be
    closed as lost though it never left.
    """
    gateway.configure(latency_ms=200)
    coordinator.killed_tasks.job_started(7, [3])
    coordinator.killed_tasks.task_started(1, 3)
    worker = Worker(coordinator, str(spool), task=1)
    try:

        async def go() -> list[Any]:
            return await worker.engine.run(site_for(gateway, max_concurrency=8), [f"doomed {i}" for i in range(400)])

        running = worker.loop.submit(go())
        wait_for(lambda: len(gateway.requests()) >= 20)
        coordinator.killed_tasks.job_ended(7, failed=True)
        outcomes = running.result(60)
        worker.loop.run(worker.client.flush(), timeout=60)
    finally:
        worker.close()
    served = gateway.requests()
    assert 20 <= len(served) < 400
    stopped = [o for o in outcomes if isinstance(o.error, TaskCancelled)]
    assert len(stopped) == 400 - len(served), "a row was neither answered nor stopped"
    assert all(o.value is not None for o in outcomes if o.error is None)
    records = journaled(coordinator, spool)
    assert journaled_ids_match_the_emulator(coordinator, spool, gateway)
    assert all(r["status_code"] == 200 for r in records)
