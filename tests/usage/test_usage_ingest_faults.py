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


@pytest.mark.parametrize("damage", ["emptied", "rolled back"])
def test_a_lost_batch_counter_loses_no_record(spark: Any, make_ledger: Callable[..., Any], damage: str) -> None:
    ledger = make_ledger()
    written = write(ledger, "a", 4)
    assert ledger.ingest() == 4
    written += write(ledger, "b", 3)
    assert ledger.ingest() == 3
    counter = Path(ledger.log_dir) / "committed"
    if damage == "emptied":
        counter.write_text("")  # as a crash leaves a file whose data never reached the disk
    else:
        counter.write_text("0")
    written += write(ledger, "c", 5)
    assert ledger.ingest() == 5
    assert table_ids(spark, ledger) == sorted(written)  # Delta did not skip the batch as one it had seen
    assert ledger.log.committed == 2


def test_the_last_txn_version_is_read_from_checkpoints_and_commits(
    spark: Any, make_ledger: Callable[..., Any]
) -> None:
    from aiquery.usage.delta_txn import last_txn_version, local_log_dir

    ledger = make_ledger()
    write(ledger, "a", 1)
    ledger.ingest()
    spark.sql(f"ALTER TABLE {ledger.table} SET TBLPROPERTIES ('delta.checkpointInterval' = '2')")
    for batch in range(3):
        write(ledger, f"b{batch}", 1)
        ledger.ingest()
    log_dir = local_log_dir(str(spark.sql(f"DESCRIBE DETAIL {ledger.table}").first()["location"]))
    assert log_dir is not None and any(log_dir.glob("*.checkpoint*.parquet"))
    assert last_txn_version(spark, log_dir, ledger.log.writer_id) == 3
    assert last_txn_version(spark, log_dir, "another-writer") == -1
    # Older commits removed (as Delta's log cleanup does): the checkpoint alone still knows the version.
    checkpoint = max(int(p.name[:20]) for p in log_dir.glob("*.checkpoint*.parquet"))
    for commit in log_dir.glob("*.json"):
        if commit.name[:20].isdigit() and int(commit.name[:20]) <= checkpoint:
            commit.unlink()
    (log_dir / "_last_checkpoint").unlink()
    assert last_txn_version(spark, log_dir, ledger.log.writer_id) == 3


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
