"""The coordinator and its client over real TCP on loopback, with the engine sending to the emulator.

No Spark here: a Coordinator in this process, clients on their own event-loop threads (as in Python workers).
"""

from __future__ import annotations

import signal
import socket
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

from aiquery.coordinator.local_journal import local_journal_dir
from aiquery.coordinator.protocol import FrameReader, encode_frame
from aiquery.coordinator.server import Coordinator
from aiquery.coordinator.tls import server_context
from aiquery.usage.recovery import LOST_WORKER_MESSAGE


@pytest.fixture
def coordinator(tmp_path: Path) -> Iterator[Coordinator]:
    yield from started_coordinator(tmp_path)


def test_records_reach_the_driver_journal_once_per_request(
    gateway: Any, coordinator: Coordinator, tmp_path: Path
) -> None:
    gateway.configure(latency_ms=20, fault_rates={"503": 0.1}, seed=5)
    worker = Worker(coordinator, str(tmp_path / "spool"))
    priced = site_for(gateway, price={"input_per_million": 2.0, "output_per_million": 6.0})
    try:
        outcomes = worker.run(priced, [f"p{i}" for i in range(300)])
    finally:
        worker.close()
    assert all(o.error is None for o in outcomes)
    records = journaled(coordinator, tmp_path / "spool")
    served = {entry["client_request_id"]: entry for entry in gateway.requests()}
    assert len(records) == len(served) > 300  # retries of the 503s are requests too
    assert {r["request_id"]: r["status_code"] for r in records} == {k: v["status"] for k, v in served.items()}
    progress = coordinator.progress()[0]
    assert (progress.query, progress.rows_answered, progress.requests) == ("q-test", 300, len(served))
    billed = sum((v["input_tokens"] * 2.0 + v["output_tokens"] * 6.0) / 1e6 for v in served.values())
    assert progress.cost == {"USD": pytest.approx(billed)} and billed > 0  # the 503s billed nothing
    assert f"cost {billed:,.4f} USD" in progress.line()


def test_a_request_leaves_only_after_the_driver_has_its_begin_record(
    gateway: Any, coordinator: Coordinator, tmp_path: Path
) -> None:
    worker = Worker(coordinator, str(tmp_path / "spool"))
    try:
        worker.run(site_for(gateway), ["warm up the connection"])
        gateway.reset()
        # Freeze the coordinator's loop: it cannot acknowledge anything for 1.5 s.
        coordinator._loop.call(time.sleep, 1.5)
        started = time.monotonic()
        future = worker.loop.submit(worker.engine.run(site_for(gateway), ["a", "b", "c"]))
        time.sleep(1.0)
        assert gateway.stats()["requests"] == 0  # nothing sent while the begin records wait for the driver
        assert all(o.error is None for o in future.result(30))
        assert time.monotonic() - started >= 1.4
        assert gateway.stats()["requests"] == 3
    finally:
        worker.close()


