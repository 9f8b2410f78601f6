"""Workers on the driver's machine (a local master): requests journaled straight into the driver's spool folder.

No Spark here: a Coordinator whose address says ``same_machine``, clients on their own loop threads or in a child
process, the engine sending to the emulator over loopback.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from coordinator_helpers import (
    Worker,
    assert_a_task_being_killed_stops_sending,
    journaled,
    journaled_ids_match_the_emulator,
    site_for,
    start_worker_child,
    started_coordinator,
    wait_for,
)

from aiquery.config import Secret
from aiquery.coordinator.protocol import CoordinatorAddress
from aiquery.coordinator.server import Coordinator
from aiquery.errors import TaskCancelled
from aiquery.usage.recovery import LOST_WORKER_MESSAGE, recover_orphans


@pytest.fixture
def coordinator(tmp_path: Path) -> Iterator[Coordinator]:
    yield from started_coordinator(tmp_path, same_machine=True)


def test_requests_are_journaled_on_the_driver_disk_once_each(
    gateway: Any, coordinator: Coordinator, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    gateway.configure(latency_ms=20, fault_rates={"503": 0.1}, seed=11)
    worker = Worker(coordinator, str(spool))
    try:
        assert all(o.error is None for o in worker.run(site_for(gateway), [f"p{i}" for i in range(300)]))
        assert coordinator.in_flight.open_count() == 0  # no begin went through the driver
        assert journaled_ids_match_the_emulator(coordinator, spool, gateway)
    finally:
        worker.close()


def test_a_killed_worker_requests_in_flight_are_published_as_lost_by_ingestion_recovery(
    gateway: Any, coordinator: Coordinator, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    gateway.configure(latency_ms=30_000)
    child = start_worker_child(coordinator, gateway, spool, "41", "5")
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "sent"
        assert coordinator.in_flight.open_count() == 0
        # It says in its syncs that it holds requests: a job whose statement was cancelled waits for them.
        wait_for(lambda: coordinator.settle(0, idle=True) == 1)
        assert coordinator.settle(0) == 0  # flush_usage does not wait for a live worker's running query
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        child.kill()
    assert coordinator.settle(10, idle=True) == 0  # gone: its journal is ingestion's to recover
    report = recover_orphans(spool)
    assert report.lost == 5
    records = journaled(coordinator, spool)
    assert sorted(r["request_id"] for r in records) == sorted(e["client_request_id"] for e in gateway.requests())
    assert all(r.get("status_code") is None and r["error_message"] == LOST_WORKER_MESSAGE for r in records)
    assert recover_orphans(spool).lost == 0  # once, never twice


def test_a_task_being_killed_is_told_to_stop_through_any_sync(
    gateway: Any, coordinator: Coordinator, tmp_path: Path
) -> None:
    # Its begins do not reach the driver, so the driver cannot refuse them: it answers "stop" to the sync that
    # names the task.
    assert_a_task_being_killed_stops_sending(coordinator, gateway, tmp_path / "spool")


def test_a_worker_whose_driver_is_killed_stops_sending(gateway: Any, tmp_path: Path) -> None:
    # PySpark's workers live in a process group of their own: killing a job's group leaves them running a moment.
    # Nobody would take their answers, and a re-run would pay for them again.
    spool = tmp_path / "spool"
    driver = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("driver_child.py")), str(spool)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert driver.stdout is not None
        host, port, secret, pid = driver.stdout.readline().split()
        address = CoordinatorAddress(host=host, port=int(port), secret=Secret(secret), application="driver-child",
                                     parallelism=2, same_machine=True, driver_pid=int(pid))  # fmt: skip
        gateway.configure(latency_ms=50)
        worker = Worker(address, str(spool))
        try:
            running = worker.loop.submit(
                worker.engine.run(site_for(gateway, max_concurrency=8), [f"orphan {i}" for i in range(3000)])
            )
            wait_for(lambda: len(gateway.requests()) >= 100)
            driver.send_signal(signal.SIGKILL)
            at_kill = len(gateway.requests())
            outcomes = running.result(60)
            time.sleep(0.2)  # requests still in flight reach the emulator's log
        finally:
            worker.close()
    finally:
        driver.kill()
        driver.wait(30)
    served = len(gateway.requests())
    assert worker.client.driver_gone
    # Only requests already on their way, and those begun while the lost connection was being noticed: at 8 in
    # flight and 50 ms each that is about 8 for every 50 ms (it kept sending all 3,000 before).
    assert served - at_kill <= 40, (at_kill, served)
    stopped = [o for o in outcomes if isinstance(o.error, TaskCancelled)]
    assert len(stopped) == 3000 - served, "a row was neither answered nor stopped"
