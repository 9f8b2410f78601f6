"""A worker's share of each endpoint's budgets: the rates the coordinator leases it, or a static share without one.

One :class:`EndpointShare` per endpoint (and configuration) keeps the :class:`~aiquery.engine.governor.EndpointLimits`
the engine waits on, sets their rates from the coordinator's leases, falls back to a static 1/parallelism share
when the driver is out of reach, and says what the client reports in its syncs: the endpoint's demand and, for
an endpoint without a configured request budget, the requests sent and the answers and 429s that feed the
application's learned pace.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from aiquery.config import Endpoint
from aiquery.engine.governor import EndpointLimits, concurrency_for, limits_key
from aiquery.engine.learned_rate import LearnedRate
from aiquery.engine.limiter import PacedBudget

if TYPE_CHECKING:
    from aiquery.coordinator.syncs import SyncChannel

__all__ = ["EndpointShare", "EndpointShares", "budget_key"]


class _Pace:
    """The learned pace as a worker sees it: one budget, at the coordinator's lease while there is one, at this
    worker's own learned pace otherwise (before the first lease, or cut off from the driver).

    One budget object whatever sets its rate, so that requests already queued on it follow a new rate at once.
    """

    def __init__(self, syncs: SyncChannel, clock: Callable[[], float]) -> None:
        self._syncs = syncs
        self.local = LearnedRate(clock=clock)
        self.lease: float | None = None
        self._paced = PacedBudget(1.0, burst=1.0, clock=clock, fixed=False)
        self._active = False
        self.answered = 0
        self.limited = 0
        self.sent = 0

    @property
    def budget(self) -> PacedBudget | None:
        return self._paced if self._active else None

    def follow(self) -> None:
        """Set the budget's rate from the lease, else from this worker's own pace (see the class docstring)."""
        rate = self.lease if self._syncs.connected and self.lease is not None else None
        if rate is None and self.local.budget is not None:
            # Until the coordinator has a pace to lease, this worker's own: a burst of 429s stops it at once,
            # without waiting for the round trip.
            rate = self.local.budget.rate
        self._active = rate is not None
        if rate is not None and rate != self._paced.rate:
            self._paced.set_rate(rate)

    def on_sent(self) -> None:
        self.sent += 1
        self.local.on_sent()

    def on_success(self) -> None:
        self.answered += 1
        self.local.on_success()
        if self.lease is None:
            self.follow()

    def on_rate_limited(self) -> None:
        self.limited += 1
        self.local.on_rate_limited()
        if self.lease is None:
            self.follow()


class EndpointShare:
    """One endpoint's limits in this worker and what the client reports about it."""

    def __init__(self, endpoint: Endpoint, share: float, syncs: SyncChannel, clock: Callable[[], float]) -> None:
        self.key = budget_key(endpoint)
        self.endpoint = endpoint
        self.share = share
        self._clock = clock
        requests = PacedBudget(1.0, clock=clock, fixed=False) if endpoint.requests_per_minute else None
        tokens = PacedBudget(1.0, clock=clock, fixed=False) if endpoint.tokens_per_minute else None
        self.pace = _Pace(syncs, clock) if requests is None else None
        self.limits = EndpointLimits(concurrency_for(endpoint, clock), requests, tokens, self.pace)
        self.reported_idle = True
        self.static()

    def static(self) -> None:
        """Budgets for a worker cut off from the driver: its static share (and its own learned pace)."""
        if self.pace is not None:
            self.pace.follow()
        endpoint, limits = self.endpoint, self.limits
        if limits.requests is not None and endpoint.requests_per_minute:
            limits.requests.set_rate(endpoint.requests_per_minute * self.share / 60.0)
        if limits.tokens is not None and endpoint.tokens_per_minute:
            limits.tokens.set_rate(endpoint.tokens_per_minute * self.share / 60.0)

    def apply(self, lease: list[float | None]) -> None:
        requests, tokens = lease
        limits = self.limits
        if limits.requests is not None and requests is not None:
            limits.requests.set_rate(requests)
        if limits.tokens is not None and tokens is not None:
            limits.tokens.set_rate(tokens)
        if self.pace is not None:
            self.pace.lease = requests
            self.pace.follow()

    def demand(self, extra: list[float] | None) -> list[float | None]:
        limits, endpoint = self.limits, self.endpoint
        calls, tokens = extra or (0.0, 0.0)
        return [
            limits.active_calls + calls,
            limits.active_tokens + tokens,
            endpoint.requests_per_minute,
            endpoint.tokens_per_minute,
        ]

    def seen(self) -> list[int] | None:
        pace = self.pace
        if pace is None or not (pace.answered or pace.limited or pace.sent):
            return None
        counts = [pace.answered, pace.limited, pace.sent]
        pace.answered = pace.limited = pace.sent = 0
        return counts


class EndpointShares:
    """This worker's :class:`EndpointShare` of every endpoint it calls, by budget key."""

    def __init__(self, syncs: SyncChannel, clock: Callable[[], float]) -> None:
        self._syncs = syncs
        self._clock = clock
        self._entries: dict[str, EndpointShare] = {}

    def get(self, endpoint: Endpoint, share: float) -> EndpointShare:
        key = budget_key(endpoint)
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = EndpointShare(endpoint, share, self._syncs, self._clock)
        return entry

    def __getitem__(self, endpoint: Endpoint) -> EndpointShare:
        return self._entries[budget_key(endpoint)]

    @property
    def busy(self) -> bool:
        """Whether an endpoint has calls in flight, or has not reported that it has none."""
        return any(e.limits.active_calls or not e.reported_idle for e in self._entries.values())

    def report(self, extra: dict[str, list[float]]) -> tuple[dict[str, list[float | None]], dict[str, list[int]]]:
        """What the next sync says per endpoint: the demand of those busy now or at the last sync (``extra``: of
        chunks being admitted), and the answers and 429s seen since the last sync."""
        demand: dict[str, list[float | None]] = {}
        seen: dict[str, list[int]] = {}
        for entry in self._entries.values():
            extra_demand = extra.get(entry.key)
            busy = entry.limits.active_calls > 0 or extra_demand is not None
            if busy or not entry.reported_idle:
                demand[entry.key] = entry.demand(extra_demand)
                entry.reported_idle = not busy
            counts = entry.seen()
            if counts is not None:
                seen[entry.key] = counts
        return demand, seen

    def apply(self, leases: dict[str, list[float | None]]) -> None:
        for key, lease in leases.items():
            entry = self._entries.get(key)
            if entry is not None:
                entry.apply(lease)

    def static(self) -> None:
        for entry in self._entries.values():
            entry.static()


def budget_key(endpoint: Endpoint) -> str:
    # The coordinator keeps one budget per endpoint and configuration: two queries with the same share it.
    return "\x00".join(str(part) for part in limits_key(endpoint))
