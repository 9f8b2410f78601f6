"""The seam between the engine and shared state: permission to send, and where usage records go.

The engine sends; a *governor* decides what it may send and keeps what it sent. Before each chunk of calls the
engine makes one :meth:`Governor.admit` call (everything a chunk needs from shared state: the lease, and the
answer store's lookups, which may answer calls or tell them to wait for another worker's request); before
each HTTP attempt it waits on the endpoint's :class:`EndpointLimits` and hands the attempt's usage record to
:meth:`Governor.begin`, sending only once that returns; when the attempt ends, :meth:`Governor.end` takes the
completed record (and :meth:`Governor.withdraw` forgets one cancelled before it was sent). Two implementations:

- :class:`LocalGovernor` (here): limits of this process alone, a static share of any configured budget, a pace
  learned from this process's own 429s, and records in a local :class:`~aiquery.usage.record.UsageSink`. Used
  by tests, by the engine outside Spark, and by a Spark worker that cannot reach its driver.
- :class:`~aiquery.coordinator.client.CoordinatorClient`: the driver's coordinator hands out budget leases,
  keeps one learned pace per endpoint for the whole application, and journals usage records on the driver.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiquery.config import Endpoint
from aiquery.engine.learned_rate import LearnedRate
from aiquery.engine.limiter import SLOW_START, AdaptiveConcurrency, PacedBudget
from aiquery.errors import BatchCollectionLost
from aiquery.store.base import StoredAnswer
from aiquery.usage.record import MemorySink, UsageRecord, UsageSink

__all__ = [
    "Admission",
    "CapClaim",
    "CollectCounts",
    "EndpointLimits",
    "Governor",
    "LocalGovernor",
    "Pace",
    "SendingStopped",
    "TaskInfo",
    "add_sample",
    "endpoint_key",
    "limits_key",
]

Clock = Callable[[], float]


class SendingStopped(Exception):
    """Raised by the awaitable of :meth:`Governor.begin`: the request must not be sent, and it is not recorded.

    The driver says so for a request of a Spark task being killed (its job failed or was cancelled): Spark kills
    the task's Python worker moments later, and a request begun then but not yet sent would be closed as lost,
    a ledger row for a request no endpoint received.
    """


def endpoint_key(endpoint: Endpoint) -> tuple[str, str, str]:
    """What identifies an endpoint's limits: its name, base URL and API."""
    return (endpoint.name, endpoint.base_url, endpoint.api)


def limits_key(endpoint: Endpoint) -> tuple[Any, ...]:
    """What a process keys its limits by: the endpoint, and the budgets configured for it (a new configuration
    of the same endpoint gets limits of its own)."""
    return (*endpoint_key(endpoint), endpoint.requests_per_minute, endpoint.tokens_per_minute)


class Pace(Protocol):
    """A request rate found from 429s, for an endpoint without a configured budget."""

    @property
    def budget(self) -> PacedBudget | None:
        """The pace to keep, or None while no limit has been seen."""
        ...

    def on_sent(self) -> None:
        """An attempt is about to be sent."""
        ...

    def on_success(self) -> None:
        """An attempt was answered (not with a rate limit)."""
        ...

    def on_rate_limited(self) -> None:
        """An attempt was answered 429 (a retryable one)."""
        ...


class EndpointLimits:
    """What the engine waits on before each attempt to one endpoint.

    Attributes:
        concurrency: requests in flight from this process (AIMD on 429s).
        requests: the request budget this process may use now, or None.
        tokens: the token budget this process may use now, or None.
        learned: the learned pace when no request budget is configured, else None.
        active_calls: calls started and not finished (the engine keeps it; governors read it as demand).
        active_tokens: estimated tokens of those calls, when the endpoint has a token budget.
    """

    def __init__(
        self,
        concurrency: AdaptiveConcurrency,
        requests: PacedBudget | None,
        tokens: PacedBudget | None,
        learned: Pace | None,
    ) -> None:
        self.concurrency = concurrency
        self.requests = requests
        self.tokens = tokens
        self.learned = learned
        self.active_calls = 0
        self.active_tokens = 0.0

    @property
    def paced(self) -> bool:
        """Whether an attempt must wait for a budget before it is sent."""
        return (
            self.requests is not None
            or self.tokens is not None
            or (self.learned is not None and self.learned.budget is not None)
        )