def test_a_request_cancelled_while_its_begin_record_waits_is_never_recorded(
    gateway: Any, coordinator: Coordinator, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    worker = Worker(coordinator, str(spool))
    try:
        worker.run(site_for(gateway), ["warm up the connection"])
        gateway.reset()
        before = len(journaled(coordinator, spool))
        coordinator._loop.call(time.sleep, 1.0)  # the driver acknowledges nothing for a second
        future = worker.loop.submit(worker.engine.run(site_for(gateway), ["a", "b", "c"]))
        time.sleep(0.3)
        future.cancel()  # as a LIMIT or a failed row cancels the rest
        time.sleep(1.5)
        worker.loop.run(worker.client.flush(), timeout=30)
    finally:
        worker.close()
    assert gateway.stats()["requests"] == 0
    assert coordinator.in_flight.open_count() == 0  # withdrawn on the driver, not waiting to be closed as lost
    coordinator.stop()  # closing the journal records what is still open as lost: nothing is
    assert len(journaled(coordinator, spool)) == before


def test_a_connection_without_the_secret_is_refused(coordinator: Coordinator) -> None:
    def hello(proof: Any) -> dict[str, Any]:
        with socket.create_connection(("127.0.0.1", coordinator.port), timeout=10) as sock:
            reader = FrameReader()
            frames: list[dict[str, Any]] = []
            while not frames:
                frames += [meta for meta, _ in reader.feed(sock.recv(65536))]
            assert frames[0]["op"] == "challenge"
            sock.sendall(encode_frame({"op": "hello", "proof": proof, "worker": "intruder"}))
            replies: list[dict[str, Any]] = []
            while not replies:
                data = sock.recv(65536)
                assert data, "closed without a reply"
                replies += [meta for meta, _ in reader.feed(data)]
            # A sync after the refusal gets nothing: the connection is closed (a reset if it was closed already).
            try:
                sock.sendall(encode_frame({"op": "sync", "seq": 1, "demand": {"x": [1, 0, 60, None]}}))
                while data := sock.recv(65536):
                    replies += [meta for meta, _ in reader.feed(data)]
            except ConnectionResetError:
                pass
            assert len(replies) == 1, replies
            return replies[0]

    before = coordinator.refused
    assert hello(None)["error"].startswith("refused")
    assert hello("0" * 64)["error"].startswith("refused")
    assert coordinator.refused == before + 2
    assert coordinator.budgets.paces() == {}  # the sync after the bad hello was never read


def test_tls_when_spark_traffic_is_encrypted(gateway: Any, tmp_path: Path) -> None:
    coordinator = Coordinator(bind_host="127.0.0.1", advertised_host="127.0.0.1", tls=server_context())
    coordinator.start()
    coordinator.add_journal(str(tmp_path / "spool"))
    try:
        assert coordinator.address.fingerprint is not None
        worker = Worker(coordinator, str(tmp_path / "spool"))
        try:
            worker.run(site_for(gateway), ["over TLS"])
            assert worker.client.connected and worker.client.fallbacks == 0
        finally:
            worker.close()
        assert len(journaled(coordinator, tmp_path / "spool")) == 1
        # A plain-TCP peer gets nothing readable: the challenge is inside TLS.
        with socket.create_connection(("127.0.0.1", coordinator.port), timeout=10) as sock:
            sock.sendall(encode_frame({"op": "hello"}))
            data = sock.recv(65536)
            assert b"challenge" not in data
    finally:
        coordinator.stop()


def test_a_worker_cut_off_falls_back_then_delivers_everything_once(
    gateway: Any, coordinator: Coordinator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = tmp_path / "spool"
    worker = Worker(coordinator, str(spool))
    try:
        worker.run(site_for(gateway), [f"before {i}" for i in range(20)])
        coordinator.stop_listening()
        with caplog.at_level("WARNING", logger="aiquery.coordinator"):
            outcomes = worker.run(site_for(gateway, requests_per_minute=6000), [f"during {i}" for i in range(40)])
        assert all(o.error is None for o in outcomes)
        warnings = [r for r in caplog.records if r.levelname == "WARNING"]
        assert len(warnings) == 1 and "static 1/2 share" in warnings[0].getMessage()
        assert local_journal_dir(coordinator.application).is_dir()
        coordinator.resume_listening()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(journaled(coordinator, spool)) < 60:
            time.sleep(0.2)
    finally:
        worker.close()
    assert journaled_ids_match_the_emulator(coordinator, spool, gateway)
    assert gateway.stats()["requests"] == 60


def test_a_task_that_ends_connected_delivers_what_its_worker_journaled_while_cut_off(
    gateway: Any, coordinator: Coordinator, tmp_path: Path
) -> None:
    # The worker's process may be gone (its executor lost) before its ticker delivers: the end of a task does it.
    spool = tmp_path / "spool"
    worker = Worker(coordinator, str(spool))
    try:
        coordinator.stop_listening()
        worker.run(site_for(gateway), [f"cut off {i}" for i in range(30)])
        worker.loop.call(lambda: worker.client._ticker.cancel())  # only the task's end may deliver now
        coordinator.resume_listening()
        time.sleep(2.5)  # past the reconnection back-off: the next chunk's admit reconnects
        worker.run(site_for(gateway), ["connected again"])
        assert len(journaled(coordinator, spool)) == 31  # at once, not a ticker's round later
    finally:
        worker.close()
    assert journaled_ids_match_the_emulator(coordinator, spool, gateway)


def test_requests_of_a_worker_that_died_with_its_task_are_closed_as_lost(
    gateway: Any, coordinator: Coordinator, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    gateway.configure(latency_ms=30_000)
    child = start_worker_child(coordinator, gateway, spool, "41", "5")
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "sent"
        assert coordinator.in_flight.open_count() == 5
        # A live worker's requests are not stranded; a job whose statement was cancelled waits for them too.
        assert coordinator.settle(0) == 0
        assert coordinator.settle(0.3, idle=True) == 5
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        child.kill()
    wait_for(lambda: coordinator.in_flight.stranded() == 5)
    time.sleep(3.0)
    assert journaled(coordinator, spool) == []  # the worker is gone, but Spark has not said its task failed
    coordinator.task_failed(41)
    wait_for(lambda: len(journaled(coordinator, spool)) == 5)
    records = journaled(coordinator, spool)
    assert sorted(r["request_id"] for r in records) == sorted(e["client_request_id"] for e in gateway.requests())
    assert all(r.get("status_code") is None and r["error_message"] == LOST_WORKER_MESSAGE for r in records)
    assert coordinator.settle(0) == 0


def test_a_task_whose_job_failed_sends_nothing_more_and_records_only_what_it_sent(
    gateway: Any, coordinator: Coordinator, tmp_path: Path
) -> None:
    # Spark kills a failed job's tasks, their Python workers 2 s later: a request begun on the driver and not yet
    # sent then would be closed as lost though it never left. So the driver refuses the begins of such tasks.
    spool = tmp_path / "spool"
    assert_a_task_being_killed_stops_sending(coordinator, gateway, spool)
    assert coordinator.in_flight.open_count() == 0
    # A task that is not being killed sends as before.
    other = Worker(coordinator, str(spool), task=2)
    try:
        assert all(o.error is None for o in other.run(site_for(gateway), ["alive"]))
    finally:
        other.close()


def test_two_workers_share_one_budget(gateway: Any, coordinator: Coordinator, tmp_path: Path) -> None:
    gateway.configure(latency_ms=10)
    site = site_for(gateway, requests_per_minute=3000, max_concurrency=32)  # 50 requests/s for everybody
    workers = [Worker(coordinator, str(tmp_path / "spool"), task=i) for i in (1, 2)]
    try:
        started = time.monotonic()
        futures = [
            worker.loop.submit(worker.engine.run(site, [f"w{i} r{j}" for j in range(n)]))
            for i, (worker, n) in enumerate(zip(workers, (135, 15), strict=True))
        ]
        for future in futures:
            assert all(o.error is None for o in future.result(60))
        wall = time.monotonic() - started
    finally:
        for worker in workers:
            worker.close()
    times = sorted(entry["time"] for entry in gateway.requests())
    # 150 requests at 50/s: 3 s for the lot; a static half each would have taken 5.4 s for the busy worker.
    assert 2.0 <= times[-1] - times[0] <= 4.5, (times[-1] - times[0], wall)
    for start in times:
        assert sum(1 for t in times if start <= t < start + 1.0) <= 50 + 10
