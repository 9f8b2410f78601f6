"""Whether a process still runs, read from ``/proc``: for journal files whose writer may have died, and for a
worker that must notice its driver is gone.

A process is named by host, pid and start time (clock ticks since boot, ``/proc/<pid>/stat`` field 22): the start
time tells a live process from a new one that reused a dead one's pid. Without ``/proc`` (macOS) only whether the
pid exists is known, and a running pid is taken as alive, which never steals from a live writer.
"""

from __future__ import annotations

import os
import re
import socket
from enum import Enum
from pathlib import Path

__all__ = ["Liveness", "host_name", "process_gone", "process_liveness", "process_start_time"]

_HAVE_PROC = os.path.exists("/proc/self/stat")
_PF_EXITING = 0x4
"""The kernel's flag for a process that has begun to exit (``/proc/<pid>/stat`` field 9)."""


class Liveness(Enum):
    ALIVE = "alive"
    DEAD = "dead"
    UNKNOWN = "unknown"
    """On another host: decide by the age of the files."""


def host_name() -> str:
    """This host's name, kept to characters safe in file names everywhere."""
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


def process_liveness(host: str, pid: int, start: int) -> Liveness:
    """Whether the process ``pid`` of ``host`` that started at ``start`` (0: unknown) still runs."""
    if host != host_name():
        return Liveness.UNKNOWN
    if not _pid_exists(pid):
        return Liveness.DEAD
    current_start = process_start_time(pid)
    if start == 0 or (current_start is None and not _HAVE_PROC):
        return Liveness.ALIVE
    if current_start is None:  # exited between the two checks
        return Liveness.DEAD
    return Liveness.ALIVE if current_start == start else Liveness.DEAD
