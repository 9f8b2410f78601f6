"""The ingestion log: which spool files each ingestion batch takes, and which batch Delta committed last.

Each batch gets the next version number and a *manifest* (``batch-<version>.json``, written atomically) listing
its spool files before anything is written to the table. The table write carries Delta's idempotent-write
options ``txnAppId`` (this log's writer id, made once and kept in ``writer``) and ``txnVersion`` (the batch's
version): Delta ignores a write whose version is not above the last one it recorded for that writer. Then the
files are deleted, ``committed`` is set to the version, and the manifest is removed.

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

    def plan(self, files: list[str]) -> Batch:
        """Record the next batch before anything is written."""
        batch = Batch(self.committed + 1, tuple(files))
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
    temp.write_text(text)
    os.replace(temp, path)
