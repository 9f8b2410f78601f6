"""Helpers for tests that run Spark applications as child processes: their environment, their processes.

On ``sys.path`` for every test (see tests/conftest.py): ``from processes import job_env``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

EXPECTED_SPARK = os.environ.get("AIQUERY_EXPECT_SPARK")
"""The pyspark version scripts/compat installed (read on import, before the tests' clean environment drops it)."""


def job_env(gateway: Any, config: Path, token: str | None = None, **extra: str) -> dict[str, str]:
    """The environment of a child Spark application: this one's, plus the emulator's host and token, the
    configuration file, and this interpreter for the Python workers."""
    return {
        **os.environ,
        "DATABRICKS_HOST": gateway.url,
        "DATABRICKS_TOKEN": token or gateway.token,
        "AIQUERY_CONFIG": str(config),
        "PYSPARK_PYTHON": sys.executable,
        **extra,
    }


@contextmanager
def reaped(process: subprocess.Popen[Any]) -> Iterator[subprocess.Popen[Any]]:
    """Kill ``process`` on the way out if it is still running (a failing test leaves no Spark behind)."""
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _parents() -> dict[int, int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                # The command name in field 2 may hold spaces and parentheses: split after its last ')'.
                parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    return parents


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (so only processes this test started when ``pid`` is its child)."""
    parents = _parents()
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, p in parents.items() if p == parent]
        found += children
        frontier += children
    return found


def command_line(pid: int) -> str:
    """The process's command line, or '' if it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def python_workers(root: int) -> list[int]:
    """The pyspark worker processes below ``root``: the daemon's forked children, which run the UDFs."""
    daemons = [pid for pid in descendants(root) if "pyspark.daemon" in command_line(pid)]
    return [pid for pid in daemons if _parents().get(pid) in daemons]


def peak_rss_kib(pid: int) -> int:
    """VmHWM (the process's peak resident set) in KiB, or 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass; whether it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def time_until_quiet(count: Callable[[], int], quiet_for: float, timeout: float) -> tuple[float, int]:
    """Seconds until ``count()`` stops growing (then stays put for ``quiet_for`` s), and its final value."""
    started = time.monotonic()
    last_value, last_change = count(), started
    while time.monotonic() - started < timeout:
        time.sleep(0.05)
        value = count()
        if value != last_value:
            last_value, last_change = value, time.monotonic()
        elif time.monotonic() - last_change >= quiet_for:
            return last_change - started, value
    raise AssertionError(f"still growing after {timeout} s (at {last_value})")
