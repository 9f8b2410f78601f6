"""Per-endpoint limits: concurrency with AIMD, and request / token budgets paced over time.

- :class:`AdaptiveConcurrency` bounds requests in flight. On a rate-limit answer it halves the bound (at most
  once per second, so one burst of 429s counts once); every success grows it back by one, up to the
  configured maximum. Without a configured budget it starts low (:data:`SLOW_START`) and grows the same way.
- :class:`PacedBudget` spaces permits evenly at a rate (GCRA): each acquisition reserves its slot and sleeps
  until it. A small burst allowance lets a quiet endpoint start at once. Token budgets reserve an estimate
  before sending and are corrected with the real count afterwards.

Where no request rate is configured, :mod:`aiquery.engine.learned_rate` learns one from 429s and paces with a
:class:`PacedBudget` whose rate it moves.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable

__all__ = ["SLOW_START", "AdaptiveConcurrency", "PacedBudget"]


SLOW_START = 16
"""Requests in flight a process starts with towards an endpoint whose rate limit is to be learned."""

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


class AdaptiveConcurrency:
    """An asyncio bound on requests in flight whose size follows AIMD.

    Waiters are served in order, retries first: a call that already had an attempt has waited out its backoff,
    and the rows behind it cannot go back to Spark until it ends (results keep their input order), so putting
    it behind every fresh call queued meanwhile would stretch a query's tail by a queue's wait per retry.
    """

    DECREASE_FACTOR = 0.5
    DECREASE_SPACING_S = 1.0

    def __init__(self, maximum: int, clock: Clock = time.monotonic, *, start: int | None = None) -> None:
        self.maximum = maximum
        # A slow start (each success adds one slot: the bound doubles per round trip) keeps the first burst to an
        # endpoint whose limit nobody knows yet from being mostly 429s.
        self.limit = float(min(maximum, start) if start is not None else maximum)
        self.in_flight = 0
        self.peak = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._retries: collections.deque[asyncio.Future[None]] = collections.deque()
        self._clock = clock
        self._last_cut = -1e18

    async def acquire(self, retry: bool = False) -> None:
        """Wait for a free slot; ``retry`` for a call's second or later attempt (served before first attempts)."""
        if self.in_flight < int(self.limit) and not self._waiters and not self._retries:
            self._take()
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._retries if retry else self._waiters
        queue.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                # The slot was handed to us just as we were cancelled: pass it on.
                self.release()
            elif waiter in queue:  # _wake may already have dropped it (it skips cancelled waiters)
                queue.remove(waiter)
            raise

    def _take(self) -> None:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)

    def release(self) -> None:
        """Give a slot back and wake waiters that now fit."""
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self.in_flight < int(self.limit) and (self._retries or self._waiters):
            waiter = (self._retries or self._waiters).popleft()
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

    BURST_S = 0.1
    """The default burst allowance, in seconds of the rate."""

    def __init__(
        self, rate: float, *, burst: float | None = None, clock: Clock = time.monotonic, fixed: bool = True
    ) -> None:
        self.rate = rate
        self.fixed = fixed
        """False when the rate may change while a caller waits (a learned pace, a leased share)."""
        self._burst_follows_rate = burst is None
        self.burst = max(1.0, burst if burst is not None else rate * self.BURST_S)
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
        if self._burst_follows_rate:
            # The allowance lets a dispatcher that woke late catch up; without it a busy loop's lateness is lost
            # from the rate for good (with an allowance of one permit, a leased 100/s delivers 85/s).
            self.burst = max(1.0, rate * self.BURST_S)

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
