"""Live progress of a running statement: Spark's task counts, and the usage records workers have written.

Two sources, both independent of the endpoint (they work the same against a real gateway):

- Spark's status tracker gives the tasks done and in total for the statement's jobs (a job group per
  statement), which is how far the statement has got;
- the usage records, read from the driver as workers write them: each worker appends one JSON line per
  finished request to a journal segment, renames the segment into the spool directory every few seconds, and
  the ledger later ingests and deletes it (:mod:`aiquery.usage.spool`). :class:`UsageTail` follows both
  places, reading only the bytes added since its last look, and keys each file by its segment name so a
  renamed segment is not counted twice. It gives requests, calls, failed requests and tokens for one query tag.

The counts are live, not final: a segment renamed and ingested between two looks is counted only up to what
was read. The summary at the end of a job comes from the usage table, which is exact.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from aiquery.usage.journal import JOURNAL_DIR, SEGMENT_PREFIX, SEGMENT_SUFFIX, SPOOL_PREFIX, SPOOL_SUFFIX

if TYPE_CHECKING:
    from pyspark import SparkContext

__all__ = ["ProgressReporter", "TaskCounts", "UsageCounts", "UsageTail", "spark_tasks"]

POLL_INTERVAL_S = 2.0
LOG_INTERVAL_S = 10.0
"""When the output is not a terminal, a progress line is printed at most this often."""


@dataclass
class UsageCounts:
    """What the usage records read so far say about one query tag."""

    requests: int = 0
    calls: int = 0
    """First attempts: one per distinct request the job made (retries are further requests of a call)."""
    errors: int = 0
    """Requests answered with an error status, or not answered at all (retried ones included)."""
    tokens: int = 0


@dataclass
class _Followed:
    offset: int = 0


@dataclass
class UsageTail:
    """Follows the usage records of one query tag in a spool directory, from the driver.

    Args:
        spool_dir: the ledger's spool directory.
        query_tag: count only records with this tag; None counts every record.
    """

    spool_dir: Path
    query_tag: str | None = None
    counts: UsageCounts = field(default_factory=UsageCounts)
    _files: dict[str, _Followed] = field(default_factory=dict)

    def poll(self) -> UsageCounts:
        """Read what was written since the last call; the cumulative counts."""
        for key, path in self._current_files():
            followed = self._files.setdefault(key, _Followed())
            try:
                with path.open("rb") as handle:
                    handle.seek(followed.offset)
                    data = handle.read()
            except FileNotFoundError:  # renamed or ingested since the listing: read it under its new name
                continue
            complete = data.rfind(b"\n") + 1
            followed.offset += complete
            for line in data[:complete].splitlines():
                self._count(line)
        return self.counts

    def _current_files(self) -> list[tuple[str, Path]]:
        files: list[tuple[str, Path]] = []
        # Spool first, journal second: a segment renamed in between is missed for one poll, never read twice.
        for folder, prefix, suffix in (
            (self.spool_dir, SPOOL_PREFIX, SPOOL_SUFFIX),
            (self.spool_dir / JOURNAL_DIR, SEGMENT_PREFIX, SEGMENT_SUFFIX),
        ):
            try:
                names = os.listdir(folder)
            except FileNotFoundError:
                continue
            for name in names:
                if name.startswith(prefix) and name.endswith(suffix):
                    files.append((name[len(prefix) : -len(suffix)], folder / name))
        return files

    def _count(self, line: bytes) -> None:
        try:
            record: dict[str, Any] = json.loads(line)
        except ValueError:
            return
        if self.query_tag is not None and record.get("query_tag") != self.query_tag:
            return
        counts = self.counts
        counts.requests += 1
        counts.calls += record.get("attempt") == 1
        status = record.get("status_code")
        counts.errors += not (isinstance(status, int) and 200 <= status < 300)
        counts.tokens += int(record.get("total_tokens") or 0)


@dataclass(frozen=True)
class TaskCounts:
    """Tasks of a job group's stages: done, running, in total."""

    done: int = 0
    running: int = 0
    total: int = 0


def spark_tasks(context: SparkContext, group: str) -> TaskCounts:
    """Task counts of the jobs in ``group`` (see ``SparkContext.setJobGroup``), from Spark's status tracker."""
    tracker = context.statusTracker()
    done = running = total = 0
    for job_id in tracker.getJobIdsForGroup(group):
        job = tracker.getJobInfo(job_id)
        for stage_id in job.stageIds if job is not None else ():
            stage = tracker.getStageInfo(stage_id)
            if stage is not None:
                done += stage.numCompletedTasks
                running += stage.numActiveTasks
                total += stage.numTasks
    return TaskCounts(done, running, total)


def _grouped(number: int) -> str:
    return f"{number:,}"


class ProgressReporter:
    """Prints a statement's progress every few seconds, on one rewritten line when the output is a terminal.

    Args:
        label: what runs, e.g. ``statement 2/3``.
        usage: the usage tail (None when the ledger is off).
        tasks: returns the statement's task counts (None to show none).
        stream: where to print.
        interval: seconds between looks.
    """

    def __init__(
        self,
        label: str,
        *,
        usage: UsageTail | None,
        tasks: Callable[[], TaskCounts] | None,
        stream: IO[str],
        interval: float = POLL_INTERVAL_S,
    ) -> None:
        self.label = label
        self.usage = usage
        self.tasks = tasks
        self.stream = stream
        self.interval = interval
        self.terminal = bool(getattr(stream, "isatty", lambda: False)())
        self._started = time.monotonic()
        self._base = UsageCounts(**vars(usage.poll())) if usage is not None else UsageCounts()
        self._samples: deque[tuple[float, int]] = deque(maxlen=6)
        self._last_logged = self._started
        self._requests = 0
        self._printed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="aiquery-progress", daemon=True)

    def __enter__(self) -> ProgressReporter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        line = self.line(final=True)
        # A quick statement that sent nothing (DDL, a view) needs no progress report.
        if self._requests or time.monotonic() - self._started >= 2 * self.interval:
            self._print(line, final=True)
        elif self.terminal and self._printed:
            self.stream.write("\r\x1b[K")
            self.stream.flush()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                line = self.line()
            except Exception:  # progress is a courtesy: a failed look (JVM busy or gone) must not fail the job
                continue
            now = time.monotonic()
            if self.terminal or now - self._last_logged >= LOG_INTERVAL_S:
                self._last_logged = now
                self._print(line, final=False)

    def line(self, *, final: bool = False) -> str:
        """The current progress line; the request rate is over the last ten seconds, or the whole run if final."""
        now = time.monotonic()
        parts = [f"  {self.label}", _clock(now - self._started)]
        if self.tasks is not None:
            tasks = self.tasks()
            if tasks.total:
                parts.append(f"tasks {tasks.done}/{tasks.total}")
        if self.usage is not None:
            counts = self.usage.poll()
            requests = self._requests = counts.requests - self._base.requests
            self._samples.append((now, requests))
            first_time, first_requests = (self._started, 0) if final else self._samples[0]
            rate = (requests - first_requests) / (now - first_time) if now > first_time else 0.0
            parts += [
                f"calls {_grouped(counts.calls - self._base.calls)}",
                f"requests {_grouped(requests)} ({rate:,.1f}/s)",
                f"errors {_grouped(counts.errors - self._base.errors)}",
                f"tokens {_grouped(counts.tokens - self._base.tokens)}",
            ]
        return "  ".join(parts)

    def _print(self, line: str, *, final: bool) -> None:
        self._printed = True
        if self.terminal:
            self.stream.write("\r\x1b[K" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _clock(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes:02d}:{rest:02d}"
