"""Names of spool and journal files, and who owns them: a process identified by host, pid and start time.

Layout of a spool directory::

    <spool>/usage-<owner>-<seq>.json                 complete records, visible to ingestion
    <spool>/_journal/_seg-<owner>-<seq>.jsonl.inprogress   segment: records completed since the last rotation
    <spool>/_journal/_pending-<owner>.jsonl          requests sent ("sent" lines) and finished ("done" lines)
    <spool>/_journal/_recovery.lock                  serialises recoverers (flock)

``<owner>`` is ``<host>-<pid>-<start>-<n>``: the process start time tells a live process from a new one that
reused a dead one's pid (:mod:`aiquery.liveness`), and ``n`` numbers the writers of one process. Spark's
file source skips names starting with ``_`` or ``.``, so nothing under ``_journal`` is read before it is
renamed into the spool directory; renames within one POSIX filesystem are atomic.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from aiquery.liveness import host_name, process_start_time

__all__ = [
    "JOURNAL_DIR",
    "Owner",
    "current_process",
    "parse_journal_name",
    "pending_name",
    "segment_name",
    "spool_name",
    "write_all",
]

JOURNAL_DIR = "_journal"
SEGMENT_PREFIX = "_seg-"
SEGMENT_SUFFIX = ".jsonl.inprogress"
PENDING_PREFIX = "_pending-"
PENDING_SUFFIX = ".jsonl"
TEMP_SUFFIX = ".tmp"
SPOOL_PREFIX = "usage-"
SPOOL_SUFFIX = ".json"
LOCK_NAME = "_recovery.lock"

_OWNER = r"(?P<host>.+)-(?P<pid>\d+)-(?P<start>\d+)-(?P<n>\d+)"
_SEGMENT = re.compile(rf"^_seg-{_OWNER}-(?P<seq>\d+|lost\d+)\.jsonl\.inprogress$")
_PENDING = re.compile(rf"^_pending-{_OWNER}\.jsonl(?P<temp>\.tmp)?$")


@dataclass(frozen=True)
class Owner:
    """The writer that owns a set of journal files."""

    host: str
    pid: int
    start: int
    """Process start time in clock ticks since boot (Linux), or 0 where unknown."""
    number: int = 0
    """Which writer of that process (a process may open several spool directories)."""

    @property
    def token(self) -> str:
        return f"{self.host}-{self.pid}-{self.start}-{self.number}"


def current_process(number: int = 0) -> Owner:
    """This process as an owner of journal files."""
    pid = os.getpid()
    return Owner(host_name(), pid, process_start_time(pid) or 0, number)


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (a short write happens only on a full disk or a signal)."""
    written = os.write(fd, data)
    while written < len(data):
        written += os.write(fd, data[written:])


def is_stale(paths: list[Path], stale_after: float, now: float | None = None) -> bool:
    """True when none of ``paths`` changed for ``stale_after`` seconds (missing paths count as stale)."""
    now = time.time() if now is None else now
    for path in paths:
        try:
            if now - path.stat().st_mtime < stale_after:
                return False
        except FileNotFoundError:
            continue
    return True


@dataclass(frozen=True)
class JournalName:
    """A parsed journal file name."""

    kind: str
    """``segment``, ``pending`` or ``temp``."""
    owner: Owner
    seq: str = ""


def parse_journal_name(name: str) -> JournalName | None:
    """What a journal file is and who owns it; None for other names."""
    match = _SEGMENT.match(name)
    kind = "segment"
    if match is None:
        match = _PENDING.match(name)
        if match is None:
            return None
        kind = "temp" if match.group("temp") else "pending"
    owner = Owner(match.group("host"), int(match.group("pid")), int(match.group("start")), int(match.group("n")))
    return JournalName(kind, owner, match.groupdict().get("seq") or "")


def segment_name(owner: Owner, seq: str) -> str:
    """The journal segment file for ``owner``'s segment ``seq``."""
    return f"{SEGMENT_PREFIX}{owner.token}-{seq}{SEGMENT_SUFFIX}"


def pending_name(owner: Owner) -> str:
    """The journal file listing ``owner``'s requests in flight."""
    return f"{PENDING_PREFIX}{owner.token}{PENDING_SUFFIX}"


def spool_name(owner: Owner, seq: str) -> str:
    """The visible spool file a segment becomes."""
    return f"{SPOOL_PREFIX}{owner.token}-{seq}{SPOOL_SUFFIX}"
