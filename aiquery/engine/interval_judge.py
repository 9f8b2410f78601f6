"""Judging one interval of a learned rate: what the answers of about a second say about the endpoint.

Pure functions over plain data (the interval's counts and what earlier intervals established); the rate that
follows is chosen by :class:`~aiquery.engine.learned_rate.LearnedRate`.

The verdicts:

- *Limited* (429s clearly more than :data:`TOLERANCE` of the requests, by two binomial standard deviations):
  when most of what was sent came back, the pace becomes 95 % of the rate the endpoint accepted in the interval,
  and that is remembered as the *ceiling*; an interval with few answers (a stall on our side while the pipeline
  waits for a slow row, say) says nothing about the endpoint: it leaves the ceiling alone and cuts the pace at
  most by half.
- *Over the ceiling* (the pace above the ceiling and really offered, and 429s clearly more than the share
  refused at or below the ceiling, the *baseline*, by 5 % and three standard deviations): the endpoint refuses
  what goes past its limit, found long before 429s pass the tolerance. Treated as limited. An endpoint refusing
  a fixed share at any rate refuses that share below the ceiling too, so its 429s never rise over the baseline.
- Otherwise: below the ceiling the pace grows by half per interval (back to what worked, in a few seconds);
  above it, by 1 % (plus one request per second) after an interval with a tolerated few 429s, probing for room,
  and by 3 % after an interval without any; an interval in which clearly more was accepted than at the
  ceiling's limit raises the ceiling and the pace by 10 %; with no ceiling known yet, the pace grows by 25 %;
  and after three intervals in a row without any 429, half again above the ceiling (so the limit has gone), the
  pace doubles per interval. An interval whose pace was not used up (the end of a query, a stall) says nothing
  about room above it and leaves the pace where it is. The pace is never below the rate the endpoint has just
  accepted without a single 429.
- The limit a ceiling is set from is the least accepted rate of the last intervals with 429s enough to have
  used the endpoint's allowance up: an allowance saved up earlier makes what is accepted read high for a while,
  never low. Several processes pacing separately may squeeze one another (measured: 2 and 98 requests/s); with
  the coordinator, the workers of one application share one pace instead.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

__all__ = ["History", "Interval", "Verdict", "beyond_tolerance", "judge", "over_ceiling"]

KEEP = 0.95
FLOOR = 0.5
CLEAN_STREAK = 3
TOLERANCE = 0.2
ROOM = 1.15
"""How much more than at the ceiling's limit must be accepted to raise the ceiling."""
OVER_BASELINE = 0.05
"""How far (besides noise) the 429 share above the ceiling must exceed the baseline to mean a limit."""
OFFERED = 0.75
"""The share of the pace that must have been answered for an interval above the ceiling to be judged."""
ASSUMED_BASELINE_ANSWERS = 50.0
MIN_ANSWERS = 10
"""Fewer answers than this in an interval say nothing about the share of 429s at or above the ceiling."""


@dataclass(frozen=True, slots=True)
class Interval:
    """What an interval saw: answers accepted and refused with 429, requests sent, and its length in seconds."""

    accepted: int
    limited: int
    sent: int
    elapsed: float

    @property
    def answers(self) -> int:
        return self.accepted + self.limited

    @property
    def offered(self) -> int:
        """Requests of the interval: those sent where counted (they include those answered with other errors,
        500s or timeouts), else the answers and 429s."""
        return max(self.answers, self.sent)

    @property
    def accepted_rate(self) -> float:
        return self.accepted / self.elapsed


@dataclass(frozen=True, slots=True)
class History:
    """What the judge knows of the intervals before: the pace, the ceiling, the baseline, the clean streak."""

    pace: float
    ceiling: float | None
    baseline: float | None
    """The share of answers refused with 429 while the pace was at or below the ceiling, if measured."""
    baseline_answers: float
    clean_streak: int


class Verdict(enum.Enum):
    """What an interval says about the endpoint, and so how the pace moves."""

    LIMITED = "limited"
    """429s past the tolerance or over the baseline, most requests answered: the ceiling is measured."""
    LIMITED_FEW_ANSWERS = "limited, few answers"
    BELOW_CEILING = "below the ceiling"
    NOT_USED_UP = "pace not used up"
    NO_CEILING = "no ceiling known"
    ROOM = "room above the ceiling"
    PROBING = "a tolerated few 429s"
    CLEAN = "no 429s"
    LIMIT_GONE = "no 429s far above the ceiling"

    @property
    def limited(self) -> bool:
        return self in (Verdict.LIMITED, Verdict.LIMITED_FEW_ANSWERS)


def beyond_tolerance(interval: Interval) -> bool:
    """Whether the interval's 429s are clearly more than :data:`TOLERANCE` of its requests."""
    # Two binomial standard deviations above the tolerance: the few answers of a query's last stragglers
    # say nothing, and one pace learned from them would slow the next query down too.
    # The share is of the requests sent when more were sent than answered: 429s come back at once and
    # answers after the model's latency, so while sending speeds up (a slow start) the answers in hand
    # hold too many 429s (an endpoint refusing 10 % of requests at any rate reads as 21 %, enough now and
    # then to start a pace that holds a 500/s job to 354/s).
    answers = interval.offered
    spread = math.sqrt(answers * TOLERANCE * (1.0 - TOLERANCE))
    return interval.limited > TOLERANCE * answers + 2.0 * spread


def over_ceiling(interval: Interval, history: History) -> bool:
    """Whether an interval paced above the ceiling drew clearly more 429s than the baseline."""
    answers, pace, ceiling = interval.answers, history.pace, history.ceiling
    if ceiling is None or answers < MIN_ANSWERS or pace <= ceiling:
        return False
    if answers < OFFERED * pace * interval.elapsed:
        return False  # the pace was not really offered (a stall, the end of a query): it says nothing
    # Until the share at the ceiling is measured, it is taken as none (as if from a few dozen answers).
    baseline = history.baseline or 0.0
    weight = max(history.baseline_answers, ASSUMED_BASELINE_ANSWERS)
    # Both shares are estimates: the spread of their difference counts the answers behind each.
    p = max(baseline, 0.01)
    spread = math.sqrt(p * (1.0 - p) * (1.0 / answers + 1.0 / weight))
    return interval.limited / answers > baseline + OVER_BASELINE + 3.0 * spread


def judge(interval: Interval, history: History) -> Verdict:
    """Judge a paced interval just ended (see the module docstring for what each verdict means)."""
    pace, ceiling, elapsed = history.pace, history.ceiling, interval.elapsed
    if beyond_tolerance(interval) or over_ceiling(interval, history):
        # Few answers mean a stall on our side, which says nothing about the endpoint.
        enough = interval.answers >= FLOOR * pace * elapsed
        return Verdict.LIMITED if enough else Verdict.LIMITED_FEW_ANSWERS
    if ceiling is not None and pace < ceiling:
        return Verdict.BELOW_CEILING
    if interval.offered < OFFERED * pace * elapsed:
        return Verdict.NOT_USED_UP
    if ceiling is None:
        return Verdict.NO_CEILING
    if interval.accepted_rate > ROOM * ceiling / KEEP:
        return Verdict.ROOM
    if interval.limited:
        return Verdict.PROBING
    if history.clean_streak < CLEAN_STREAK or pace < 1.5 * ceiling:
        return Verdict.CLEAN
    return Verdict.LIMIT_GONE
