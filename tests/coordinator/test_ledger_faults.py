"""Faults of the ledger's path on the driver: a journal that cannot be written, an orphan delivered twice.

A full disk is real here: the driver's spool folder is a small tmpfs filled to the last byte (mounting needs root;
the tests are skipped without it). No Spark: a Coordinator in this process, workers on their own loop threads.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from coordinator_helpers import Worker, journaled, journaled_ids_match_the_emulator, site_for, wait_for

from aiquery.coordinator.local_journal import local_journal_dir
from aiquery.coordinator.server import Coordinator


class SmallDisk:
    """A 256 KiB tmpfs: filled, every new block of a file fails with ENOSPC, as on a full disk."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.filler = folder / "filler"

    def fill(self) -> None:
        chunk = b"\0" * 4096
        with open(self.filler, "ab", buffering=0) as handle:
            while True:
                try:
                    handle.write(chunk)
                except OSError as error:
                    assert error.errno == errno.ENOSPC
                    return

    def free(self) -> None:
        self.filler.unlink()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    folder = tmp_path / "small"
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs (a real full disk) needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield SmallDisk(folder)
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def coordinator_on(spool: Path, tmp_path: Path, same_machine: bool = False) -> Coordinator:
    """A coordinator journaling into ``spool``; with ``same_machine`` its workers journal there themselves."""
    coordinator = Coordinator(
        bind_host="127.0.0.1",
        advertised_host="127.0.0.1",
        application=f"test-{tmp_path.name}-{uuid.uuid4().hex[:8]}",
        parallelism=2,
        same_machine=same_machine,
    )
    coordinator.start()
    coordinator.add_journal(str(spool))
    return coordinator


WHO_JOURNALS = pytest.mark.parametrize("same_machine", [False, True], ids=["driver", "worker on its machine"])


@WHO_JOURNALS
def test_records_whose_journal_write_failed_are_recorded_once_the_disk_has_room(
    gateway: Any, small_disk: SmallDisk, tmp_path: Path, same_machine: bool
) -> None:
    spool = small_disk.folder / "spool"
    coordinator = coordinator_on(spool, tmp_path, same_machine)
    worker = Worker(coordinator, str(spool))
    try:
        gateway.configure(latency_ms=1500)
        prompts = [f"p{i}" for i in range(12)]

        async def go() -> list[Any]:
            outcomes = await worker.engine.run(site_for(gateway), prompts)
            await worker.client.flush()
            return outcomes

        running = worker.loop.submit(go())
        wait_for(lambda: gateway.stats()["in_flight"] == 12)  # every begin journaled, every request out
        small_disk.fill()  # the end records meet a full disk
        assert all(outcome.error is None for outcome in running.result(60))  # the answers are fine
        time.sleep(0.5)
        if not same_machine:
            assert coordinator.in_flight.open_count() == 12  # not counted ended: their records are not written
        small_disk.free()
        wait_for(lambda: len(journaled(coordinator, spool)) >= 12, timeout=30)  # the worker delivers them again
        time.sleep(0.5)
        assert journaled_ids_match_the_emulator(coordinator, spool, gateway)  # nothing lost, nothing twice
        assert coordinator.in_flight.open_count() == 0
    finally:
        worker.close()
        coordinator.stop()


