"""Upgrade of a usage folder that an aiquery ingesting with a Structured Streaming file source left behind.

Such a folder holds, besides the spool, the stream's checkpoint (``checkpoint/<table>``). Spark's
``cleanSource=delete`` removes batch N's files only when batch N+1 is planned (visible in ``MicroBatchExecution``:
sources are told to commit the previous batch when the next one starts), so the stream's last batch stays in the
spool although it is in the table. Ingesting those files again would count them twice: :func:`upgrade_folder`
deletes the files of every batch that has a *commit* entry (``commits/<N>``, written after the Delta sink
committed that batch), as listed by the source log (``sources/0/<N>`` or ``<N>.compact``), then drops the
checkpoint. A marker records the last batch cleaned, so a crash mid-way only repeats deletions (of files
already gone). It runs once, when a :class:`~aiquery.usage.ingest.UsageLedger` opens the folder.

Checkpoint layout read here (Spark 3.x and 4.x)::

    <checkpoint>/offsets/<N>             batch N planned
    <checkpoint>/commits/<N>             batch N written to the sink
    <checkpoint>/sources/0/<N>           "v1" then one JSON FileEntry per line: {"path", "timestamp", "batchId"}
    <checkpoint>/sources/0/<N>.compact   every 10th batch: the entries of all batches up to N
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

__all__ = ["cleanup_committed", "needs_upgrade", "upgrade_folder"]

logger = logging.getLogger(__name__)

_CLEANED_MARKER = "_aiquery_cleaned"


def _latest(directory: Path) -> int:
    """The highest batch number with a file in ``directory``, or -1."""
    best = -1
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                stem = entry.name.split(".", 1)[0]
                if stem.isdigit() and not entry.name.endswith(".crc"):
                    best = max(best, int(stem))
    except FileNotFoundError:
        pass
    return best


def _committed_batch(checkpoint: Path) -> int:
    """The last batch the sink committed, or -1."""
    return _latest(checkpoint / "commits")


def _source_entries(log_dir: Path, first: int, last: int) -> list[str]:
    """Paths (local, decoded) of the files in batches ``first`` .. ``last`` of a file-source log."""
    by_batch: dict[int, Path] = {}
    compacts: list[tuple[int, Path]] = []
    with os.scandir(log_dir) as entries:
        for entry in entries:
            name = entry.name
            if name.endswith(".crc") or name.startswith("."):
                continue
            stem, _, suffix = name.partition(".")
            if not stem.isdigit():
                continue
            if suffix == "compact":
                compacts.append((int(stem), Path(entry.path)))
            elif not suffix:
                by_batch[int(stem)] = Path(entry.path)
    compacts.sort()
    files: list[Path] = []
    for batch in range(first, last + 1):
        if batch in by_batch:
            files.append(by_batch[batch])
        else:
            # Spark deletes per-batch files older than the latest compaction; the next compact file holds them.
            covering = next((path for number, path in compacts if number >= batch), None)
            if covering is None:
                raise FileNotFoundError(f"no source-log entry for batch {batch} in {log_dir}")
            files.append(covering)
    paths: list[str] = []
    wanted = range(first, last + 1)
    for log_file in dict.fromkeys(files):  # each compact file once
        lines = log_file.read_text(encoding="utf-8").splitlines()
        for line in lines[1:]:  # the first line is the log version, "v1"
            if not line.strip():
                continue
            entry = json.loads(line)
            if entry["batchId"] in wanted:
                paths.append(unquote(urlparse(entry["path"]).path))
    return paths


def cleanup_committed(checkpoint: Path, spool_dir: Path) -> int:
    """Delete the spool files of every committed batch not cleaned yet. Returns how many were deleted."""
    committed = _committed_batch(checkpoint)
    marker = checkpoint / _CLEANED_MARKER
    try:
        cleaned = int(marker.read_text().strip())
    except (FileNotFoundError, ValueError):
        cleaned = -1
    if committed <= cleaned:
        return 0
    root = spool_dir.resolve()
    deleted = 0
    for path_text in _source_entries(checkpoint / "sources" / "0", cleaned + 1, committed):
        path = Path(path_text)
        if path.resolve().parent != root:  # never delete outside the spool directory
            logger.warning("not deleting %s: outside the spool directory %s", path, root)
            continue
        try:
            path.unlink()
            deleted += 1
        except FileNotFoundError:
            pass
    temp = marker.with_name(marker.name + ".tmp")
    temp.write_text(str(committed))
    os.replace(temp, marker)
    return deleted


def _retire(checkpoint: Path) -> None:
    """Drop a checkpoint whose committed batches' files are deleted: ingestion no longer reads it, and nothing in
    it is left to replay."""
    retired = checkpoint.with_name(f"{checkpoint.name}.retired-{time.time_ns()}")
    os.rename(checkpoint, retired)  # atomic: the next run sees either the old checkpoint or none
    shutil.rmtree(retired, ignore_errors=True)


def _remove_retired(checkpoint: Path) -> None:
    """Delete checkpoints left half-deleted by a crash during :func:`_retire`."""
    for stale in checkpoint.parent.glob(f"{checkpoint.name}.retired-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _checkpoint(base: Path, table: str) -> Path:
    return base / "checkpoint" / table.lower()


def needs_upgrade(base: Path, table: str) -> bool:
    """Whether the usage folder ``base`` holds a stream's checkpoint for ``table`` (or one half-deleted)."""
    checkpoint = _checkpoint(base, table)
    return checkpoint.is_dir() or any(checkpoint.parent.glob(f"{checkpoint.name}.retired-*"))


def upgrade_folder(base: Path, table: str, spool: Path) -> None:
    """Bring the usage folder ``base`` of ``table`` up to date: delete the spool files a stream's checkpoint says are
    in the table already, then the checkpoint (and any a crash left half-deleted)."""
    checkpoint = _checkpoint(base, table)
    if checkpoint.is_dir():
        cleanup_committed(checkpoint, spool)
        _retire(checkpoint)
    _remove_retired(checkpoint)
