"""The last idempotent-write version Delta recorded for a writer: read from the table's transaction log itself.

A Delta write with ``txnAppId``/``txnVersion`` leaves a ``txn`` action (``SetTransaction``) in its commit, and
every checkpoint carries the latest one per app id. Delta skips a write whose version is not above the one it
recorded, silently: an ingestion that numbered its batches from a counter that was lost or rolled back would
have them skipped and their spool files deleted. So the next batch is numbered after what the log says.

The log is read as files (the last checkpoint's ``txn`` column, then the JSON commits after it), which is the
same on every Delta version; Delta's JVM API for it changed signatures between 3.x and 4.x.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["last_txn_version", "local_log_dir"]

_COMMIT = re.compile(r"^(\d{20})\.json$")
_CHECKPOINT = re.compile(r"^(\d{20})\.checkpoint.*\.(parquet|json)$")


def local_log_dir(location: str) -> Path | None:
    """The ``_delta_log`` folder of a table at ``location``, or None when the table is not on a local disk."""
    if location.startswith("file:"):
        return Path(unquote(urlparse(location).path)) / "_delta_log"
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:", location):
        return None
    return Path(location) / "_delta_log"


def last_txn_version(spark: SparkSession, log_dir: Path, app_id: str) -> int:
    """The highest ``txnVersion`` Delta committed for ``app_id`` in the table whose log is ``log_dir``; -1 if none.

    Args:
        spark: reads the checkpoint's parquet (Spark's own reader: no other parquet library is required).
        log_dir: the table's ``_delta_log`` folder.
        app_id: the writer's ``txnAppId``.
    """
    try:
        names = [entry.name for entry in log_dir.iterdir()]
    except FileNotFoundError:
        return -1
    checkpoint_version, found = _from_checkpoint(spark, log_dir, names, app_id)
    commits = sorted(int(match.group(1)) for name in names if (match := _COMMIT.match(name)))
    for version in commits:
        if version > checkpoint_version:
            found = max(found, _from_commit(log_dir / f"{version:020d}.json", app_id))
    return found


def _from_commit(path: Path, app_id: str) -> int:
    found = -1
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:  # cleaned up by Delta after a newer checkpoint: that checkpoint holds it
        return found
    for line in text.splitlines():
        if '"txn"' not in line:
            continue
        txn = json.loads(line).get("txn")
        if isinstance(txn, dict) and txn.get("appId") == app_id:
            found = max(found, int(txn["version"]))
    return found


def _from_checkpoint(spark: SparkSession, log_dir: Path, names: list[str], app_id: str) -> tuple[int, int]:
    """The last checkpoint's version (-1 without one) and the txn version it holds for ``app_id`` (-1 for none)."""
    try:
        version = int(json.loads((log_dir / "_last_checkpoint").read_text(encoding="utf-8"))["version"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        # The hint file is optional: Delta itself falls back to listing.
        version = max((int(match.group(1)) for name in names if (match := _CHECKPOINT.match(name))), default=-1)
    if version < 0:
        return -1, -1
    # Classic, multi-part and V2 checkpoints (parquet or JSON) all keep txn actions in their top-level files.
    parquet = sorted(str(path) for path in log_dir.glob(f"{version:020d}.checkpoint*.parquet"))
    found = -1
    if parquet:
        from pyspark.sql import functions as F

        frame = spark.read.parquet(*parquet)
        if "txn" in frame.columns:
            row = frame.where(F.col("txn.appId") == app_id).agg(F.max("txn.version")).first()
            if row is not None and row[0] is not None:
                found = int(row[0])
    for path in log_dir.glob(f"{version:020d}.checkpoint.*.json"):
        found = max(found, _from_commit(path, app_id))
    return version, found
