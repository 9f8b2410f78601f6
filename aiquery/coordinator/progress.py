"""Live progress per running query, from the counters workers send with every sync; and what a line of it shows.

A query is named by its query tag (``aiquery run`` sets one per run) or, in a notebook or a plain
``spark.sql``, by its SQL execution id. Workers add what their rows and requests did since their last sync;
the task counts come from Spark's status tracker for the stages that ran ai_query, and give the ETA.

A worker counts in a :class:`ProgressReport`, the driver adds up in a :class:`ProgressBook`. The model every
progress display shares (``aiquery.progress``, the notebook's line, ``aiquery run``'s line) is here too:
:class:`TaskCounts` (and the ETA and projected cost they give), :class:`RequestRate`, and the line's parts.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiquery.engine.governor import TaskInfo
    from aiquery.usage.record import UsageRecord

__all__ = [
    "COUNTERS",
    "ProgressBook",
    "ProgressReport",
    "QueryProgress",
    "RequestRate",
    "TaskCounts",
    "cost_parts",
    "format_clock",
    "format_money",
    "request_parts",
]

COUNTERS = ("rows_answered", "rows_failed", "requests", "errors", "rate_limited", "tokens", "from_store")
"""The order of the counters a worker sends per query."""
RATE_WINDOW_S = 10.0
ACTIVE_S = 5.0
"""A query that sent nothing for this long and has no running task is no longer shown as running."""


@dataclass(frozen=True)
class TaskCounts:
    """Tasks of some Spark stages (a query's ai_query stages, a job's statement): done, running, in total."""

    done: int = 0
    running: int = 0
    total: int = 0

    def eta(self, elapsed: float) -> float | None:
        """Time left, extrapolated from the tasks done in ``elapsed`` seconds (None until one is done)."""
        if not self.total or not self.done:
            return None
        return elapsed * (self.total - self.done) / self.done

    def projected(self, cost: dict[str, float]) -> dict[str, float]:
        """The cost of all the tasks, extrapolated from ``cost`` of those done (empty until one is done)."""
        if not self.total or not self.done:
            return {}
        return {currency: amount * self.total / self.done for currency, amount in cost.items()}


class RequestRate:
    """Requests per second over the last ``window_s`` seconds, from samples of the requests sent so far."""

    def __init__(self, window_s: float = RATE_WINDOW_S, samples: int = 64) -> None:
        self.window_s = window_s
        self._samples: collections.deque[tuple[float, int]] = collections.deque(maxlen=samples)

    def add(self, when: float, requests: int) -> None:
        self._samples.append((when, requests))

    def per_second(self, now: float) -> float:
        recent = [(when, count) for when, count in self._samples if now - when <= self.window_s]
        if len(recent) < 2 or recent[-1][0] <= recent[0][0]:
            return 0.0
        return (recent[-1][1] - recent[0][1]) / max(now - recent[0][0], 1e-9)


def format_money(amount: float, currency: str) -> str:
    """``12.3456 USD``: four decimals under 100, two above."""
    return f"{amount:,.4f} {currency}" if abs(amount) < 100 else f"{amount:,.2f} {currency}"


def format_clock(seconds: float) -> str:
    """``01:05`` or, past an hour, ``2:01:05``."""
    minutes, rest = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{rest:02d}" if hours else f"{minutes:02d}:{rest:02d}"


def request_parts(requests: int, per_second: float, rate_limited: int) -> list[str]:
    """A progress line's requests, their rate, and the share answered 429 when there is one."""
    parts = [f"requests {requests:,} ({per_second:,.1f}/s)"]
    if rate_limited:
        parts.append(f"429s {rate_limited / max(1, requests):.1%}")
    return parts


def cost_parts(cost: dict[str, float], projected: dict[str, float]) -> list[str]:
    """A progress line's cost per currency, each with its projection when there is one."""
    parts = []
    for currency, amount in sorted(cost.items()):
        text = f"cost {format_money(amount, currency)}"
        if currency in projected:
            text += f" (projected {format_money(projected[currency], currency)})"
        parts.append(text)
    return parts


@dataclass(frozen=True)
class QueryProgress:
    """Where one query stands.

    Attributes:
        query: its query tag, or ``execution <id>`` for an untagged SQL execution.
        description: Spark's description of the job, when there is one.
        running: tasks still run, or workers reported work in the last few seconds.
        seconds: since its first report.
        rows_answered: rows that got an answer.
        rows_failed: rows that failed for good (with ``failOnError => false`` they carry an errorMessage).
        requests: HTTP requests sent (retries included).
        requests_per_second: over the last ten seconds.
        errors: requests answered with an error status or not answered.
        rate_limited: requests answered 429.
        tokens: tokens used by the requests answered.
        from_store: calls answered from the answer store (no request sent).
        tasks: the query's ai_query tasks per Spark's status tracker.
        eta_seconds: time left, extrapolated from the tasks done so far (None until one is done).
        cost: what its requests cost so far, per currency (endpoints without a price add nothing).
    """

    query: str
    description: str | None
    running: bool
    seconds: float
    rows_answered: int
    rows_failed: int
    requests: int
    requests_per_second: float
    errors: int
    rate_limited: int
    tokens: int
    from_store: int
    tasks: TaskCounts
    eta_seconds: float | None
    cost: dict[str, float] = field(default_factory=dict)

    @property
    def projected_cost(self) -> dict[str, float]:
        """The cost of the whole query, extrapolated from the tasks done so far (empty until one is done)."""
        return self.tasks.projected(self.cost)

    @property
    def rate_limited_share(self) -> float:
        """The share of requests answered 429."""
        return self.rate_limited / self.requests if self.requests else 0.0

    def line(self) -> str:
        """A one-line summary, as the notebook's progress line shows it."""
        parts = [f"rows {self.rows_answered:,} answered"]
        if self.rows_failed:
            parts.append(f"{self.rows_failed:,} failed")
        parts += request_parts(self.requests, self.requests_per_second, self.rate_limited)
        if self.errors:
            parts.append(f"errors {self.errors:,}")
        parts.append(f"tokens {self.tokens:,}")
        if self.from_store:
            parts.append(f"from the store {self.from_store:,}")
        parts += cost_parts(self.cost, self.projected_cost if self.running else {})
        if self.tasks.total:
            parts.append(f"tasks {self.tasks.done}/{self.tasks.total}")
        if self.eta_seconds is not None and self.running:
            parts.append(f"ETA {format_clock(self.eta_seconds)}")
        return "  ".join(parts)


