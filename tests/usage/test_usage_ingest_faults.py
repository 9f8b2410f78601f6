"""Ingestion against a lost or rolled-back batch counter: Delta's log, not the counter, says what it has seen."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from usage_helpers import finish, ids, record

from aiquery.usage.spool import SpoolWriter

pytestmark = pytest.mark.spark


def write(ledger: Any, prefix: str, count: int) -> list[str]:
    with SpoolWriter(ledger.spool_dir) as writer:
        for i in range(count):
            rec = record(f"{prefix}-{i}")
            writer.begin(rec)
            writer.end(finish(rec))
    return [f"{prefix}-{i}" for i in range(count)]


def table_ids(spark: Any, ledger: Any) -> list[str]:
    return ids(spark.table(ledger.table).select("request_id").collect())


def test_an_emptied_batch_counter_loses_no_record(spark: Any, make_ledger: Callable[..., Any]) -> None:
    ledger = make_ledger()
    written = write(ledger, "a", 4)
    assert ledger.ingest() == 4
    # As a crash leaves a file whose data never reached the disk (or a counter rolled back to an older copy).
    (Path(ledger.log_dir) / "committed").write_text("")
    written += write(ledger, "b", 5)
    assert ledger.ingest() == 5
    assert table_ids(spark, ledger) == sorted(written)  # Delta did not skip the batch as one it had seen
    assert ledger.log.committed == 1


def test_the_last_txn_version_is_read_from_checkpoints_and_commits(
    spark: Any, make_ledger: Callable[..., Any]
) -> None:
    from aiquery.usage.delta_txn import last_txn_version, local_log_dir

    ledger = make_ledger()
    ledger.ensure_table()  # version 0
    spark.sql(f"ALTER TABLE {ledger.table} SET TBLPROPERTIES ('delta.checkpointInterval' = '2')")  # version 1
    write(ledger, "a", 1)
    ledger.ingest()  # version 2, checkpointed: txnVersion 0
    write(ledger, "b", 1)
    ledger.ingest()  # version 3, a JSON commit after the checkpoint: txnVersion 1
    log_dir = local_log_dir(str(spark.sql(f"DESCRIBE DETAIL {ledger.table}").first()["location"]))
    assert log_dir is not None and any(log_dir.glob("00000000000000000002.checkpoint*.parquet"))
    assert last_txn_version(spark, log_dir, ledger.log.writer_id) == 1
    assert last_txn_version(spark, log_dir, "another-writer") == -1
    # Commits up to the checkpoint removed (as Delta's log cleanup does), and its hint file: still found.
    for version in range(3):
        (log_dir / f"{version:020d}.json").unlink()
    (log_dir / "_last_checkpoint").unlink()
    assert last_txn_version(spark, log_dir, ledger.log.writer_id) == 1
    (log_dir / f"{3:020d}.json").unlink()  # the checkpoint alone
    assert last_txn_version(spark, log_dir, ledger.log.writer_id) == 0


def test_the_counter_is_synced_to_disk(make_ledger: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from aiquery.usage import batches

    ledger = make_ledger()
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(batches.os, "fsync", fsync)
    ledger.log.done(batches.Batch(7, ()))
    assert len(synced) == 2  # the file, then its folder (the rename)
    assert ledger.log.committed == 7