@WHO_JOURNALS
def test_a_journal_that_stays_unwritable_stops_new_requests_with_a_clear_error(
    gateway: Any, small_disk: SmallDisk, tmp_path: Path, same_machine: bool
) -> None:
    spool = small_disk.folder / "spool"
    spool.mkdir()
    small_disk.fill()
    coordinator = coordinator_on(spool, tmp_path, same_machine)  # its journal files are empty: no block for them
    worker = Worker(coordinator, str(spool))
    try:
        site = site_for(gateway)
        refused = worker.run(site, [f"full {i}" for i in range(10)])
        assert gateway.stats()["requests"] == 0  # nothing sent that the ledger could not record
        assert all(type(outcome.error).__name__ == "UsageNotRecorded" for outcome in refused)
        message = str(refused[0].error)
        assert "[AI_QUERY_USAGE_NOT_RECORDED]" in message and f"usage journal at {spool}" in message
        assert "No space left on device" in message and "requests stop so that none goes unrecorded" in message
        assert coordinator.in_flight.open_count() == 0
        small_disk.free()
        answered = worker.run(site, [f"room again {i}" for i in range(10)])
        assert all(outcome.error is None for outcome in answered)
        assert journaled_ids_match_the_emulator(coordinator, spool, gateway)
        assert gateway.stats()["requests"] == 10
    finally:
        worker.close()
        coordinator.stop()


DEAD_WORKER = textwrap.dedent(
    """
    import sys, time
    from aiquery.usage.spool import SpoolWriter
    folder, ids, lines = sys.argv[1], sys.argv[2].split(","), sys.stdin.buffer.read()
    SpoolWriter(folder).end_lines(ids, lines)  # kept after a sync whose acknowledgement never came
    print("kept", flush=True)
    time.sleep(600)
    """
)


def test_a_dead_workers_orphans_delivered_by_another_worker_are_recorded_once(
    gateway: Any, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    coordinator = coordinator_on(spool, tmp_path)
    first = Worker(coordinator, str(spool), task=1)
    try:
        assert all(o.error is None for o in first.run(site_for(gateway), [f"first {i}" for i in range(6)]))
        had = journaled(coordinator, spool)
        assert len(had) == 6
        # A worker whose sync the driver journaled, but whose acknowledgement never came, keeps the records in the
        # local journal of its machine; it dies before delivering them.
        folder = local_journal_dir(coordinator.application)
        dead = subprocess.Popen(
            [sys.executable, "-c", DEAD_WORKER, str(folder), ",".join(r["request_id"] for r in had)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        lines = b"".join(path.read_bytes() for path in sorted(spool.glob("usage-*.json")))
        assert dead.stdin is not None and dead.stdout is not None
        dead.stdin.write(lines)
        dead.stdin.close()
        assert dead.stdout.readline().strip() == b"kept"
        dead.send_signal(signal.SIGKILL)
        dead.wait(30)
        # Another worker on that machine, cut off for a while, delivers its local journal: the dead one's with it.
        second = Worker(coordinator, str(spool), task=2)
        try:
            coordinator.stop_listening()
            assert all(o.error is None for o in second.run(site_for(gateway), [f"second {i}" for i in range(3)]))
            coordinator.resume_listening()
            wait_for(lambda: not any(folder.glob("usage-*")) and len(journaled(coordinator, spool)) >= 9, 30)
        finally:
            second.close()
        time.sleep(0.3)
        assert not any((folder / "_journal").glob(f"_seg-*-{dead.pid}-*"))  # recovered and delivered
        assert journaled_ids_match_the_emulator(coordinator, spool, gateway)  # the dead one's six, once
    finally:
        first.close()
        coordinator.stop()


def test_an_orphan_delivered_by_another_worker_is_not_also_closed_as_lost() -> None:
    from aiquery.coordinator.requests import GRACE_S, InFlight

    now = [0.0]
    flight = InFlight(lambda: now[0])
    flight.begun("dead", "journal", ["r1", "r2"], 7)
    flight.disconnected("dead")
    flight.task_failed(7)
    # Before the driver closes them, another worker delivers r1's record from the dead one's local journal.
    assert flight.unrecorded("other", ["r1", "r1"]) == [0]  # repeated within one sync: once
    flight.ended("other", ["r1"], delivered=True)
    now[0] += GRACE_S + 1
    assert flight.lost() == {"journal": ["r2"]}  # r1 has its record: not a lost one too
    assert flight.unrecorded("dead", ["r1", "r2", "r3"]) == [2]  # whoever delivers them again