@dataclass(slots=True)
class Admission:
    """What admitting a chunk found in shared state.

    Attributes:
        hits: answers the store has, by fingerprint: those calls are answered without a request.
        waiting: fingerprints another worker is sending right now: those calls wait for its answer
            (:meth:`Governor.await_answer`) instead of sending the same request again.
        failed: fingerprints whose line failed in a batch of batch mode's run, with the line's error: a call of a
            run pass fails with it (any other call sends its request).
    """

    hits: dict[str, StoredAnswer] = field(default_factory=dict)
    waiting: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CapClaim:
    """What a request would count against a spending cap should it end without a usage report (timed out,
    unreadable): providers bill generations that outlive the client, so the cap assumes the worst.

    Attributes:
        endpoint: the endpoint's name (the coordinator remembers the largest output each has billed).
        input_tokens: the request's input tokens, estimated from its body.
        output_limit: its ``max_tokens``, or None when the call sets none.
        input_per_million: the endpoint's input price (0 unpriced).
        output_per_million: its output price (0 unpriced).
    """

    endpoint: str
    input_tokens: int
    output_limit: int | None
    input_per_million: float
    output_per_million: float

    def wire(self) -> list[Any]:
        """As it travels in a sync: ``[endpoint, input_tokens, output_limit or 0, input price, output price]``."""
        return [
            self.endpoint,
            self.input_tokens,
            self.output_limit or 0,
            self.input_per_million,
            self.output_per_million,
        ]


@dataclass(frozen=True, slots=True)
class CollectCounts:
    """A collect pass's rows for one endpoint.

    Attributes:
        rows: non-NULL prompts seen.
        hits: rows the answer store answered.
        misses: rows whose request was handed to the driver for a batch.
        skipped: rows of calls that cannot be batched (no ``batch = true``, or the answer store off for them).
    """

    rows: int = 0
    hits: int = 0
    misses: int = 0
    skipped: int = 0

    def wire(self) -> list[int]:
        """As a sync carries it: ``[rows, hits, misses, skipped]``."""
        return [self.rows, self.hits, self.misses, self.skipped]


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """The Spark task a worker runs now, as governors report it: for progress and for closing lost requests."""

    task_attempt_id: int | None = None
    stage_id: int | None = None
    query: str | None = None
    """The query the task belongs to: its query tag, else its SQL execution id."""
    description: str | None = None


class Governor(Protocol):
    """Permission to send and a home for usage records. Called on the engine's event-loop thread."""

    def limits(self, endpoint: Endpoint, share: float) -> EndpointLimits:
        """The limits for ``endpoint``; ``share`` is this process's static share of its budgets (1/N)."""
        ...

    def admit(
        self, endpoint: Endpoint, calls: int, tokens: float, lookups: Sequence[str] | None
    ) -> Awaitable[Admission | None] | None:
        """One call per chunk, before any of its ``calls`` is sent; an awaitable when it must be waited for.

        Args:
            endpoint: where the chunk goes.
            calls: the chunk's calls (distinct requests).
            tokens: their estimated tokens, when the endpoint has a token budget (else 0).
            lookups: the calls' fingerprints to look up in the answer store, or None (the store is off for them).
        """
        ...

    def await_answer(self, fingerprint: str) -> Awaitable[StoredAnswer | None]:
        """For a call :class:`Admission` said to wait for: the answer, or None when this worker must send it.

        Raises (from the awaitable):
            BatchLineFailed: the request's line failed in a batch of batch mode's run (its message is the line's).
        """
        ...

    def settled(self, fingerprint: str, answer: StoredAnswer | None) -> None:
        """A call whose fingerprint was looked up ended: its answer (stored for others), or None (failed)."""
        ...

    def begin(self, record: UsageRecord, claim: CapClaim | None = None) -> Awaitable[None] | None:
        """A request is about to be sent; send it only once the returned awaitable (if any) is done.

        ``claim`` is what the request counts against a spending cap should it end without a usage report.

        The awaitable raises :class:`SendingStopped` when the request must not be sent at all (nothing is
        recorded for it then, nor is it to be withdrawn).
        """
        ...

    def end(self, record: UsageRecord) -> None:
        """The request ended (answered, failed or abandoned); ``record`` holds its outcome."""
        ...

    def withdraw(self, record: UsageRecord) -> None:
        """A begun request that was not sent after all (cancelled before it left): it is not recorded."""
        ...

    def rows_done(self, answered: int, failed: int) -> None:
        """Rows of the current task that got their answer, or failed for good."""
        ...

    def sampled(self, run: str, endpoint: str, seen: int, sent: int) -> None:
        """An estimate run's rows: ``seen`` reached the call for ``endpoint``, ``sent`` of them are in the sample."""
        ...

    def collect(
        self, run: str, endpoint: str, counts: CollectCounts, requests: list[tuple[str, str]]
    ) -> Awaitable[None]:
        """Batch mode's collect pass (see :mod:`aiquery.engine.collection`): a chunk's row counts for ``endpoint``
        and its store misses, as (fingerprint, :func:`~aiquery.apis.request_json.request_to_json` as JSON text)
        pairs, for the driver. The awaitable is done once the driver has them.

        Raises (from the awaitable):
            BatchCollectionLost: they cannot be delivered.
        """
        ...

    def start_task(self, task: TaskInfo | None, capped: bool = False, cap_owner: str = "") -> None:
        """The Spark task whose rows come next (None outside Spark); ``capped``: its query plan was made under a
        spending cap (a governor that cannot check the cap then sends nothing); ``cap_owner``: the session whose
        cap counts its requests (empty: only the application's cap, if any)."""
        ...

    async def flush(self) -> None:
        """Make every ended record durable where the ledger will find it."""
        ...

    async def aclose(self) -> None:
        """Flush and release resources."""
        ...


