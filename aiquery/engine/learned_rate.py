"""A request rate discovered from 429s, for endpoints without a configured budget.

Two jobs, kept apart: :func:`~aiquery.engine.interval_judge.judge` reads the interval just ended (about a
second of answers) and returns a :class:`~aiquery.engine.interval_judge.Verdict` (its module says what each
means), and :class:`LearnedRate` chooses the next rate from that verdict. :class:`LearnedRate` also decides
when an interval ends and remembers what later verdicts need (the ceiling, the share of 429s at or below it,
the limits measured, the run of clean intervals).

Before any pace exists the engine sends as fast as its concurrency allows. A burst of 429s then starts pacing at
once, without waiting for the interval's end, at what was accepted counted over at least a whole interval (an
endpoint's burst allowance, accepted in the first instant, would otherwise read as a far higher rate); the
answers of the next half second, to requests sent before, may still raise it. Later, an interval answered
mostly 429 is judged after a quarter second rather than a whole one.

A minority of 429s is not taken for a rate limit: an overloaded endpoint refusing a fixed share of requests at
any rate would otherwise push the pace down interval after interval (measured without this rule: 10 % random
429s took a 3,500 requests/s run down to about 5/s). Those 429s are still retried after their Retry-After.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable

from aiquery.engine.interval_judge import (
    FLOOR,
    KEEP,
    MIN_ANSWERS,
    History,
    Interval,
    Verdict,
    beyond_tolerance,
    judge,
)
from aiquery.engine.limiter import PacedBudget

__all__ = ["LearnedRate"]

# The limiter's logger: one switch shows every pace decision, configured or learned.
logger = logging.getLogger("aiquery.limiter")

INTERVAL_S = 1.0
STALE_S = 5.0
"""An interval longer than this followed idleness (between queries, say): its counts say nothing of now."""
GROWTH = 0.01
REGROWTH = 1.5
CLEAN_GROWTH = 1.25
STREAK_GROWTH = 2.0
MIN_RATE = 0.5
CEILING_GROWTH = 1.03
ROOM_GROWTH = 1.10
DRAINED_LIMITED = 5
"""429s in an interval that say the endpoint's allowance was used up."""
EARLY_LIMITED = 20
"""429s that start pacing before the first interval ends (with the share beyond the tolerance)."""
BRAKE_S = 0.25
"""A paced interval answered mostly 429 (at least EARLY_LIMITED of them) is judged after this long."""
PROVISIONAL_S = 0.5
"""How long after pacing started early the answers coming back may still raise the pace."""
BASELINE_WEIGHT = 0.3


