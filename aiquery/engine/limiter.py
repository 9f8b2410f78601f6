"""Per-endpoint limits: concurrency with AIMD, and request / token budgets paced over time.

- :class:`AdaptiveConcurrency` bounds requests in flight. On a rate-limit answer it halves the bound (at most
  once per second, so one burst of 429s counts once); every success grows it back by one, up to the
  configured maximum.
- :class:`PacedBudget` spaces permits evenly at a rate (GCRA): each acquisition reserves its slot and sleeps
  until it. A small burst allowance lets a quiet endpoint start at once. Token budgets reserve an estimate
  before sending and are corrected with the real count afterwards.
- :class:`LearnedRate` finds a request rate from 429s when none is configured: the first 429 sets it to the
  recent success rate, later 429s cut it by 15 % (once per second), and each quiet second adds 2 %.
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
    """Permits at ``rate`` per second, spaced evenly, with a burst allowance of ``burst`` permits."""

    def __init__(self, rate: float, *, burst: float | None = None, clock: Clock = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate * 0.1)
        self._clock = clock
        self._tat = clock()  # theoretical arrival time of the next permit (GCRA)

    def reserve(self, amount: float = 1.0) -> float:
        """Reserve ``amount`` permits; the seconds to wait before using them."""
        now = self._clock()
        tat = max(self._tat, now)
        wait = max(0.0, tat - now - (self.burst - 1.0) / self.rate)
        self._tat = tat + amount / self.rate
        return wait

    def correct(self, delta: float) -> None:
        """Account for ``delta`` more (or, negative, fewer) permits than were reserved."""
        self._tat = max(self._clock() - self.burst / self.rate, self._tat + delta / self.rate)

    def set_rate(self, rate: float) -> None:
        """Change the rate from now on."""
        now = self._clock()
        backlog = max(0.0, self._tat - now) * self.rate
        self.rate = rate
        self._tat = now + backlog / rate

    async def acquire(self, amount: float, sleep: Sleep) -> None:
        """Reserve and sleep until the permits may be used."""
        wait = self.reserve(amount)
        if wait > 0:
            await sleep(wait)


class LearnedRate:
    """A request rate discovered from 429s, for endpoints without a configured budget."""

    WINDOW_S = 5.0
    CUT = 0.85
    GROWTH_PER_S = 0.02
    MIN_RATE = 0.2

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._successes: collections.deque[float] = collections.deque()
        self.budget: PacedBudget | None = None
        self._last_change = clock()

    def on_success(self) -> None:
        """Count a success; grow the learned rate by 2 % per quiet second."""
        now = self._clock()
        if self.budget is None:
            self._successes.append(now)
            while self._successes and self._successes[0] < now - self.WINDOW_S:
                self._successes.popleft()
            return
        elapsed = now - self._last_change
        if elapsed >= 1.0:
            self._last_change = now
            self.budget.set_rate(self.budget.rate * (1.0 + self.GROWTH_PER_S) ** elapsed)

    def on_rate_limited(self) -> None:
        """Start pacing at the recent success rate, or cut the pace by 15 %."""
        now = self._clock()
        if self.budget is None:
            span = max(1.0, min(self.WINDOW_S, now - self._successes[0])) if self._successes else 1.0
            rate = max(self.MIN_RATE, 0.9 * len(self._successes) / span)
            self.budget = PacedBudget(rate, burst=1.0, clock=self._clock)
            self._last_change = now
            self._successes.clear()
        elif now - self._last_change >= 1.0:
            self._last_change = now
            self.budget.set_rate(max(self.MIN_RATE, self.budget.rate * self.CUT))
