"""The local journal: where a worker keeps usage records while the driver is out of reach.

Records begun or ended while the worker is cut off go to a :class:`~aiquery.usage.spool.SpoolWriter` in a
folder of this machine (:func:`local_journal_dir`), and so do those of a sync whose reply never came. Once
connected again the client delivers them to the driver file by file, deleting each once acknowledged; the driver
drops the copies it already had.

The folder is ``<tmp>/aiquery-<uid>/<application>``, private to this user (``0700``, files ``0600``; see
:mod:`aiquery.usage.private_folder`). Another user can create that path first, in a temporary folder everyone
writes to: then the worker does not refuse to journal, which would lose records, but takes the first of
``aiquery-<uid>-1`` ... ``aiquery-<uid>-15`` that is its own (every worker of the machine picks the same one, so
a dead worker's records are still delivered by the next), else a fresh folder of its own, and says so in a
warning.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiquery.coordinator.link import Batch, Reply
from aiquery.usage.private_folder import UnsafeFolder, private_folder
from aiquery.usage.record import UsageRecord
from aiquery.usage.spool import SpoolWriter

__all__ = ["LocalJournal", "local_journal_dir", "private_local_journal_dir"]

logger = logging.getLogger("aiquery.coordinator")


ALTERNATE_FOLDERS = 15
"""Numbered folders tried, in order, when ``aiquery-<uid>`` is not this user's own."""
_FIX = "it is not used"


def local_journal_dir(application: str) -> Path:
    """Where a worker keeps its records while the driver is out of reach: a folder of this machine."""
    return Path(tempfile.gettempdir()) / f"aiquery-{os.geteuid()}" / _folder_name(application)


def private_local_journal_dir(application: str) -> Path:
    """:func:`local_journal_dir`, created or checked private to this user; another of this user's own when that
    one belongs to someone else or others can write to it (with a warning naming both)."""
    preferred = local_journal_dir(application)
    try:
        return private_folder(preferred, root=preferred.parent, fix=_FIX)
    except UnsafeFolder as refusal:
        problem = refusal
    base = preferred.parent
    for number in range(1, ALTERNATE_FOLDERS + 1):
        candidate = base.with_name(f"{base.name}-{number}") / preferred.name
        try:
            chosen = private_folder(candidate, root=candidate.parent, fix=_FIX)
        except UnsafeFolder:
            continue
        break
    else:
        fresh = Path(tempfile.mkdtemp(prefix=f"{base.name}-", dir=base.parent))  # 0700, ours, new
        chosen = private_folder(fresh / preferred.name, root=fresh, fix=_FIX)
    logger.warning("aiquery: %s; this worker keeps its usage records in %s instead", problem, chosen)
    return chosen


def _folder_name(application: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in application) or "application"


class LocalJournal:
    """The records this worker could not give the driver, in a folder of this machine.

    Args:
        application: the Spark application, which names the folder (its spool is opened at the first record).
    """

    def __init__(self, application: str) -> None:
        self.application = application
        self._writer: SpoolWriter | None = None
        self._begun: set[str] = set()

    @property
    def holding(self) -> bool:
        """Whether records wait here for their delivery."""
        return self._writer is not None

    def begin(self, record: UsageRecord) -> None:
        self._open().begin(record)
        self._begun.add(record.request_id)

    def began(self, request_id: str) -> bool:
        """Whether the request's begin is in this journal (its end must follow it here)."""
        return request_id in self._begun

    def end(self, record: UsageRecord) -> None:
        self._begun.discard(record.request_id)
        self._open().end(record)

    def withdraw(self, request_id: str) -> None:
        """A request begun here and then not sent after all."""
        self._begun.discard(request_id)
        self._open().withdraw([request_id])

    def keep(self, batch: Batch) -> None:
        """Journal the records of a batch the driver did not acknowledge."""
        if batch.begin_ids or batch.end_ids or batch.withdrawn:
            writer = self._open()
            if batch.begin_ids:
                writer.begin_lines(batch.begin_ids, batch.begin_heads)
                self._begun.update(batch.begin_ids)
            if batch.end_ids:
                writer.end_lines(batch.end_ids, "".join(batch.end_lines).encode())
            if batch.withdrawn:
                writer.withdraw(batch.withdrawn)
                self._begun.difference_update(batch.withdrawn)

    async def deliver(self, journal: str, send: Callable[[dict[str, Any], bytes], Awaitable[Reply]]) -> bool:
        """Send what this journal holds to the driver's ``journal``, file by file, deleting each once acknowledged.

        Returns:
            True when everything was delivered and the journal closed: nothing waits here any more.
        """
        writer = self._writer
        if writer is None:
            return False
        from aiquery.usage.recovery import recover_orphans

        writer.flush()
        spool = writer.spool_dir
        recover_orphans(spool, wait=False)
        for path in sorted(spool.glob("usage-*.json")):
            # The folder is the machine's, shared by the application's workers on it: each file is delivered by
            # the one that claims it (an atomic rename), or the driver would get it twice under two worker ids and
            # keep both: the same records twice in the ledger.
            claimed = path.with_name(f"{path.name}.{os.getpid()}.delivering")
            try:
                os.rename(path, claimed)
            except FileNotFoundError:
                continue
            try:
                delivered = await self._send_lines(_lines(claimed), journal, send)
            except BaseException:
                os.rename(claimed, path)  # delivered again later; the driver drops what it already had
                raise
            if not delivered:
                os.rename(claimed, path)
                return False
            claimed.unlink()
        if not writer.in_flight and not any(spool.glob("usage-*.json")):
            writer.close()
            self._writer = None
            return True
        return False

    @staticmethod
    async def _send_lines(
        lines: list[bytes], journal: str, send: Callable[[dict[str, Any], bytes], Awaitable[Reply]]
    ) -> bool:
        for start in range(0, len(lines), 2000):
            part = lines[start : start + 2000]
            ids = [_request_id(line) for line in part]
            meta = {"op": "sync", "j": journal, "bl": 0, "el": sum(map(len, part)), "e": ids, "local": 1}
            reply = await send(meta, b"".join(part))
            if "error" in reply.meta:
                logger.warning("aiquery coordinator refused delivered records: %s", reply.meta["error"])
                return False
        return True

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()

    def _open(self) -> SpoolWriter:
        if self._writer is None:
            self._writer = SpoolWriter(private_local_journal_dir(self.application))
        return self._writer


def _request_id(line: bytes) -> str:
    return str(json.loads(line)["request_id"])


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)