class ProgressReport:
    """What a worker's rows and requests did since its last sync, per query (see :data:`COUNTERS`).

    Attributes:
        task: the task this worker runs now, which names the query its counts go to.
    """

    def __init__(self) -> None:
        self.task: TaskInfo | None = None
        self._rows: dict[str, list[int]] = {}
        self._costs: dict[str, dict[str, float]] = {}

    def __bool__(self) -> bool:
        return bool(self._rows)

    def rows_done(self, answered: int, failed: int) -> None:
        counts = self._query_counts()
        counts[0] += answered
        counts[1] += failed

    def count_request(self, record: UsageRecord) -> None:
        counts = self._query_counts()
        if record.cache_hit:
            counts[6] += 1
            return
        counts[2] += 1
        status = record.status_code
        if status is None or not 200 <= status < 300:
            counts[3] += 1
            if status == 429:
                counts[4] += 1
        if record.total_tokens:
            counts[5] += record.total_tokens
        if record.cost and record.currency:
            costs = self._costs.setdefault(self._query(), {})
            costs[record.currency] = costs.get(record.currency, 0.0) + record.cost

    def take(self) -> dict[str, Any]:
        """The sync's metadata for the counts so far (none when there are none); counting starts anew."""
        meta: dict[str, Any] = {}
        if self._rows:
            meta["rows"] = self._rows
            if self._costs:
                meta["cost"] = self._costs
                self._costs = {}
            task = self.task
            if task is not None and task.query:
                meta["stage"] = {task.query: task.stage_id}
                if task.description:
                    meta["desc"] = {task.query: task.description}
            self._rows = {}
        return meta

    def _query(self) -> str:
        task = self.task
        return task.query if task is not None and task.query else "unnamed"

    def _query_counts(self) -> list[int]:
        query = self._query()
        counts = self._rows.get(query)
        if counts is None:
            counts = self._rows[query] = [0] * len(COUNTERS)
        return counts


@dataclass
class _Query:
    description: str | None
    started: float
    updated: float
    counters: list[int] = field(default_factory=lambda: [0] * len(COUNTERS))
    stages: set[int] = field(default_factory=set)
    cost: dict[str, float] = field(default_factory=dict)
    rate: RequestRate = field(default_factory=RequestRate)


class ProgressBook:
    """Counters per query, fed by syncs (on the coordinator's loop) and read from any thread."""

    MAX_QUERIES = 200

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._queries: dict[str, _Query] = {}

    def add(
        self,
        rows: dict[str, list[int]],
        stages: dict[str, int | None],
        descriptions: dict[str, str],
        costs: dict[str, dict[str, float]] | None = None,
    ) -> None:
        """Add a worker's counters per query (see :data:`COUNTERS`) and its costs per query and currency."""
        now = self._clock()
        for query, counts in rows.items():
            entry = self._queries.get(query)
            if entry is None:
                if len(self._queries) >= self.MAX_QUERIES:
                    oldest = min(self._queries, key=lambda name: self._queries[name].updated)
                    del self._queries[oldest]
                entry = self._queries[query] = _Query(descriptions.get(query), now, now)
            entry.updated = now
            for index, value in enumerate(counts[: len(COUNTERS)]):
                entry.counters[index] += int(value)
            for currency, amount in (costs or {}).get(query, {}).items():
                entry.cost[currency] = entry.cost.get(currency, 0.0) + float(amount)
            stage = stages.get(query)
            if stage is not None:
                entry.stages.add(stage)
            entry.rate.add(now, entry.counters[2])

    def snapshot(self, tasks: Callable[[Iterable[int]], TaskCounts] | None = None) -> list[QueryProgress]:
        """Every known query, the most recently active first."""
        now = self._clock()
        result = []
        for query, entry in sorted(self._queries.items(), key=lambda item: -item[1].updated):
            counts = tasks(entry.stages) if tasks is not None and entry.stages else TaskCounts()
            answered, failed, requests, errors, limited, tokens, from_store = entry.counters
            running = counts.running > 0 or (now - entry.updated < ACTIVE_S and counts.done < counts.total)
            if not counts.total:
                running = now - entry.updated < ACTIVE_S
            elapsed = (now if running else entry.updated) - entry.started
            result.append(
                QueryProgress(
                    query=query,
                    description=entry.description,
                    running=running,
                    seconds=elapsed,
                    rows_answered=answered,
                    rows_failed=failed,
                    requests=requests,
                    requests_per_second=entry.rate.per_second(now),
                    errors=errors,
                    rate_limited=limited,
                    tokens=tokens,
                    from_store=from_store,
                    tasks=counts,
                    eta_seconds=counts.eta(elapsed),
                    cost=dict(entry.cost),
                )
            )
        return result
