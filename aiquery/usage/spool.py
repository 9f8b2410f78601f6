"""The spool writer: the UsageSink used inside Spark's Python workers.

Each writer owns two journal files (names in :mod:`aiquery.usage.journal`):

- a *segment* ``S``, to which :meth:`SpoolWriter.end` appends each finished record with one ``os.write``;
- a *pending* file ``P``, to which :meth:`SpoolWriter.begin` appends a "sent" line (the record's request
  fields) before the request goes out, and which later gets a "done" line (request id only) once the record
  is in ``S``. Done lines are batched into the next write to ``P`` (the next ``begin`` or ``flush``): if the
  process dies first, recovery still sees the record in ``S`` and does not report it lost.

:meth:`SpoolWriter.flush` *rotates*: it renames ``S`` into the spool directory (where ingestion sees it) and
starts a new one, then rewrites ``P`` with only the requests still in flight. A process killed at any point
leaves journal files from which :func:`aiquery.usage.recovery.recover_orphans` rebuilds every completed record
once, and a status-NULL record for every request sent but never finished.

Writes reach the page cache, not the disk: records survive the death of the process (SIGKILL, OOM), not a
power cut of the machine. The journal must be on a local POSIX filesystem (or an NFS mount shared by the
workers and the driver); object stores are not supported for it yet.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import time
import weakref
from json.encoder import encode_basestring_ascii as _quote
from pathlib import Path

from aiquery.usage.codec import RecordEncoder
from aiquery.usage.journal import (
    JOURNAL_DIR,
    Owner,
    current_process,
    pending_name,
    segment_name,
    spool_name,
    write_all,
)
from aiquery.usage.private_folder import FILE_MODE, SPOOL_FIX, private_folder
from aiquery.usage.record import UsageRecord

__all__ = ["LOST_IN_FLIGHT_MESSAGE", "SpoolWriter", "spool_writer"]

logger = logging.getLogger(__name__)

LOST_IN_FLIGHT_MESSAGE = "usage writer closed while the request was in flight; the request may have been served"
SEGMENT_MAX_BYTES = 8 << 20
"""A segment this large is published at once, without waiting for the next flush."""
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
_writer_numbers = itertools.count()
_live_writers: weakref.WeakSet[SpoolWriter] = weakref.WeakSet()


class SpoolWriter:
    """Journals usage records of one process into a spool directory. Implements ``UsageSink``.

    ``begin`` and ``end`` are called from the engine's event-loop thread; ``flush`` and ``close`` may come from
    another thread. A lock keeps them apart (uncontended, it costs well under a microsecond).

    Args:
        spool_dir: the spool directory (created ``0700`` if missing); journal files go to its ``_journal``
            folder. Both must belong to this user and be closed to others' writes (see
            :mod:`aiquery.usage.private_folder`).

    Raises:
        UnsafeFolder: either folder belongs to another user or others can write to it.
    """

    def __init__(self, spool_dir: str | os.PathLike[str]) -> None:
        self.spool_dir = Path(spool_dir)
        self.journal_dir = self.spool_dir / JOURNAL_DIR
        private_folder(self.journal_dir, root=self.spool_dir, fix=SPOOL_FIX)
        self._lock = threading.Lock()
        self._encoder = RecordEncoder()
        self._closed = False
        self._forked = False
        self._open_files()
        _live_writers.add(self)

    def _open_files(self) -> None:
        self.owner: Owner = current_process(next(_writer_numbers))
        self._seq = 0
        self._pending: dict[str, str] = {}  # request id -> head of its line (no closing brace)
        self._done_backlog: list[str] = []
        self._pending_bytes = 0  # written to P since it was last rewritten
        # P before S: a journal with a segment always has its pending file (recovery relies on it).
        self._pending_path = self.journal_dir / pending_name(self.owner)
        self._pending_fd = os.open(self._pending_path, _WRITE_FLAGS | os.O_EXCL, FILE_MODE)
        self._open_segment()

    def _open_segment(self) -> None:
        self._segment_path = self.journal_dir / segment_name(self.owner, f"{self._seq:06d}")
        self._segment_fd = os.open(self._segment_path, _WRITE_FLAGS | os.O_EXCL, FILE_MODE)
        self._segment_bytes = 0

    # ---- the hot path ---------------------------------------------------------------------------------------
    def begin(self, record: UsageRecord) -> None:
        """Journal a request about to be sent (one write, before it reaches the wire).

        Raises:
            OSError: the write failed (a full disk); the journal is as it was before the call.
        """
        head = self._encoder.head(record)
        with self._lock:
            encoded = ("".join(self._done_backlog) + head + "}\n").encode()
            try:
                _write_or_undo(self._pending_fd, encoded)
            except OSError:
                if not self._reopen_after_fork():
                    raise
                encoded = (head + "}\n").encode()  # the new journal owes no done lines
                _write_or_undo(self._pending_fd, encoded)
            self._done_backlog.clear()
            self._pending[record.request_id] = head
            self._pending_bytes += len(encoded)

    def end(self, record: UsageRecord) -> None:
        """Append the finished record to the segment (one write); its "done" line follows later.

        Raises:
            OSError: the write failed (a full disk); the record is still in flight here, to be ended again.
        """
        self.end_many([record])

    def end_many(self, records: list[UsageRecord]) -> None:
        """:meth:`end` for several records, in one write."""
        with self._lock:
            pending, backlog = self._pending, len(self._done_backlog)
            heads = [(record.request_id, pending.get(record.request_id)) for record in records]
            try:
                self._write_segment("".join(map(self._ended_line, records)).encode())
            except OSError:
                del self._done_backlog[backlog:]
                pending.update((request_id, head) for request_id, head in heads if head is not None)
                raise
            self._publish_if_large()

    def _ended_line(self, record: UsageRecord) -> str:
        # Under the lock: the record's journal line, its begin forgotten and its "done" line queued.
        head = self._pending.pop(record.request_id, None)
        if head is None:  # ended without begin: still recorded, never lost
            head = self._encoder.head(record)
        self._done_backlog.append('{"done":' + _quote(record.request_id) + "}\n")
        return head + self._encoder.tail(record)

    # ---- records encoded elsewhere (the driver's coordinator journals the lines its workers send) ----------
    def begin_lines(self, request_ids: list[str], heads: list[str]) -> None:
        """Journal requests about to be sent, from their encoded heads (one write for all of them).

        Raises:
            OSError: the write failed (a full disk); the journal is as it was before the call.
        """
        with self._lock:
            encoded = ("".join(self._done_backlog) + "".join(head + "}\n" for head in heads)).encode()
            _write_or_undo(self._pending_fd, encoded)
            self._done_backlog.clear()
            pending = self._pending
            for request_id, head in zip(request_ids, heads, strict=True):
                pending[request_id] = head
            self._pending_bytes += len(encoded)

    def end_lines(self, request_ids: list[str], lines: bytes) -> None:
        """Append complete records, already encoded as journal lines, in one write.

        Raises:
            OSError: the write failed (a full disk); the journal is as it was before the call.
        """
        with self._lock:
            self._write_segment(lines)
            pending = self._pending
            for request_id in request_ids:
                pending.pop(request_id, None)
            self._done_backlog.extend('{"done":' + _quote(request_id) + "}\n" for request_id in request_ids)
            self._publish_if_large()

    def withdraw(self, request_ids: list[str]) -> None:
        """Forget begun requests that were not sent after all: marked done, with no record (recovery skips them)."""
        with self._lock:
            pending = self._pending
            withdrawn = [rid for rid in request_ids if pending.pop(rid, None) is not None]
            self._done_backlog.extend('{"done":' + _quote(rid) + "}\n" for rid in withdrawn)

    def end_lost(self, request_ids: list[str], message: str) -> int:
        """End begun requests whose sender was lost: status NULL and ``message``. Returns how many it ended.

        Raises:
            OSError: the write failed (a full disk); the requests are still in flight here.
        """
        with self._lock:
            pending = self._pending
            ended = [rid for rid in request_ids if rid in pending]
            if ended:
                self._write_segment(
                    "".join(pending[rid] + ',"error_message":' + _quote(message) + "}\n" for rid in ended).encode()
                )
                for rid in ended:
                    del pending[rid]
                self._done_backlog.extend('{"done":' + _quote(rid) + "}\n" for rid in ended)
                self._publish_if_large()
            return len(ended)

    def _write_segment(self, encoded: bytes) -> None:
        try:
            _write_or_undo(self._segment_fd, encoded)
        except OSError:
            if not self._reopen_after_fork():
                raise
            _write_or_undo(self._segment_fd, encoded)
        self._segment_bytes += len(encoded)

    def _publish_if_large(self) -> None:
        if self._segment_bytes >= SEGMENT_MAX_BYTES and not self._closed and not self._forked:
            # Published in slices ingestion can take one at a time (a long query between two ingestions would
            # otherwise leave one file of hundreds of megabytes); this compacts the pending file too.
            try:
                self._rotate()
            except OSError:  # the records are written; the next flush publishes them
                logger.warning("usage segment %s not published yet", self._segment_path, exc_info=True)

    # ---- rotation -------------------------------------------------------------------------------------------
    def flush(self) -> None:
        """Make every ended record visible to ingestion: rename the segment into the spool directory."""
        with self._lock:
            if not self._closed and not self._forked:
                self._rotate()

    def _rotate(self) -> None:
        # 1. Done lines first: once S is renamed away, recovery could no longer tell its records were done.
        if self._done_backlog:
            encoded = "".join(self._done_backlog).encode()
            _write_or_undo(self._pending_fd, encoded)  # kept for the next rotation if the disk is full
            self._done_backlog.clear()
            self._pending_bytes += len(encoded)
        # 2. Publish S (if it holds anything) and start the next one.
        if self._segment_bytes:
            target = self.spool_dir / spool_name(self.owner, f"{self._seq:06d}")
            # A fresh mtime: Spark's file source ignores files older than maxFileAge (7 days) relative to the
            # newest file it has seen.
            os.utime(self._segment_fd)
            try:
                os.rename(self._segment_path, target)
            except FileNotFoundError:
                # Taken by a recoverer that judged this writer dead (another host, idle past the threshold):
                # it published the segment itself.
                logger.warning("usage segment %s was recovered by another process", self._segment_path)
            os.close(self._segment_fd)
            self._seq += 1
            self._open_segment()
        # 3. Compact P to the requests still in flight (temp file + atomic rename).
        if self._pending_bytes:
            temp = self._pending_path.with_name(self._pending_path.name + ".tmp")
            fd = os.open(temp, _WRITE_FLAGS | os.O_TRUNC, FILE_MODE)
            write_all(fd, "".join(head + "}\n" for head in self._pending.values()).encode())
            os.replace(temp, self._pending_path)
            os.close(self._pending_fd)
            self._pending_fd = fd
            self._pending_bytes = 0
        else:
            os.utime(self._pending_fd)  # heartbeat, for recoverers on other hosts that judge by age

    def close(self) -> None:
        """Flush, record requests still in flight as lost, and remove the journal files."""
        with self._lock:
            if self._closed:
                return
            if self._forked:  # inherited and never used in this process: nothing of ours to close
                self._closed = True
                return
            if self._pending:
                # The engine should have ended every request; one it did not is recorded like a lost one,
                # and marked done in P before S is published, so recovery cannot report it twice.
                lost = "".join(
                    head + ',"error_message":' + _quote(LOST_IN_FLIGHT_MESSAGE) + "}\n"
                    for head in self._pending.values()
                ).encode()
                write_all(self._segment_fd, lost)
                self._segment_bytes += len(lost)
                self._done_backlog.extend('{"done":' + _quote(rid) + "}\n" for rid in self._pending)
                self._pending.clear()
            self._rotate()
            self._closed = True
            os.close(self._segment_fd)
            os.close(self._pending_fd)
            # S is empty and P lists nothing in flight: S first, so a journal with S always has P.
            self._segment_path.unlink(missing_ok=True)
            self._pending_path.unlink(missing_ok=True)
        _live_writers.discard(self)

    def __enter__(self) -> SpoolWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def in_flight(self) -> int:
        """Requests begun and not yet ended."""
        return len(self._pending)

    @property
    def holding(self) -> bool:
        """Requests in flight, or ended records not yet published."""
        return bool(self._pending) or self._segment_bytes > 0

    @property
    def unpublished(self) -> bool:
        """Ended records not yet published."""
        return self._segment_bytes > 0

    def began(self, request_id: str) -> bool:
        """Whether ``request_id`` was begun here and has not ended."""
        return request_id in self._pending

    def _after_fork_in_child(self) -> None:
        # The child inherited the parent's descriptors and state; writing through them would interleave with
        # the parent's journal. Drop them; the child opens its own journal (under its own pid) only if it
        # uses this writer, so forked processes that never write leave no files.
        self._lock = threading.Lock()
        if self._closed:
            return
        for fd in (self._segment_fd, self._pending_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._segment_fd = self._pending_fd = -1  # the next write fails and reopens (no check on the hot path)
        self._pending.clear()
        self._done_backlog.clear()
        self._forked = True

    def _reopen_after_fork(self) -> bool:
        if not self._forked:
            return False
        self._forked = False
        self._open_files()
        return True


def _write_or_undo(fd: int, data: bytes) -> None:
    """Append ``data`` to ``fd`` whole, or leave the file as it was: a write cut short by a full disk would leave half
    a line, which would garble the complete line written after it once the disk has room again."""
    size = os.lseek(fd, 0, os.SEEK_END)
    try:
        write_all(fd, data)
    except OSError:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, size)
        raise


def _reset_writers_after_fork() -> None:
    _writers.clear()
    for writer in list(_live_writers):
        writer._after_fork_in_child()


_writers: dict[str, SpoolWriter] = {}
_writers_lock = threading.Lock()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_writers_after_fork)


def spool_writer(spool_dir: str | os.PathLike[str], *, recover: bool = True) -> SpoolWriter:
    """The writer of this process for ``spool_dir``, created on first use.

    On first use in a process it also recovers journals left by dead processes (without waiting if another
    process is already recovering), so a worker killed mid-task has its records published by the next one.

    Args:
        spool_dir: the spool directory shared by the workers and the driver.
        recover: run orphan recovery when the writer is created.
    """
    key = os.fspath(spool_dir)
    writer = _writers.get(key)
    if writer is not None and not writer._closed:
        return writer
    with _writers_lock:
        writer = _writers.get(key)
        if writer is None or writer._closed:
            if recover:
                from aiquery.usage.recovery import recover_orphans

                # Checked before recovery reads it: files planted in someone else's folder are never published.
                private_folder(Path(key) / JOURNAL_DIR, root=key, fix=SPOOL_FIX)

                started = time.monotonic()
                try:
                    recover_orphans(key, wait=False)
                except OSError:  # recovery is a courtesy here; the driver recovers before ingesting
                    logger.warning("usage journal recovery failed in %s", key, exc_info=True)
                logger.debug("usage journal recovery took %.3f s", time.monotonic() - started)
            writer = _writers[key] = SpoolWriter(key)
        return writer