class LocalGovernor:
    """Limits of this process alone and a local usage sink. Implements :class:`Governor`.

    Args:
        sink: where usage records go (a :class:`MemorySink` when None).
        clock: monotonic seconds, for the limits.
    """

    def __init__(self, sink: UsageSink | None = None, clock: Clock = time.monotonic) -> None:
        self.sink: UsageSink = sink if sink is not None else MemorySink()
        self._clock = clock
        self._limits: dict[tuple[Any, ...], EndpointLimits] = {}
        self.samples: dict[str, dict[str, list[int]]] = {}
        """Estimate runs' row counts: run -> endpoint -> [seen, sent]."""

    def limits(self, endpoint: Endpoint, share: float) -> EndpointLimits:
        key = limits_key(endpoint)
        limits = self._limits.get(key)
        if limits is None:
            limits = self._limits[key] = local_limits(endpoint, share, self._clock)
        limits.concurrency.maximum = endpoint.max_concurrency
        return limits

    def admit(self, endpoint: Endpoint, calls: int, tokens: float, lookups: Sequence[str] | None) -> None:
        return None

    async def await_answer(self, fingerprint: str) -> StoredAnswer | None:
        return None  # never asked: a local governor has no store and never says to wait

    def settled(self, fingerprint: str, answer: StoredAnswer | None) -> None:
        pass

    def begin(self, record: UsageRecord, claim: CapClaim | None = None) -> None:
        self.sink.begin(record)

    def end(self, record: UsageRecord) -> None:
        self.sink.end(record)

    def withdraw(self, record: UsageRecord) -> None:
        self.sink.withdraw([record.request_id])

    def rows_done(self, answered: int, failed: int) -> None:
        pass

    def sampled(self, run: str, endpoint: str, seen: int, sent: int) -> None:
        add_sample(self.samples, run, endpoint, seen, sent)

    async def collect(self, run: str, endpoint: str, counts: CollectCounts, requests: list[tuple[str, str]]) -> None:
        raise BatchCollectionLost(
            f"batch collect run {run!r}: endpoint '{endpoint}' is called without the driver's coordinator, which "
            "collects the requests for batches; run the job with aiquery (the coordinator on)"
        )

    def start_task(self, task: TaskInfo | None, capped: bool = False, cap_owner: str = "") -> None:
        pass

    async def flush(self) -> None:
        self.sink.flush()

    async def aclose(self) -> None:
        self.sink.flush()


def local_limits(endpoint: Endpoint, share: float, clock: Clock) -> EndpointLimits:
    """Limits for a process on its own: ``share`` of the configured budgets, or a pace learned alone."""
    requests = (
        PacedBudget(endpoint.requests_per_minute * share / 60.0, clock=clock) if endpoint.requests_per_minute else None
    )
    tokens = PacedBudget(endpoint.tokens_per_minute * share / 60.0, clock=clock) if endpoint.tokens_per_minute else None
    learned = LearnedRate(clock=clock) if requests is None else None
    return EndpointLimits(concurrency_for(endpoint, clock), requests, tokens, learned)


def concurrency_for(endpoint: Endpoint, clock: Clock) -> AdaptiveConcurrency:
    """The concurrency bound of a process for ``endpoint``: a slow start unless a request budget is configured."""
    start = None if endpoint.requests_per_minute else SLOW_START
    return AdaptiveConcurrency(endpoint.max_concurrency, clock=clock, start=start)


def add_sample(samples: dict[str, dict[str, list[int]]], run: str, endpoint: str, seen: int, sent: int) -> None:
    """Add an estimate run's row counts to ``samples`` (run -> endpoint -> [seen, sent])."""
    counts = samples.setdefault(run, {}).setdefault(endpoint, [0, 0])
    counts[0] += seen
    counts[1] += sent
