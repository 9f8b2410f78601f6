"""Recovery of journals left by dead writers: completed records published once, lost requests reported.

For each owner whose process is gone (same host: pid not running, or running with another start time;
another host: no journal file touched for ``stale_after`` seconds) recovery

1. cuts a partial last line off each segment (a write cut short by the kill);
2. reads the pending file: a request with a "sent" line, no "done" line and no record in any of the owner's
   segments was in flight when the process died; each becomes a record with ``status_code`` NULL, NULL tokens
   and an ``error_message`` saying the request may have been served. They go to a new segment, and only then
   get "done" lines in the pending file;
3. renames every non-empty segment into the spool directory (the atomic rename publishes it), and
4. deletes the pending file and temporary files.

A crash between any two steps leaves a journal from which the next recovery produces the same records, never
more: lost records sit in a journal segment (and count as present) before their requests are marked done, and
the pending file is deleted only after every segment is published. Recoverers, on the driver before each
ingestion and in each worker at start, take an exclusive ``flock`` on ``_journal/_recovery.lock``: a directory
listing is no snapshot, so renames alone could not stop two recoverers from judging the same owner at once.
The kernel drops the lock when its holder dies, so a crashed recoverer never blocks the next.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from aiquery.liveness import Liveness, process_liveness
from aiquery.usage.journal import (
    JOURNAL_DIR,
    LOCK_NAME,
    Owner,
    is_stale,
    parse_journal_name,
    segment_name,
    spool_name,
    write_all,
)
from aiquery.usage.private_folder import FILE_MODE

__all__ = ["DEFAULT_STALE_AFTER_S", "LOST_WORKER_MESSAGE", "RecoveryReport", "recover_orphans"]

logger = logging.getLogger(__name__)

DEFAULT_STALE_AFTER_S = 600.0
"""Journals of another host untouched this long are taken as orphaned (live writers touch theirs on flush)."""
LOST_WORKER_MESSAGE = "worker lost before the response arrived; the request may have been served"


@dataclass
class RecoveryReport:
    """What one recovery pass did."""

    owners: int = 0
    """Dead writers whose journals were recovered."""
    segments: int = 0
    """Segment files published into the spool directory."""
    records: int = 0
    """Records in the segments published (the lost ones included)."""
    lost: int = 0
    """Requests in flight when their writer died, published as status-NULL records."""
    skipped: list[str] = field(default_factory=list)
    """Owners left alone because they are alive (or not yet stale)."""


@dataclass
class _Journal:
    segments: list[Path] = field(default_factory=list)
    pending: Path | None = None
    temps: list[Path] = field(default_factory=list)

    def paths(self) -> list[Path]:
        return [*self.segments, *([self.pending] if self.pending else []), *self.temps]


def recover_orphans(
    spool_dir: str | os.PathLike[str], *, stale_after: float = DEFAULT_STALE_AFTER_S, wait: bool = True
) -> RecoveryReport:
    """Publish the journals of dead writers in ``spool_dir``. Idempotent; safe to run from many processes.

    Args:
        spool_dir: the spool directory.
        stale_after: seconds without change after which another host's journal is taken as orphaned.
        wait: wait for a recovery already running elsewhere; with False, return at once instead.

    Returns:
        What was recovered (all zeros when another process held the lock and ``wait`` was False).
    """
    journal_dir = Path(spool_dir) / JOURNAL_DIR
    report = RecoveryReport()
    if not journal_dir.is_dir():
        return report
    with _exclusive(journal_dir / LOCK_NAME, wait) as acquired:
        if not acquired:
            return report
        journals = _journals(journal_dir)
        now = time.time()
        for owner, journal in sorted(journals.items(), key=lambda item: item[0].token):
            state = process_liveness(owner.host, owner.pid, owner.start)
            if state is Liveness.ALIVE or (
                state is Liveness.UNKNOWN and not is_stale(journal.paths(), stale_after, now)
            ):
                report.skipped.append(owner.token)
                continue
            _recover(Path(spool_dir), owner, journal, report)
            report.owners += 1
    if report.owners:
        logger.info(
            "recovered usage journals of %d dead writer(s): %d record(s), %d lost request(s)",
            report.owners,
            report.records,
            report.lost,
        )
    return report


def _journals(journal_dir: Path) -> dict[Owner, _Journal]:
    journals: dict[Owner, _Journal] = {}
    with os.scandir(journal_dir) as entries:
        for entry in entries:
            parsed = parse_journal_name(entry.name)
            if parsed is None:
                continue
            journal = journals.setdefault(parsed.owner, _Journal())
            path = Path(entry.path)
            if parsed.kind == "segment":
                journal.segments.append(path)
            elif parsed.kind == "pending":
                journal.pending = path
            else:
                journal.temps.append(path)
    return journals


@contextmanager
def _exclusive(path: Path, wait: bool) -> Iterator[bool]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing releases the lock


def _recover(spool_dir: Path, owner: Owner, journal: _Journal, report: RecoveryReport) -> None:
    present: set[str] = set()
    for segment in journal.segments:
        present.update(_complete_request_ids(segment))
    if journal.pending is not None:
        lost = _lost_requests(journal.pending, present)
        if lost:
            # A new name each time: a segment with this name may already have been published and ingested.
            lost_segment = spool_dir / JOURNAL_DIR / segment_name(owner, f"lost{time.time_ns()}")
            fd = os.open(lost_segment, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, FILE_MODE)
            try:
                write_all(fd, "".join(lost.values()).encode())
            finally:
                os.close(fd)
            journal.segments.append(lost_segment)
            done = "".join(json.dumps({"done": request_id}) + "\n" for request_id in lost)
            with journal.pending.open("a", encoding="utf-8") as handle:
                handle.write(done)
            report.lost += len(lost)
    for segment in journal.segments:
        seq = segment.name[len(f"_seg-{owner.token}-") : -len(".jsonl.inprogress")]
        if segment.stat().st_size == 0:
            segment.unlink(missing_ok=True)
            continue
        report.records += _count_lines(segment)
        # A fresh mtime, so Spark's file source does not skip the file as older than maxFileAge.
        os.utime(segment)
        os.rename(segment, spool_dir / spool_name(owner, seq))
        report.segments += 1
    for temp in journal.temps:
        temp.unlink(missing_ok=True)
    if journal.pending is not None:
        journal.pending.unlink(missing_ok=True)


def _complete_request_ids(segment: Path) -> set[str]:
    """Request ids of the segment's complete lines, after cutting off a partial last line."""
    data = segment.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        os.truncate(segment, keep)
        logger.warning("cut a partial line (%d bytes) off %s", len(data) - keep, segment.name)
        data = data[:keep]
    ids = set()
    for line in data.splitlines():
        try:
            ids.add(json.loads(line)["request_id"])
        except (ValueError, KeyError, TypeError):
            logger.warning("unreadable line in %s: %r", segment.name, line[:80])
    return ids


def _lost_requests(pending: Path, present: set[str]) -> dict[str, str]:
    """Lines for the requests sent, never done and without a record: request id -> status-NULL line."""
    sent: dict[str, dict[str, object]] = {}
    done: set[str] = set()
    for line in pending.read_bytes().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:  # a partial last line: that write never completed
            continue
        if "done" in entry:
            done.add(entry["done"])
        elif "request_id" in entry:
            sent[entry["request_id"]] = entry
    lost = {}
    for request_id, entry in sent.items():
        if request_id in done or request_id in present:
            continue
        entry["error_message"] = LOST_WORKER_MESSAGE
        lost[request_id] = json.dumps(entry, separators=(",", ":")) + "\n"
    return lost


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for _ in handle)
