"""Per-endpoint limits: concurrency with AIMD, and request / token budgets paced over time.

- :class:`AdaptiveConcurrency` bounds requests in flight. On a rate-limit answer it halves the bound (at most
  once per second, so one burst of 429s counts once); every success grows it back by one, up to the
  configured maximum. Without a configured budget it starts low (:data:`SLOW_START`) and grows the same way.
- :class:`PacedBudget` spaces permits evenly at a rate (GCRA): each acquisition reserves its slot and sleeps
  until it. A small burst allowance lets a quiet endpoint start at once. Token budgets reserve an estimate
  before sending and are corrected with the real count afterwards.
- :class:`LearnedRate` finds a request rate from 429s when none is configured, anchored on the rate the
  endpoint accepted in the last second (see its docstring).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
from collections.abc import Awaitable, Callable

__all__ = ["SLOW_START", "AdaptiveConcurrency", "LearnedRate", "PacedBudget"]

logger = logging.getLogger("aiquery.limiter")

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
            # from the rate for good (measured: a leased 100/s delivered 85/s with an allowance of one permit).
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


class LearnedRate:
    """A request rate discovered from 429s, for endpoints without a configured budget.

    Decisions are taken once per interval of about a second, from the answers that came back in it:

    - *Limited* (429s clearly more than ``TOLERANCE`` of the answers, by two binomial standard deviations): when
      most of what was sent came back, the pace becomes 95 % of the rate the endpoint accepted in the interval,
      and that is remembered as the *ceiling*; an interval with few answers (a stall on our side while the
      pipeline waits for a slow row, say) says nothing about the endpoint: it leaves the ceiling alone and cuts
      the pace at most by half.
    - *Over the ceiling* (the pace above the ceiling and really offered, and 429s clearly more than the share
      refused at or below the ceiling, the *baseline*, by 5 % and three standard deviations): the endpoint
      refuses what goes past its limit, found long before 429s pass the tolerance. Treated as limited. An
      endpoint refusing a fixed share at any rate refuses that share below the ceiling too, so its 429s never
      rise over the baseline.
    - Otherwise: below the ceiling the pace grows by half per interval (back to what worked, in a few seconds);
      above it, by 1 % (plus one request per second) after an interval with a tolerated few 429s, probing for
      room, and by 3 % after an interval without any; an interval in which clearly more was accepted than at
      the ceiling's limit raises the ceiling and the pace by 10 %; with no ceiling known yet, the pace grows by
      25 %; and after three intervals in a row without any 429, half again above the ceiling (so the limit has
      gone), the pace doubles per interval. An interval whose pace was not used up (the end of a query, a stall)
      says nothing about room above it and leaves the pace where it is. The pace is never below the rate the
      endpoint has just accepted without a single 429.
    - The limit a ceiling is set from is the least accepted rate of the last intervals with 429s enough to have
      used the endpoint's allowance up: an allowance saved up earlier makes what is accepted read high for a
      while, never low. Several processes pacing separately may squeeze one another (measured: 2 and 98
      requests/s); with the coordinator, the workers of one application share one pace instead.

    Before any pace exists the engine sends as fast as its concurrency allows. A burst of 429s then starts pacing
    at once, without waiting for the interval's end, at what was accepted counted over at least a whole interval
    (an endpoint's burst allowance, accepted in the first instant, would otherwise read as a far higher rate);
    the answers of the next half second, to requests sent before, may still raise it. Later, an interval answered
    mostly 429 is judged after a quarter second rather than a whole one.

    A minority of 429s is not taken for a rate limit: an overloaded endpoint refusing a fixed share of requests
    at any rate would otherwise push the pace down interval after interval (measured before this rule: 10 %
    random 429s took a 3,500 requests/s run down to about 5/s). Those 429s are still retried after their
    Retry-After.
    """

    INTERVAL_S = 1.0
    STALE_S = 5.0
    KEEP = 0.95
    FLOOR = 0.5
    GROWTH = 0.01
    REGROWTH = 1.5
    CLEAN_GROWTH = 1.25
    CLEAN_STREAK = 3
    STREAK_GROWTH = 2.0
    MIN_RATE = 0.5
    TOLERANCE = 0.2
    CEILING_GROWTH = 1.03
    ROOM_GROWTH = 1.10
    DRAINED_LIMITED = 5
    """429s in an interval that say the endpoint's allowance was used up."""
    ROOM = 1.15
    """How much more than at the ceiling's limit must be accepted to raise the ceiling."""
    EARLY_LIMITED = 20
    """429s that start pacing before the first interval ends (with the share beyond the tolerance)."""
    OVER_BASELINE = 0.05
    """How far (besides noise) the 429 share above the ceiling must exceed the baseline to mean a limit."""
    OFFERED = 0.75
    """The share of the pace that must have been answered for an interval above the ceiling to be judged."""
    BRAKE_S = 0.25
    """A paced interval answered mostly 429 (at least EARLY_LIMITED of them) is judged after this long."""
    PROVISIONAL_S = 0.5
    """How long after pacing started early the answers coming back may still raise the pace."""
    BASELINE_WEIGHT = 0.3
    ASSUMED_BASELINE_ANSWERS = 50.0

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self.budget: PacedBudget | None = None
        self.ceiling: float | None = None
        self._after_cut = False
        self._provisional = False
        self._drained: collections.deque[float] = collections.deque(maxlen=3)
        """Accepted rates of the last intervals with 429s enough to have used up the endpoint's allowance."""
        self._baseline_answers = 0.0
        self._baseline_limited = 0.0
        """Answers and 429s while the pace was at or below the ceiling (older intervals weigh less)."""
        self._clean_streak = 0
        self._interval_start: float | None = None
        self._accepted = 0
        self._limited = 0
        self._sent = 0
        """Requests sent in the interval; before the first answer, every request sent so far."""

    def on_sent(self) -> None:
        """Count a request about to be sent (the share of 429s is judged against these too, see
        :meth:`_beyond_tolerance`)."""
        self._sent += 1

    def on_success(self) -> None:
        """Count an accepted request."""
        self._accepted += 1
        self._maybe_adjust()

    def on_rate_limited(self) -> None:
        """Count a 429."""
        self._limited += 1
        self._maybe_adjust()

    def observe(self, accepted: int, limited: int, sent: int = 0) -> None:
        """Count several answers and requests sent at once (as a coordinator receives them from its workers)."""
        self._sent += sent
        if accepted or limited:
            if self._interval_start is None:
                # A batch reports answers already in: it starts the first interval and counts in it (dropping
                # it, as a single first answer is dropped, could hide the whole first burst of 429s).
                self._start_interval(keep_sent=True)
            self._accepted += accepted
            self._limited += limited
            self._maybe_adjust()

    def _beyond_tolerance(self) -> bool:
        # Two binomial standard deviations above the tolerance: the few answers of a query's last stragglers
        # say nothing, and one pace learned from them would slow the next query down too.
        # The share is of the requests sent when more were sent than answered: 429s come back at once and
        # answers after the model's latency, so while sending speeds up (a slow start) the answers in hand
        # hold too many 429s (measured: an endpoint refusing 10 % of requests at any rate read as 21 %, and
        # now and then started a pace that held a 500/s job to 354/s).
        answers = self._offered()
        spread = math.sqrt(answers * self.TOLERANCE * (1.0 - self.TOLERANCE))
        return self._limited > self.TOLERANCE * answers + 2.0 * spread

    def _offered(self) -> int:
        """Requests of the interval: those sent where counted (they include those answered with other errors,
        500s or timeouts), else the answers and 429s."""
        return max(self._accepted + self._limited, self._sent)

    def _start_interval(self, keep_sent: bool = False) -> None:
        self._interval_start = self._clock()
        self._accepted = 0
        self._limited = 0
        if not keep_sent:
            self._sent = 0

    def _maybe_adjust(self) -> None:
        if self._interval_start is None:
            # The first interval starts with the first answer: the time before it (creating the calls, the
            # model's latency) would dilute the rate, and 429s, which come back at once, would weigh too much.
            # The requests sent before it count in it: theirs are the answers coming back.
            self._start_interval(keep_sent=True)
            return
        elapsed = self._clock() - self._interval_start
        if self.budget is None and self._limited >= self.EARLY_LIMITED and self._beyond_tolerance():
            self._start_pacing(elapsed)
            return
        if self._provisional and self.budget is not None:
            if elapsed < self.PROVISIONAL_S:
                # The answers to the burst that started pacing are coming back: they raise the pace as they come.
                rate = self._accepted / max(elapsed, self.INTERVAL_S)
                if rate > self.budget.rate:
                    self.budget.set_rate(rate)
                return
            # Those answers were to requests sent before any pace (a burst allowance accepts many at once): the
            # first interval judged starts now, under the provisional pace.
            self._provisional = False
            self._start_interval()
            return
        if elapsed < self.INTERVAL_S and not self._braking(elapsed):
            return
        if elapsed > self.STALE_S:
            # The endpoint was idle (between queries, say): its counts say nothing about the rate now.
            self._start_interval()
            return
        limited = self._beyond_tolerance()
        if self.budget is None:
            if limited:
                self._start_pacing(elapsed)
            else:
                self._start_interval()
            return
        pace = self.budget.rate
        accepted_rate = self._accepted / elapsed
        if self._after_cut and not limited:
            # The interval after a cut still holds answers to what was sent before it: keep the pace one more
            # interval, so that the next one measures the baseline at the ceiling.
            self._after_cut = False
            self._start_interval()
            return
        if self._limited >= self.DRAINED_LIMITED:
            # 429s enough to say the endpoint's allowance was used up: what it accepted is its limit (a burst
            # allowance saved up earlier can make one such interval read high, never low).
            self._drained.append(accepted_rate)
        if not limited and self.ceiling is not None:
            limited = self._over_ceiling(pace, elapsed)
        self._after_cut = limited
        if limited:
            if self._accepted + self._limited >= self.FLOOR * pace * elapsed:
                # Most of what was sent came back: the accepted rate measures the limit, and the pace goes to just
                # under it. (Few answers mean a stall on our side, which says nothing about the endpoint: then the
                # pace is cut at most by half.)
                rate = self.ceiling = self.KEEP * self._plateau(accepted_rate)
            else:
                rate = max(self.KEEP * accepted_rate, self.FLOOR * pace)
        elif self.ceiling is not None and pace < self.ceiling:
            rate = min(self.ceiling, pace * self.REGROWTH**elapsed + elapsed)
        elif self._offered() < self.OFFERED * pace * elapsed:
            rate = pace  # the pace was not used up (the end of a query, a slow row): it says nothing about room
        elif self.ceiling is not None and accepted_rate > self.ROOM * self.ceiling / self.KEEP:
            # Clearly more accepted than at the limit that set the ceiling: the limit has moved up (another
            # process finished, say), or was set low at the start. The ceiling follows, the pace grows by a tenth
            # (an allowance saved up while the pace was not used up can look like room for a few seconds).
            self.ceiling = self.KEEP * accepted_rate
            self._drained.clear()  # the old limit's measurements no longer hold
            rate = pace * self.ROOM_GROWTH**elapsed + elapsed
        elif self.ceiling is not None and self._limited:
            rate = pace * (1.0 + self.GROWTH * elapsed) + elapsed
        elif self.ceiling is not None and (self._clean_streak < self.CLEAN_STREAK or pace < 1.5 * self.ceiling):
            rate = pace * self.CEILING_GROWTH**elapsed + elapsed
        else:
            # Doubling is for a limit that has gone (clean intervals far above a known ceiling). With no ceiling
            # known yet, a pace started low by a first burst must not overshoot the limit threefold (measured:
            # 20/s doubled to 300/s against an endpoint accepting 100/s, and 305 429s in one second).
            streak = self.ceiling is not None and self._clean_streak >= self.CLEAN_STREAK
            growth = self.STREAK_GROWTH if streak else self.CLEAN_GROWTH
            rate = pace * growth**elapsed + elapsed
        if not self._limited:
            # What the endpoint just accepted without a single 429 is safe, whatever the pace said (calls that
            # had passed the pace before it was set, say, were answered in this interval).
            rate = max(rate, accepted_rate)
        self._clean_streak = 0 if self._limited else self._clean_streak + 1
        logger.debug(
            "learned pace %.1f -> %.1f/s (%s; accepted %d, 429s %d in %.2f s, ceiling %.1f)",
            pace,
            rate,
            "limited" if limited else "not limited",
            self._accepted,
            self._limited,
            elapsed,
            self.ceiling or 0.0,
        )
        self.budget.set_rate(max(self.MIN_RATE, rate))
        self._start_interval()

    def _plateau(self, accepted_rate: float) -> float:
        """The endpoint's limit as measured: the least accepted rate of the last intervals that ran out of room."""
        return min([accepted_rate, *self._drained])

    def _braking(self, elapsed: float) -> bool:
        """Whether a paced interval already drew so many 429s that waiting for its end would only add more."""
        return (
            self.budget is not None
            and elapsed >= self.BRAKE_S
            and self._limited >= self.EARLY_LIMITED
            and self._limited > self._accepted
        )

    def _over_ceiling(self, pace: float, elapsed: float) -> bool:
        """Whether this interval, paced above the ceiling, drew clearly more 429s than the baseline."""
        assert self.ceiling is not None
        answers = self._accepted + self._limited
        if answers < 10:
            return False
        if pace <= self.ceiling:
            keep = 1.0 - self.BASELINE_WEIGHT
            self._baseline_answers = keep * self._baseline_answers + answers
            self._baseline_limited = keep * self._baseline_limited + self._limited
            return False
        if answers < self.OFFERED * pace * elapsed:
            return False  # the pace was not really offered (a stall, the end of a query): it says nothing
        # Until the share at the ceiling is measured, it is taken as none (as if from a few dozen answers).
        baseline = self.baseline or 0.0
        weight = max(self._baseline_answers, self.ASSUMED_BASELINE_ANSWERS)
        # Both shares are estimates: the spread of their difference counts the answers behind each.
        p = max(baseline, 0.01)
        spread = math.sqrt(p * (1.0 - p) * (1.0 / answers + 1.0 / weight))
        return self._limited / answers > baseline + self.OVER_BASELINE + 3.0 * spread

    @property
    def baseline(self) -> float | None:
        """The share of answers refused with 429 while the pace was at or below the ceiling, if measured."""
        if self._baseline_answers < 10:
            return None
        return self._baseline_limited / self._baseline_answers

    def _start_pacing(self, elapsed: float) -> None:
        # Pacing starts at what the endpoint accepted, counted over at least a whole interval: 429s come back at
        # once and answers only after the model's latency, and a burst allowance is accepted in an instant.
        rate = max(self.MIN_RATE, self._accepted / max(elapsed, self.INTERVAL_S))
        self.budget = PacedBudget(rate, burst=1.0, clock=self._clock, fixed=False)
        # No ceiling yet: answers lag their requests by the model's latency, so a count this early reads low
        # (measured: 45/s against an endpoint accepting 100/s), and a ceiling set from it held the pace there for
        # many seconds. The first interval judged limited sets the ceiling from a whole interval's answers.
        self.ceiling = None
        # 429s come back at once, answers after the model's latency: a burst may start pacing before any of its
        # accepted requests has answered. Then the pace is provisional: answers in the next half second raise it.
        self._provisional = True
        self._start_interval()
