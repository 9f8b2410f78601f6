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
import math
import time
from collections.abc import Awaitable, Callable

__all__ = ["AdaptiveConcurrency", "LearnedRate", "PacedBudget"]

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

    def __init__(self, maximum: int, clock: Clock = time.monotonic) -> None:
        self.maximum = maximum
        self.limit = float(maximum)
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
            else:
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

    Decisions are taken once per interval of about a second, from the answers that came back in it:

    - *Limited* (429s clearly more than ``TOLERANCE`` of the answers, by two binomial standard deviations): the
      pace becomes 95 % of the rate the endpoint accepted in the interval, but never less than half the pace
      before (one bad interval cannot sink it). When most of what was sent came back, that accepted rate less
      5 % is remembered as the *ceiling*; an interval with few answers (a stall on our side while the pipeline
      waits for a slow row, say) says nothing about the endpoint and leaves the ceiling alone.
    - Otherwise: below the ceiling the pace grows by half per interval (back to what worked, in a few seconds);
      above it, by 5 % (plus one request per second) after an interval with a tolerated few 429s, probing for
      room; after an interval without any 429, or with no ceiling known yet, by 25 %, and after three intervals
      in a row without any 429 the pace doubles per interval. The pace is never below the rate the endpoint
      has just accepted without a limit. Several processes learn their paces separately and one may be
      squeezed low while another takes most of the endpoint (measured: 2 and 98 requests/s); when the other
      finishes, the clean intervals bring the squeezed one back up within seconds instead of the half minute
      5 % a second would take.

    A minority of 429s is not taken for a rate limit: an overloaded endpoint refusing a fixed share of requests
    at any rate would otherwise push the pace down interval after interval (measured before this rule: 10 %
    random 429s took a 3,500 requests/s run down to about 5/s). Those 429s are still retried after their
    Retry-After.
    """

    INTERVAL_S = 1.0
    STALE_S = 5.0
    KEEP = 0.95
    FLOOR = 0.5
    GROWTH = 0.05
    REGROWTH = 1.5
    CLEAN_GROWTH = 1.25
    CLEAN_STREAK = 3
    STREAK_GROWTH = 2.0
    MIN_RATE = 0.5
    TOLERANCE = 0.2

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self.budget: PacedBudget | None = None
        self.ceiling: float | None = None
        self._clean_streak = 0
        self._interval_start: float | None = None
        self._accepted = 0
        self._limited = 0

    def on_success(self) -> None:
        """Count an accepted request."""
        self._accepted += 1
        self._maybe_adjust()

    def on_rate_limited(self) -> None:
        """Count a 429."""
        self._limited += 1
        self._maybe_adjust()

    def _beyond_tolerance(self) -> bool:
        # Two binomial standard deviations above the tolerance: the few answers of a query's last stragglers
        # say nothing, and one pace learned from them would slow the next query down too.
        answers = self._limited + self._accepted
        spread = math.sqrt(answers * self.TOLERANCE * (1.0 - self.TOLERANCE))
        return self._limited > self.TOLERANCE * answers + 2.0 * spread

    def _start_interval(self) -> None:
        self._interval_start = self._clock()
        self._accepted = 0
        self._limited = 0

    def _maybe_adjust(self) -> None:
        if self._interval_start is None:
            # The first interval starts with the first answer: the time before it (creating the calls, the
            # model's latency) would dilute the rate, and 429s, which come back at once, would weigh too much.
            self._start_interval()
            return
        elapsed = self._clock() - self._interval_start
        if elapsed < self.INTERVAL_S:
            return
        if elapsed > self.STALE_S:
            # The endpoint was idle (between queries, say): its counts say nothing about the rate now.
            self._start_interval()
            return
        limited = self._beyond_tolerance()
        if self.budget is None and limited:
            # Pacing starts at what the endpoint accepted from this process in the interval. Not earlier: 429s
            # come back at once and answers only after the model's latency, so a share taken before the
            # interval's end would see mostly 429s even when few requests are refused.
            self.budget = PacedBudget(max(1.0, self._accepted / elapsed), burst=1.0, clock=self._clock)
            self._start_interval()
            return
        if self.budget is not None:
            pace = self.budget.rate
            if limited:
                accepted_rate = self._accepted / elapsed
                if self._accepted + self._limited >= self.FLOOR * pace * elapsed:
                    # Most of what was sent came back: the accepted rate measures the limit. (Few answers mean a
                    # stall on our side, which says nothing about the endpoint.)
                    self.ceiling = self.KEEP * accepted_rate
                rate = max(self.KEEP * accepted_rate, self.FLOOR * pace)
            elif self.ceiling is not None and pace < self.ceiling:
                rate = min(self.ceiling, pace * self.REGROWTH**elapsed + elapsed)
            elif self.ceiling is not None and self._limited:
                rate = pace * (1.0 + self.GROWTH * elapsed) + elapsed
            else:
                growth = self.CLEAN_GROWTH if self._clean_streak < self.CLEAN_STREAK else self.STREAK_GROWTH
                rate = pace * growth**elapsed + elapsed
            if not limited:
                # What the endpoint just accepted without a limit is safe, whatever the pace said (calls that
                # had passed the pace before it was set, say, were answered in this interval).
                rate = max(rate, self._accepted / elapsed)
            self._clean_streak = 0 if self._limited else self._clean_streak + 1
            self.budget.set_rate(max(self.MIN_RATE, rate))
        self._start_interval()
