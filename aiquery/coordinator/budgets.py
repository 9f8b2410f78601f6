"""The application's budgets per endpoint, handed out to workers as short leases in proportion to their demand.

A *lease* is a rate (requests per second, tokens per second) that one worker may use for the next
:data:`LEASE_S` seconds. Workers renew theirs with every sync (at least every quarter second while they have
calls waiting), reporting their *demand*: the calls, and the tokens those calls are estimated to use, that they
have started and not finished. Each renewal moves the worker's share towards ``rate x its demand / all demand``;
a share grows only into capacity that no unexpired lease holds, so the sum of the leases never exceeds the
endpoint's rate, and a worker that finishes (demand 0) or stops renewing frees its share at once or within
:data:`LEASE_S`.

The rate is the configured ``requests_per_minute`` / ``tokens_per_minute`` of the endpoint, or, when none is
configured, one pace learned for the whole application from every worker's answers and 429s
(:class:`~aiquery.engine.learned_rate.LearnedRate`), so that N workers probe the endpoint like one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from aiquery.engine.learned_rate import LearnedRate

__all__ = ["LEASE_S", "MIN_SHARE", "Budgets", "EndpointBudget"]

LEASE_S = 1.0
"""How long a lease holds without renewal."""
MIN_SHARE = 1e-3
"""The rate given to a worker whose share is nothing yet: it waits (its pacer looks again every quarter second)."""

Clock = Callable[[], float]


@dataclass(slots=True)
class _Share:
    demand: float = 0.0
    rate: float = 0.0
    expires: float = 0.0


class _Pool:
    """One rate shared between workers (requests or tokens of one endpoint)."""

    __slots__ = ("shares",)

    def __init__(self) -> None:
        self.shares: dict[str, _Share] = {}

    def lease(self, worker: str, demand: float, rate: float, now: float) -> float:
        shares = self.shares
        mine = shares.get(worker)
        if mine is None:
            mine = shares[worker] = _Share()
        mine.demand = demand
        total_demand = 0.0
        held_by_others = 0.0
        for name, share in list(shares.items()):
            if share.expires <= now and name != worker:
                del shares[name]  # expired: its holder stopped renewing
                continue
            total_demand += share.demand
            if name != worker:
                held_by_others += share.rate
        if demand <= 0 or total_demand <= 0:
            mine.rate = 0.0
        else:
            target = rate * demand / total_demand
            # Grow only into what nobody holds (others shrink at their own next renewal); shrink at once.
            mine.rate = target if target <= mine.rate else min(target, max(mine.rate, rate - held_by_others))
        mine.expires = now + LEASE_S
        return mine.rate

    def release(self, worker: str) -> None:
        self.shares.pop(worker, None)


class EndpointBudget:
    """Budgets of one endpoint: configured rates, or a pace learned from everybody's answers."""

    def __init__(self, clock: Clock) -> None:
        self.requests_per_second: float | None = None
        self.tokens_per_second: float | None = None
        self.learned = LearnedRate(clock=clock)
        self._requests = _Pool()
        self._tokens = _Pool()

    def configure(self, requests_per_minute: float | None, tokens_per_minute: float | None) -> None:
        """The endpoint's configured budgets, as the workers' plans carry them (the latest plan wins)."""
        self.requests_per_second = requests_per_minute / 60.0 if requests_per_minute else None
        self.tokens_per_second = tokens_per_minute / 60.0 if tokens_per_minute else None

    @property
    def request_rate(self) -> float | None:
        """The application's request rate for this endpoint now, or None for no limit."""
        if self.requests_per_second is not None:
            return self.requests_per_second
        budget = self.learned.budget
        return budget.rate if budget is not None else None

    def observe(self, answered: int, limited: int, sent: int = 0) -> None:
        """Answers, 429s and requests sent some worker saw since its last sync (only a learned pace uses them)."""
        if self.requests_per_second is None:
            self.learned.observe(answered, limited, sent)

    def lease(self, worker: str, calls: float, tokens: float, now: float) -> list[float | None]:
        """The request and token rates ``worker`` may use now (None: unlimited)."""
        request_rate = self.request_rate
        requests = (
            None if request_rate is None else max(MIN_SHARE, self._requests.lease(worker, calls, request_rate, now))
        )
        token_rate = self.tokens_per_second
        tokens_share = (
            None if token_rate is None else max(MIN_SHARE, self._tokens.lease(worker, tokens, token_rate, now))
        )
        return [requests, tokens_share]

    def release(self, worker: str) -> None:
        """The worker is gone: its shares are free."""
        self._requests.release(worker)
        self._tokens.release(worker)


class Budgets:
    """Every endpoint's budgets in one application, keyed by the endpoint's identity."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._endpoints: dict[str, EndpointBudget] = {}

    def endpoint(self, key: str) -> EndpointBudget:
        budget = self._endpoints.get(key)
        if budget is None:
            budget = self._endpoints[key] = EndpointBudget(self._clock)
        return budget

    def sync(
        self,
        worker: str,
        demand: dict[str, list[float | None]] | None,
        seen: dict[str, list[int]] | None,
    ) -> dict[str, list[float | None]]:
        """Apply a worker's report; its leases for every endpoint it reported demand for.

        Args:
            worker: the worker's id.
            demand: per endpoint key, ``[calls, tokens, requests_per_minute, tokens_per_minute]``.
            seen: per endpoint key, ``[answered, limited, sent]`` since the worker's last report.
        """
        for key, counts in (seen or {}).items():
            self.endpoint(key).observe(*counts)
        now = self._clock()
        leases: dict[str, list[float | None]] = {}
        for key, (calls, tokens, rpm, tpm) in (demand or {}).items():
            budget = self.endpoint(key)
            budget.configure(rpm, tpm)
            leases[key] = budget.lease(worker, calls or 0.0, tokens or 0.0, now)
        return leases

    def release(self, worker: str) -> None:
        """Free every share of a worker that left."""
        for budget in self._endpoints.values():
            budget.release(worker)

    def paces(self) -> dict[str, float | None]:
        """The request rate per endpoint (for progress and tests)."""
        return {key: budget.request_rate for key, budget in self._endpoints.items()}