class LearnedRate:
    """A request rate learned from the answers of an endpoint without a configured budget.

    Counts answers, 429s and requests sent as they come; at the end of each interval (see the module docstring
    for when one ends early) has it judged and sets the pace of :attr:`budget` from the verdict. No pace exists
    (``budget`` None) until 429s call for one.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
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
        :func:`beyond_tolerance`)."""
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

    @property
    def baseline(self) -> float | None:
        """The share of answers refused with 429 while the pace was at or below the ceiling, if measured."""
        if self._baseline_answers < MIN_ANSWERS:
            return None
        return self._baseline_limited / self._baseline_answers

    def _interval(self, elapsed: float) -> Interval:
        return Interval(self._accepted, self._limited, self._sent, elapsed)

    def _start_interval(self, keep_sent: bool = False) -> None:
        self._interval_start = self._clock()
        self._accepted = 0
        self._limited = 0
        if not keep_sent:
            self._sent = 0

    def _maybe_adjust(self) -> None:
        """Decide, on each answer, whether the interval ends now, and what then."""
        if self._interval_start is None:
            # The first interval starts with the first answer: the time before it (creating the calls, the
            # model's latency) would dilute the rate, and 429s, which come back at once, would weigh too much.
            # The requests sent before it count in it: theirs are the answers coming back.
            self._start_interval(keep_sent=True)
            return
        elapsed = self._clock() - self._interval_start
        if self.budget is None and self._limited >= EARLY_LIMITED and beyond_tolerance(self._interval(elapsed)):
            self._start_pacing(elapsed)
        elif self._provisional and self.budget is not None:
            self._follow_first_answers(elapsed)
        elif elapsed < INTERVAL_S and not self._braking(elapsed):
            return
        elif elapsed > STALE_S:
            self._start_interval()
        elif self.budget is None:
            if beyond_tolerance(self._interval(elapsed)):
                self._start_pacing(elapsed)
            else:
                self._start_interval()
        else:
            self._end_paced_interval(self._interval(elapsed), self.budget)

    def _follow_first_answers(self, elapsed: float) -> None:
        """While the pace is provisional: the answers to the burst that started it may raise it."""
        assert self.budget is not None
        if elapsed < PROVISIONAL_S:
            rate = self._accepted / max(elapsed, INTERVAL_S)
            if rate > self.budget.rate:
                self.budget.set_rate(rate)
            return
        # Those answers were to requests sent before any pace (a burst allowance accepts many at once): the
        # first interval judged starts now, under the provisional pace.
        self._provisional = False
        self._start_interval()

    def _end_paced_interval(self, interval: Interval, budget: PacedBudget) -> None:
        if self._after_cut and not beyond_tolerance(interval):
            # The interval after a cut still holds answers to what was sent before it: keep the pace one more
            # interval, so that the next one measures the baseline at the ceiling.
            self._after_cut = False
            self._start_interval()
            return
        pace = budget.rate
        history = History(pace, self.ceiling, self.baseline, self._baseline_answers, self._clean_streak)
        verdict = judge(interval, history)
        self._remember(interval, pace, verdict)
        rate = self._next_rate(verdict, interval, pace)
        logger.debug(
            "learned pace %.1f -> %.1f/s (%s; accepted %d, 429s %d in %.2f s, ceiling %.1f)",
            pace,
            rate,
            verdict.value,
            interval.accepted,
            interval.limited,
            interval.elapsed,
            self.ceiling or 0.0,
        )
        budget.set_rate(max(MIN_RATE, rate))
        self._start_interval()

    def _remember(self, interval: Interval, pace: float, verdict: Verdict) -> None:
        """Keep what later verdicts read: limits measured, the baseline, whether this was a cut, the streak."""
        if interval.limited >= DRAINED_LIMITED:
            # 429s enough to say the endpoint's allowance was used up: what it accepted is its limit (a burst
            # allowance saved up earlier can make one such interval read high, never low).
            self._drained.append(interval.accepted_rate)
        at_ceiling = self.ceiling is not None and pace <= self.ceiling
        if at_ceiling and not beyond_tolerance(interval) and interval.answers >= MIN_ANSWERS:
            keep = 1.0 - BASELINE_WEIGHT
            self._baseline_answers = keep * self._baseline_answers + interval.answers
            self._baseline_limited = keep * self._baseline_limited + interval.limited
        self._after_cut = verdict.limited
        self._clean_streak = 0 if interval.limited else self._clean_streak + 1

    def _next_rate(self, verdict: Verdict, interval: Interval, pace: float) -> float:
        """The pace after an interval judged ``verdict`` (the ceiling moves with a limit measured or room)."""
        elapsed, accepted_rate = interval.elapsed, interval.accepted_rate
        if verdict is Verdict.LIMITED:
            # Most of what was sent came back: the accepted rate measures the limit (the least of the last intervals
            # that used the allowance up), and the pace goes just under it.
            rate = self.ceiling = KEEP * min([accepted_rate, *self._drained])
        elif verdict is Verdict.LIMITED_FEW_ANSWERS:
            rate = max(KEEP * accepted_rate, FLOOR * pace)
        elif verdict is Verdict.BELOW_CEILING:
            assert self.ceiling is not None
            rate = min(self.ceiling, pace * REGROWTH**elapsed + elapsed)
        elif verdict is Verdict.NOT_USED_UP:
            rate = pace  # the end of a query, a slow row: it says nothing about room
        elif verdict is Verdict.ROOM:
            # Clearly more accepted than at the limit that set the ceiling: the limit has moved up (another
            # process finished, say), or was set low at the start. The ceiling follows, the pace grows by a tenth
            # (an allowance saved up while the pace was not used up can look like room for a few seconds).
            self.ceiling = KEEP * accepted_rate
            self._drained.clear()  # the old limit's measurements no longer hold
            rate = pace * ROOM_GROWTH**elapsed + elapsed
        elif verdict is Verdict.PROBING:
            rate = pace * (1.0 + GROWTH * elapsed) + elapsed
        elif verdict is Verdict.CLEAN:
            rate = pace * CEILING_GROWTH**elapsed + elapsed
        else:
            # Doubling is for a limit that has gone (clean intervals far above a known ceiling). With no ceiling
            # known yet, a pace started low by a first burst must not overshoot the limit threefold (doubling
            # takes 20/s to 300/s against an endpoint accepting 100/s, with 305 429s in one second).
            rate = pace * (STREAK_GROWTH if verdict is Verdict.LIMIT_GONE else CLEAN_GROWTH) ** elapsed + elapsed
        if not interval.limited:
            # What the endpoint just accepted without a single 429 is safe, whatever the pace said (calls that
            # had passed the pace before it was set, say, were answered in this interval).
            rate = max(rate, accepted_rate)
        return rate

    def _braking(self, elapsed: float) -> bool:
        """Whether a paced interval already drew so many 429s that waiting for its end would only add more."""
        return (
            self.budget is not None
            and elapsed >= BRAKE_S
            and self._limited >= EARLY_LIMITED
            and self._limited > self._accepted
        )

    def _start_pacing(self, elapsed: float) -> None:
        # Pacing starts at what the endpoint accepted, counted over at least a whole interval: 429s come back at
        # once and answers only after the model's latency, and a burst allowance is accepted in an instant.
        rate = max(MIN_RATE, self._accepted / max(elapsed, INTERVAL_S))
        self.budget = PacedBudget(rate, burst=1.0, clock=self._clock, fixed=False)
        # No ceiling yet: answers lag their requests by the model's latency, so a count this early reads low
        # (45/s against an endpoint accepting 100/s), and a ceiling set from it would hold the pace there for
        # many seconds. The first interval judged limited sets the ceiling from a whole interval's answers.
        self.ceiling = None
        # 429s come back at once, answers after the model's latency: a burst may start pacing before any of its
        # accepted requests has answered. Then the pace is provisional: answers in the next half second raise it.
        self._provisional = True
        self._start_interval()
