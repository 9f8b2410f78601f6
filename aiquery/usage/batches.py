"""The ingestion log: which spool files each ingestion batch takes, and which batch Delta committed last.

Each batch gets the next version number and a *manifest* (``batch-<version>.json``, written atomically) listing
its spool files before anything is written to the table. The table write carries Delta's idempotent-write
options ``txnAppId`` (this log's writer id, made once and kept in ``writer``) and ``txnVersion`` (the batch's
version): Delta ignores a write whose version is not above the last one it recorded for that writer. Then the
files are deleted, ``committed`` is set to the version, and the manifest is removed.

Delta's log is the source of truth for the versions it has seen: a batch is numbered after both ``committed`` and
the last ``txnVersion`` the table's log holds for this writer (:mod:`aiquery.usage.delta_txn`), so a counter
lost, emptied or rolled back (a disk that dropped unsynced writes) never makes Delta skip new records. Every file
of the log is written to a temporary name, synced, renamed, and its folder synced.

Why nothing is written twice or lost, for each place the driver can die:

- before the manifest: the files stay in the spool and a later batch takes them;
- after the manifest, before the Delta commit: the next ingestion finds the manifest and writes the batch;
- after the Delta commit, before the files are deleted: the replay's write is ignored by Delta (same writer,
  same version), then the files are deleted;
- after some files are deleted: the replay writes only what is left, under the same version, which Delta
  ignores too (files are deleted only after the commit);
- after ``committed``, before the manifest goes: the replay sees its version committed and only cleans up.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Batch", "IngestLog"]


@dataclass(frozen=True)
class Batch:
    """One ingestion batch: its version and its spool files (absolute paths)."""

    version: int
    files: tuple[str, ...]


class IngestLog:
    """The ingestion log of one table in a usage folder.

    Args:
        folder: the log's folder (created if missing).
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        writer = self.folder / "writer"
        if not writer.exists():
            _write_atomically(writer, f"aiquery-usage-{uuid.uuid4().hex}")
        self.writer_id = writer.read_text().strip()
        """Delta's ``txnAppId`` for this table's ingestion (stable across sessions)."""

    @property
    def committed(self) -> int:
        """The last version whose batch is in the table and whose files are deleted; -1 for none."""
        try:
            return int((self.folder / "committed").read_text().strip())
        except (FileNotFoundError, ValueError):
            return -1

    def pending(self) -> Batch | None:
        """The batch an interrupted ingestion planned and did not finish, if any."""
        manifests = sorted(self.folder.glob("batch-*.json"), key=lambda path: int(path.stem.split("-")[1]))
        if not manifests:
            return None
        data = json.loads(manifests[-1].read_text())
        return Batch(int(data["version"]), tuple(data["files"]))

    def plan(self, files: list[str], *, table_seen: int = -1) -> Batch:
        """Record the next batch before anything is written.

        Args:
            files: the batch's spool files.
            table_seen: the last ``txnVersion`` the table's Delta log holds for this writer (-1 for none).
        """
        batch = Batch(max(self.committed, table_seen) + 1, tuple(files))
        _write_atomically(
            self.folder / f"batch-{batch.version}.json", json.dumps({"version": batch.version, "files": files})
        )
        return batch

    def done(self, batch: Batch) -> None:
        """The batch is in the table and its files are deleted."""
        _write_atomically(self.folder / "committed", str(batch.version))
        for manifest in self.folder.glob("batch-*.json"):
            if int(manifest.stem.split("-")[1]) <= batch.version:
                manifest.unlink(missing_ok=True)


def _write_atomically(path: Path, text: str) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        data = text.encode()
        written = 0
        while written < len(data):
            written += os.write(fd, data[written:])
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    # The rename is durable only once the folder's entry is on disk too.
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
