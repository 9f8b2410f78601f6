"""Live progress of a running statement: Spark's task counts, and what the application's coordinator counted.

Two sources, both independent of the endpoint (they work the same against a real gateway):

- Spark's status tracker gives the tasks done and in total for the statement's jobs (a job group per
  statement), which is how far the statement has got, and the ETA;
- the coordinator in the driver (:mod:`aiquery.coordinator.progress`) adds up, per query tag, the rows
  answered and failed, the requests, 429s, errors and tokens that every worker reports with its syncs.

The counts are live, not final: a worker reports every quarter second. The summary at the end of a job comes
from the usage table, which is exact.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from aiquery.coordinator.progress import RequestRate, TaskCounts, cost_parts, format_clock, request_parts
from aiquery.spark.progress import stage_tasks

if TYPE_CHECKING:
    from pyspark import SparkContext

__all__ = ["ProgressReporter", "UsageCounts", "coordinator_counts", "spark_tasks"]

POLL_INTERVAL_S = 2.0
LOG_INTERVAL_S = 10.0
"""When the output is not a terminal, a progress line is printed at most this often."""


@dataclass(frozen=True)
class UsageCounts:
    """What the workers reported so far for one query tag."""

    rows: int = 0
    """Rows that got an answer or failed for good."""
    requests: int = 0
    errors: int = 0
    """Requests answered with an error status, or not answered at all (retried ones included)."""
    rate_limited: int = 0
    tokens: int = 0
    cost: dict[str, float] = field(default_factory=dict)
    """What the requests cost, per currency."""

    def minus(self, base: UsageCounts) -> UsageCounts:
        numbers = {name: getattr(self, name) - getattr(base, name) for name in _NUMBERS}
        cost = {currency: amount - base.cost.get(currency, 0.0) for currency, amount in self.cost.items()}
        return UsageCounts(**numbers, cost=cost)


_NUMBERS = ("rows", "requests", "errors", "rate_limited", "tokens")


def coordinator_counts(coordinator: Any, query_tag: str) -> UsageCounts:
    """The counts the coordinator holds for ``query_tag``."""
    for query in coordinator.progress():
        if query.query == query_tag:
            return UsageCounts(
                query.rows_answered + query.rows_failed,
                query.requests,
                query.errors,
                query.rate_limited,
                query.tokens,
                dict(query.cost),
            )
    return UsageCounts()


def spark_tasks(context: SparkContext, group: str) -> TaskCounts:
    """Task counts of the jobs in ``group`` (see ``SparkContext.setJobGroup``), from Spark's status tracker."""
    tracker = context.statusTracker()
    stages: list[int] = []
    for job_id in tracker.getJobIdsForGroup(group):
        job = tracker.getJobInfo(job_id)
        if job is not None:
            stages.extend(job.stageIds)
    return stage_tasks(context, stages)


class ProgressReporter:
    """Prints a statement's progress every few seconds, on one rewritten line when the output is a terminal.

    Args:
        label: what runs, e.g. ``statement 2/3``.
        usage: returns the job's counts so far (None when there is no coordinator).
        tasks: returns the statement's task counts (None to show none).
        stream: where to print.
        interval: seconds between looks.
    """

    def __init__(
        self,
        label: str,
        *,
        usage: Callable[[], UsageCounts] | None,
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
        self._base = usage() if usage is not None else UsageCounts()
        # The rate over the last five looks (ten seconds at the default interval), however long the interval.
        self._rate = RequestRate(window_s=6 * interval, samples=6)
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
        elapsed = now - self._started
        parts = [f"  {self.label}", format_clock(elapsed)]
        tasks = self.tasks() if self.tasks is not None else TaskCounts()
        if tasks.total:
            parts.append(f"tasks {tasks.done}/{tasks.total}")
        # Time left and the projected cost mean something only while tasks remain.
        remaining = tasks if not final and tasks.done < tasks.total else TaskCounts()
        if self.usage is not None:
            parts += self._usage_parts(now, remaining, final=final)
        eta = remaining.eta(elapsed)
        if eta is not None:
            parts.append(f"ETA {format_clock(eta)}")
        return "  ".join(parts)

    def _usage_parts(self, now: float, remaining: TaskCounts, *, final: bool) -> list[str]:
        counts = self.usage().minus(self._base) if self.usage is not None else UsageCounts()
        requests = self._requests = counts.requests
        self._rate.add(now, requests)
        if final:
            rate = requests / (now - self._started) if now > self._started else 0.0
        else:
            rate = self._rate.per_second(now)
        parts = [f"rows {counts.rows:,}", *request_parts(requests, rate, counts.rate_limited)]
        parts += [f"errors {counts.errors:,}", f"tokens {counts.tokens:,}"]
        return parts + cost_parts(counts.cost, remaining.projected(counts.cost))

    def _print(self, line: str, *, final: bool) -> None:
        self._printed = True
        if self.terminal:
            self.stream.write("\r\x1b[K" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
