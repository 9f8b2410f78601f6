"""A circuit breaker for the answer store: stop asking a store that keeps failing, for a while.

A store that fails or answers late several times in a row is *open*: lookups are misses and answers are not
written, without asking it, for a cool-off period. Then one call is let through as a probe; if it works the
breaker closes, else it stays open for another period. Opening logs one warning, closing one info line, so a
dead store costs a few late lookups and one warning rather than a deadline per lookup for the rest of the run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

__all__ = ["COOL_OFF_S", "FAILURES_TO_OPEN", "CircuitBreaker"]

logger = logging.getLogger("aiquery.store")

FAILURES_TO_OPEN = 3
"""Consecutive failures (errors, late answers) that open the breaker."""
COOL_OFF_S = 30.0
"""How long an open breaker keeps the store unasked before it lets one probe through."""


class CircuitBreaker:
    """Counts a store's consecutive failures and says whether to ask it now. Thread-safe.

    Args:
        where: how to name the store in the log (a path or a URL without credentials).
        threshold: consecutive failures that open it.
        cool_off_s: seconds it stays open before a probe.
        clock: monotonic seconds.
    """

    def __init__(
        self,
        where: str,
        *,
        threshold: int = FAILURES_TO_OPEN,
        cool_off_s: float = COOL_OFF_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.where = where
        self.threshold = threshold
        self.cool_off_s = cool_off_s
        self._clock = clock
        self._lock = threading.Lock()
        self._streak = 0
        self._open_until: float | None = None
        self._probing = False
        self.failures = 0
        """Failed or late store calls so far."""
        self.openings = 0
        """Times the breaker opened (each logged once)."""

    @property
    def is_open(self) -> bool:
        return self._open_until is not None

    def allows(self) -> bool:
        """Whether to ask the store now: closed, or open past its cool-off with no probe out yet."""
        with self._lock:
            if self._open_until is None:
                return True
            if self._probing or self._clock() < self._open_until:
                return False
            self._probing = True
            return True

    def succeeded(self) -> None:
        with self._lock:
            self._streak = 0
            self._probing = False
            if self._open_until is None:
                return
            self._open_until = None
        logger.info("aiquery: the answer store at %s works again; asking it again", self.where)

    def failed(self, what: str, error: BaseException) -> None:
        """A call failed (``what``: lookup, write, delete) with ``error`` (a timeout for a late answer)."""
        with self._lock:
            self.failures += 1
            self._streak += 1
            if self._open_until is not None:  # the probe failed (or a call made before opening): stay open
                self._probing = False
                self._open_until = self._clock() + self.cool_off_s
                return
            if self._streak < self.threshold:
                return
            self._open_until = self._clock() + self.cool_off_s
            self.openings += 1
        logger.warning(
            "aiquery: the answer store at %s failed %d times in a row (last: %s: %s); requests are sent as if it "
            "were empty, and it is asked again in %g s",
            self.where,
            self.threshold,
            what,
            f"{type(error).__name__}: {error}"[:300],
            self.cool_off_s,
        )
