"""Per-endpoint limits: concurrency with AIMD, and request / token budgets paced over time.

- :class:`AdaptiveConcurrency` bounds requests in flight. On a rate-limit answer it halves the bound (at most
  once per second, so one burst of 429s counts once); every success grows it back by one, up to the
  configured maximum.
- :class:`PacedBudget` spaces permits evenly at a rate (GCRA): each acquisition reserves its slot and sleeps
  until it. A small burst allowance lets a quiet endpoint start at once. Token budgets reserve an estimate
  before sending and are corrected with the real count afterwards.
- :class:`LearnedRate` finds a request rate from 429s when none is configured, anchored on the rate the
  endpoint accepted in the last second (see its docstring).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable

__all__ = ["AdaptiveConcurrency", "LearnedRate", "PacedBudget"]

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


class AdaptiveConcurrency:
    """An asyncio bound on requests in flight whose size follows AIMD."""

    DECREASE_FACTOR = 0.5
    DECREASE_SPACING_S = 1.0

    def __init__(self, maximum: int, clock: Clock = time.monotonic) -> None:
        self.maximum = maximum
        self.limit = float(maximum)
        self.in_flight = 0
        self.peak = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._clock = clock
        self._last_cut = -1e18

    async def acquire(self) -> None:
        """Wait for a free slot."""
        if self.in_flight < int(self.limit) and not self._waiters:
            self._take()
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                # The slot was handed to us just as we were cancelled: pass it on.
                self.release()
            else:
                self._waiters.remove(waiter)
            raise

    def _take(self) -> None:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)

    def release(self) -> None:
        """Give a slot back and wake waiters that now fit."""
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < int(self.limit):
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._take()
                waiter.set_result(None)

    def on_success(self) -> None:
        """Additive increase."""
        if self.limit < self.maximum:
            self.limit = min(float(self.maximum), self.limit + 1.0)
            self._wake()

    def on_rate_limited(self) -> None:
        """Multiplicative decrease, at most once per second."""
        now = self._clock()
        if now - self._last_cut >= self.DECREASE_SPACING_S:
            self._last_cut = now
            self.limit = max(1.0, self.limit * self.DECREASE_FACTOR)


class PacedBudget:
    """Permits at ``rate`` per second, spaced evenly, with a burst allowance of ``burst`` permits.

    Waiters queue in FIFO order behind one dispatcher that hands out permits at the current rate and looks at
    the rate again at least every quarter second, so a rate raised while requests wait takes effect at once.
    """

    RECHECK_S = 0.25

    def __init__(self, rate: float, *, burst: float | None = None, clock: Clock = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate * 0.1)
        self._clock = clock
        self._tat = clock()  # theoretical arrival time of the next permit (GCRA)
        self._waiters: collections.deque[tuple[asyncio.Future[None], float]] = collections.deque()
        self._queued = 0.0
        self._dispatcher: asyncio.Task[None] | None = None

    def _wait_for(self, now: float) -> float:
        return max(self._tat, now) - now - (self.burst - 1.0) / self.rate

    def _take(self, amount: float, now: float) -> None:
        self._tat = max(self._tat, now) + amount / self.rate

    def estimated_wait(self, amount: float = 1.0) -> float:
        """Seconds until ``amount`` more permits would be handed out at the current rate."""
        return max(0.0, self._wait_for(self._clock()) + (self._queued + amount - 1.0) / self.rate)

    def correct(self, delta: float) -> None:
        """Account for ``delta`` more (or, negative, fewer) permits than were taken."""
        self._tat = max(self._clock() - self.burst / self.rate, self._tat + delta / self.rate)

    def set_rate(self, rate: float) -> None:
        """Change the rate from now on."""
        now = self._clock()
        backlog = max(0.0, self._tat - now) * self.rate
        self.rate = rate
        self._tat = now + backlog / rate

    async def acquire(self, amount: float, sleep: Sleep) -> None:
        """Wait until ``amount`` permits may be used."""
        now = self._clock()
        if not self._waiters and self._wait_for(now) <= 0:
            self._take(amount, now)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((waiter, amount))
        self._queued += amount
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.ensure_future(self._dispatch(sleep))
        await waiter

    async def _dispatch(self, sleep: Sleep) -> None:
        while self._waiters:
            waiter, amount = self._waiters[0]
            if waiter.done():  # cancelled while queued
                self._waiters.popleft()
                self._queued -= amount
                continue
            now = self._clock()
            wait = self._wait_for(now)
            if wait > 0:
                await sleep(min(wait, self.RECHECK_S))
                continue
            self._waiters.popleft()
            self._queued -= amount
            self._take(amount, now)
            waiter.set_result(None)


class LearnedRate:
    """A request rate discovered from 429s, for endpoints without a configured budget.

    Decisions are taken once per interval of about a second. An interval with 429s sets the pace to 95 % of
    the rate that succeeded in it (what the endpoint actually accepted from this process), or cuts it by 30 %
    if nothing succeeded; an interval without 429s raises it by 5 % plus one request per second, probing for
    room. Anchoring on the accepted rate keeps the pace near the limit instead of collapsing under a burst of
    429s.
    """

    INTERVAL_S = 1.0
    STALE_S = 5.0
    KEEP = 0.95
    CUT = 0.7
    GROWTH = 0.05
    MIN_RATE = 0.5

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self.budget: PacedBudget | None = None
        self._interval_start = clock()
        self._accepted = 0
        self._limited = 0

    def on_success(self) -> None:
        """Count an accepted request."""
        self._accepted += 1
        self._maybe_adjust()

    def on_rate_limited(self) -> None:
        """Count a 429; the first one starts pacing at once."""
        self._limited += 1
        if self.budget is None:
            # The first interval may hold no success yet (429s come back faster than answers), so this rate is
            # provisional: the interval's end sets it from what the endpoint accepted.
            elapsed = max(self._clock() - self._interval_start, 1.0)
            self.budget = PacedBudget(max(1.0, self._accepted / elapsed), burst=1.0, clock=self._clock)
        self._maybe_adjust()

    def _start_interval(self) -> None:
        self._interval_start = self._clock()
        self._accepted = 0
        self._limited = 0

    def _maybe_adjust(self) -> None:
        elapsed = self._clock() - self._interval_start
        if elapsed < self.INTERVAL_S:
            return
        if elapsed > self.STALE_S:
            # The endpoint was idle (between queries, say): its counts say nothing about the rate now.
            self._start_interval()
            return
        if self.budget is not None:
            accepted_rate = self._accepted / elapsed
            if self._limited and self._accepted:
                rate = self.KEEP * accepted_rate
            elif self._limited:
                rate = self.budget.rate * self.CUT
            else:
                rate = self.budget.rate * (1.0 + self.GROWTH * elapsed) + elapsed
            self.budget.set_rate(max(self.MIN_RATE, rate))
        self._start_interval()
