"""Ingestion into Delta: exactly once across runs, restarts, a driver killed at each step, threads, dead writers."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from usage_helpers import finish, ids, record, spool_files

from aiquery.usage import ingest
from aiquery.usage.folder_upgrade import cleanup_committed
from aiquery.usage.recovery import LOST_WORKER_MESSAGE
from aiquery.usage.schema import SCHEMA_VERSION
from aiquery.usage.spool import SpoolWriter

pytestmark = pytest.mark.spark


def write(ledger: Any, prefix: str, count: int, **outcome: Any) -> list[str]:
    """``count`` finished records through a spool writer, flushed and closed; their request ids."""
    with SpoolWriter(ledger.spool_dir) as writer:
        for i in range(count):
            rec = record(f"{prefix}-{i}")
            writer.begin(rec)
            writer.end(finish(rec, **outcome))
            if i % 7 == 6:
                writer.flush()
    return [f"{prefix}-{i}" for i in range(count)]


def table_ids(spark: Any, ledger: Any) -> list[str]:
    return ids(spark.table(ledger.table).select("request_id").collect())


def test_repeated_ingestion_adds_each_record_once(spark: Any, make_ledger: Callable[..., Any]) -> None:
    ledger = make_ledger()
    first = write(ledger, "a", 20)
    assert ledger.ingest() == 20
    assert ledger.ingest() == 0
    second = write(ledger, "b", 9)
    assert ledger.ingest() == 9
    assert table_ids(spark, ledger) == sorted(first + second)
    assert spool_files(ledger.spool_dir) == []  # every ingested file removed, the last batch's too
    assert ledger.log.pending() is None and ledger.log.committed == 1  # two batches, nothing left to replay


def test_row_values_follow_the_schema(spark: Any, make_ledger: Callable[..., Any]) -> None:
    ledger = make_ledger()
    with SpoolWriter(ledger.spool_dir) as writer:
        rec = record("x", attempt=2, task_attempt_id=77, query_tag="q1", request_tags={"team": "ml", "env": "dev"})
        writer.begin(rec)
        writer.end(finish(rec, cache_read_input_tokens=3, output_reasoning_tokens=2, tokens_estimated=True))
    ledger.ingest()
    row = spark.table(ledger.table).collect()[0].asDict(recursive=True)
    assert row["event_time"].isoformat().startswith("2026-03-01T09:30")
    assert str(row["event_date"]) == "2026-03-01"
    assert row["token_details"] == {
        "cache_read_input_tokens": 3,
        "cache_creation_input_tokens": None,
        "output_reasoning_tokens": 2,
    }
    assert row["request_tags"] == {"team": "ml", "env": "dev"}
    assert (row["attempt"], row["task_attempt_id"], row["query_tag"]) == (2, 77, "q1")
    assert (row["status_code"], row["total_tokens"], row["tokens_estimated"]) == (200, 15, True)
    assert row["schema_version"] == SCHEMA_VERSION == "aiquery-4" and row["response_content_type"] == "application/json"
    assert (row["cache_hit"], row["cost"], row["function_name"]) == (False, None, None)


@pytest.mark.compat
def test_a_new_session_re_registers_the_table_and_continues(spark: Any, make_ledger: Callable[..., Any]) -> None:
    ledger = make_ledger()
    first = write(ledger, "a", 5)
    ledger.ingest()
    # Spark's in-memory catalog forgets tables when a session ends; the files stay.
    spark.sql(f"DROP TABLE {ledger.table}")
    write(ledger, "pending", 4)  # left by the "killed" driver, ingested by the next one
    again = make_ledger(ledger.table)
    assert again.ingest() == 4
    assert table_ids(spark, again) == sorted(first + [f"pending-{i}" for i in range(4)])


class Killed(BaseException):
    """Stands for the driver dying at one step of an ingestion."""


def kill_at(monkeypatch: pytest.MonkeyPatch, name: str, after: Callable[..., Any] | None = None) -> None:
    """Make ``ingest.<name>`` (a step of the ingestion) kill the driver, optionally after running ``after``."""

    def die(*args: Any) -> None:
        if after is not None:
            after(*args)
        raise Killed(name)

    monkeypatch.setattr(ingest, name, die)


def test_killed_after_planning_before_the_delta_commit(
    spark: Any, make_ledger: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = make_ledger()
    written = write(ledger, "a", 12)
    with monkeypatch.context() as patch:
        patch.setattr(ingest.UsageLedger, "_append", lambda *args: (_ for _ in ()).throw(Killed("append")))
        with pytest.raises(Killed):
            ledger.ingest()
    assert ledger.log.pending() is not None and spool_files(ledger.spool_dir)  # planned, nothing written
    assert ledger.ingest() == 12
    assert table_ids(spark, ledger) == sorted(written)
    assert spool_files(ledger.spool_dir) == [] and ledger.log.pending() is None


def test_killed_after_the_delta_commit_before_deleting_files(
    spark: Any, make_ledger: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = make_ledger()
    written = write(ledger, "a", 12)
    with monkeypatch.context() as patch:
        kill_at(patch, "_delete")
        with pytest.raises(Killed):
            ledger.ingest()
    assert len(spool_files(ledger.spool_dir)) > 0  # in the table, but still in the spool
    late = write(ledger, "b", 3)  # records that arrived after the crash: a batch of their own
    assert ledger.ingest() == 3  # the replay of the committed batch adds nothing (Delta's txn), the new one 3
    assert table_ids(spark, ledger) == sorted(written + late)
    assert spool_files(ledger.spool_dir) == []


def test_killed_after_deleting_some_files(
    spark: Any, make_ledger: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = make_ledger()
    written = write(ledger, "a", 20)
    assert len(spool_files(ledger.spool_dir)) >= 2
    with monkeypatch.context() as patch:
        kill_at(patch, "_delete", after=lambda files: Path(files[0]).unlink())
        with pytest.raises(Killed):
            ledger.ingest()
    assert ledger.ingest() == 0
    assert table_ids(spark, ledger) == sorted(written)


def test_killed_after_marking_the_batch_committed(
    spark: Any, make_ledger: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = make_ledger()
    written = write(ledger, "a", 5)
    manifests: list[str] = []
    original = ingest.IngestLog.done

    def done_then_die(log: Any, batch: Any) -> None:
        manifests.extend(p.read_text() for p in log.folder.glob("batch-*.json"))
        original(log, batch)
        (log.folder / f"batch-{batch.version}.json").write_text(manifests[-1])  # the removal never happened
        raise Killed("done")

    with monkeypatch.context() as patch:
        patch.setattr(ingest.IngestLog, "done", done_then_die)
        with pytest.raises(Killed):
            ledger.ingest()
    assert ledger.ingest() == 0
    assert ledger.log.pending() is None
    assert table_ids(spark, ledger) == sorted(written)


def test_an_older_stream_checkpoint_is_honoured_then_retired(spark: Any, make_ledger: Callable[..., Any]) -> None:
    # aiquery before the coordinator ingested with a file-source stream; a file its checkpoint committed but did
    # not delete is already in the table and must not be ingested again.
    ledger = make_ledger()
    spool = Path(ledger.spool_dir)
    committed_file = spool / "usage-old-1-1-0-000000.json"
    committed_file.write_text("{}\n")
    checkpoint = ledger.base_dir / "checkpoint" / ledger.table.lower()
    (checkpoint / "commits").mkdir(parents=True)
    (checkpoint / "offsets").mkdir(parents=True)
    (checkpoint / "sources" / "0").mkdir(parents=True)
    (checkpoint / "offsets" / "0").write_text("v1\n{}")
    (checkpoint / "commits" / "0").write_text("v1\n{}")
    (checkpoint / "sources" / "0" / "0").write_text(
        f'v1\n{{"path":"file://{committed_file.as_posix()}","timestamp":1,"batchId":0}}'
    )
    fresh = write(ledger, "new", 4)
    ledger = make_ledger(ledger.table)  # the folder is upgraded where it is opened
    assert ledger.ingest() == 4
    assert not committed_file.exists() and not checkpoint.exists()
    assert table_ids(spark, ledger) == sorted(fresh)


def test_dead_workers_are_recovered_before_ingestion(spark: Any, make_ledger: Callable[..., Any]) -> None:
    import signal
    import subprocess
    import sys

    ledger = make_ledger()
    child = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("spool_child.py")), ledger.spool_dir, "steady"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    assert ledger.ingest() == 57
    rows = spark.table(ledger.table).collect()
    assert ids(rows) == sorted([f"done-{i}" for i in range(50)] + [f"flying-{i}" for i in range(7)])
    lost = [r for r in rows if r["status_code"] is None]
    assert len(lost) == 7
    assert all(r["error_message"] == LOST_WORKER_MESSAGE and r["total_tokens"] is None for r in lost)


def test_concurrent_ingestions_do_not_double(spark: Any, make_ledger: Callable[..., Any]) -> None:
    ledger = make_ledger()
    twin = make_ledger(ledger.table)  # another ledger object on the same table: shares the lock
    written = write(ledger, "a", 30)
    results: list[int] = []
    workers = [threading.Thread(target=lambda lg=lg: results.append(lg.ingest())) for lg in (ledger, twin)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(300)
    assert sorted(results) == [0, 30]
    assert table_ids(spark, ledger) == sorted(written)


def test_creating_the_table_while_an_ingestion_creates_it_makes_it_once(
    spark: Any, make_ledger: Callable[..., Any]
) -> None:
    """`aiquery run` creates the table before its first statement while the background ingestion may be creating
    it too: both at once must give one table, not a location that is neither empty nor a Delta table."""
    ledger = make_ledger()
    written = write(ledger, "c", 5)
    start = threading.Barrier(3)
    errors: list[BaseException] = []

    def at_once(work: Callable[[], Any]) -> None:
        start.wait()
        try:
            work()
        except BaseException as error:
            errors.append(error)

    works = (ledger.ensure_table, ledger.ingest, ledger.ensure_table)
    workers = [threading.Thread(target=at_once, args=(work,)) for work in works]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(300)
    assert not errors, errors
    ledger.ingest()
    assert table_ids(spark, ledger) == sorted(written)


@pytest.mark.slow
def test_background_ingestion_makes_usage_visible(spark: Any, make_ledger: Callable[..., Any]) -> None:
    ledger = make_ledger(ingest_interval=0.5)
    ledger.start_background()
    try:
        written = write(ledger, "bg", 10)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if spark.catalog.tableExists(ledger.table) and spark.table(ledger.table).count() == 10:
                break
            time.sleep(0.5)
        more = write(ledger, "bg2", 4)
        while time.monotonic() < deadline and spark.table(ledger.table).count() < 14:
            time.sleep(0.5)
    finally:
        ledger.stop_background()
    assert table_ids(spark, ledger) == sorted(written + more)


def test_flush_usage_uses_the_session_ledger(spark: Any, tmp_path: Path) -> None:
    import aiquery
    from aiquery.config import Settings, UsageSettings
    from aiquery.spark.registry import ledger_for

    usage = UsageSettings(
        table="ai_gateway.usage_flush_test",
        dir=str(tmp_path / "dir"),
        path=str(tmp_path / "table"),
        ingest_interval=3600.0,  # only the test's own flush ingests
    )
    aiquery.register(spark, settings=Settings(usage=usage))
    ledger = ledger_for(spark)
    try:
        assert ledger is not None and ledger_for(spark) is ledger
        written = write(ledger, "f", 6)
        assert aiquery.flush_usage(spark) == 6
        assert table_ids(spark, ledger) == sorted(written)
    finally:
        aiquery.register(spark, settings=Settings(usage=UsageSettings(enabled=False)))
        spark.sql(f"DROP TABLE IF EXISTS {usage.table}")


def test_checkpoint_cleanup_reads_compacted_source_logs(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    checkpoint = tmp_path / "cp"
    (checkpoint / "commits").mkdir(parents=True)
    log = checkpoint / "sources" / "0"
    log.mkdir(parents=True)
    entries = {}
    for batch in range(12):
        name = f"usage-h-1-1-0-{batch:06d} x.json"  # a space: paths in the log are URL-encoded
        (spool / name).write_text("{}\n")
        entries[batch] = (
            f'{{"path":"file://{(spool / name).as_posix().replace(" ", "%20")}","timestamp":1,"batchId":{batch}}}'
        )
        (checkpoint / "commits" / str(batch)).write_text("v1\n{}")
    # Batches 0-9 only in the compaction file (per-batch files already removed by Spark), 10-11 on their own.
    (log / "9.compact").write_text("v1\n" + "\n".join(entries[b] for b in range(10)))
    (log / "10").write_text("v1\n" + entries[10])
    (log / "11").write_text("v1\n" + entries[11])
    (spool / "usage-not-ingested.json").write_text("{}\n")
    assert cleanup_committed(checkpoint, spool) == 12
    assert [p.name for p in spool.iterdir()] == ["usage-not-ingested.json"]
    assert cleanup_committed(checkpoint, spool) == 0
    shutil.rmtree(checkpoint)


@pytest.mark.parametrize("owner", ["another user", "everyone writes"])
def test_a_usage_folder_that_is_not_this_users_alone_is_refused_before_any_request(
    make_ledger: Callable[..., Any], tmp_path: Path, owner: str
) -> None:
    import os

    from aiquery.errors import ConfigError

    folder = tmp_path / "shared-usage"
    folder.mkdir()
    if owner == "another user":
        if os.geteuid() != 0:
            pytest.skip("giving a folder to another user needs root")
        os.chown(folder, 65534, 65534)
    else:
        os.chmod(folder, 0o777)
    with pytest.raises(ConfigError, match="set \\[usage\\] dir to a folder of your own") as refused:
        make_ledger(dir=str(folder))
    assert str(folder) in str(refused.value) and list(folder.iterdir()) == []
