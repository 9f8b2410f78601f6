"""Helpers of the coordinator tests: a coordinator fixture's pieces and a worker on its own event-loop thread."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from aiquery.config import Settings
from aiquery.coordinator.client import CoordinatorClient
from aiquery.coordinator.server import Coordinator
from aiquery.engine.governor import TaskInfo
from aiquery.engine.loop import LoopThread
from aiquery.engine.runner import CallSite, Engine


class Worker:
    """A client and an engine on their own loop thread, as in one Spark Python worker."""

    def __init__(self, coordinator: Coordinator, journal: str, task: int = 1, store: str | None = None) -> None:
        self.loop = LoopThread()
        self.client = CoordinatorClient(coordinator.address, journal, store)
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
    )
