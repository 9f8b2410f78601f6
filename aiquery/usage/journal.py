"""Names of spool and journal files, and who owns them: a process identified by host, pid and start time.

Layout of a spool directory::

    <spool>/usage-<owner>-<seq>.json                 complete records, visible to ingestion
    <spool>/_journal/_seg-<owner>-<seq>.jsonl.inprogress   segment: records completed since the last rotation
    <spool>/_journal/_pending-<owner>.jsonl          requests sent ("sent" lines) and finished ("done" lines)
    <spool>/_journal/_recovery.lock                  serialises recoverers (flock)

``<owner>`` is ``<host>-<pid>-<start>-<n>``: the process start time (from ``/proc/<pid>/stat``) tells a live
process from a new one that reused a dead one's pid, and ``n`` numbers the writers of one process. Spark's
file source skips names starting with ``_`` or ``.``, so nothing under ``_journal`` is read before it is
renamed into the spool directory; renames within one POSIX filesystem are atomic.
"""

from __future__ import annotations

import os
import re
import socket
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

__all__ = [
    "JOURNAL_DIR",
    "Liveness",
    "Owner",
    "current_process",
    "liveness",
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
_HAVE_PROC = os.path.exists("/proc/self/stat")

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


def _host() -> str:
    # The host is part of file names: keep it to characters that are safe everywhere.
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "localhost"


def _stat_fields(pid: int) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command, the state first (OSError when unreadable)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # Field 2 (the command) is in parentheses and may contain spaces: count fields after the last ')'.
    return stat[stat.rindex(")") + 2 :].split()


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # the pid exists but belongs to another user
        pass
    return True


def process_start_time(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot, or None if unknown or not running."""
    try:
        return int(_stat_fields(pid)[19])  # starttime: field 22, the 20th after the command
    except (OSError, ValueError, IndexError):
        return None


_PF_EXITING = 0x4
"""The kernel's flag for a process that has begun to exit (``/proc/<pid>/stat`` field 9)."""


def process_gone(pid: int) -> bool:
    """Whether process ``pid`` has ended or is ending (exiting, or a zombie its parent has not reaped yet).

    A process killed with SIGKILL closes its sockets before it becomes a zombie: its peers learn of it while its
    state still reads running, but the kernel has already flagged it as exiting. Without ``/proc`` only a process
    that no longer exists counts as gone.
    """
    try:
        fields = _stat_fields(pid)
    except FileNotFoundError:
        return True
    except OSError:
        return not _pid_exists(pid)
    try:  # the state, then the flags (field 9, the seventh after the command)
        return fields[0] in ("Z", "X", "x") or bool(int(fields[6]) & _PF_EXITING)
    except (ValueError, IndexError):
        return False


def current_process(number: int = 0) -> Owner:
    """This process as an owner of journal files."""
    pid = os.getpid()
    return Owner(_host(), pid, process_start_time(pid) or 0, number)


class Liveness(Enum):
    ALIVE = "alive"
    DEAD = "dead"
    UNKNOWN = "unknown"
    """On another host: decide by the age of the files."""


def liveness(owner: Owner) -> Liveness:
    """Whether the process that owns journal files still runs."""
    if owner.host != _host():
        return Liveness.UNKNOWN
    if not _pid_exists(owner.pid):
        return Liveness.DEAD
    start = process_start_time(owner.pid)
    if owner.start == 0 or (start is None and not _HAVE_PROC):
        # Without /proc (macOS) a running pid is taken as alive: that never steals from a live writer.
        return Liveness.ALIVE
    if start is None:  # exited between the two checks
        return Liveness.DEAD
    return Liveness.ALIVE if start == owner.start else Liveness.DEAD


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
