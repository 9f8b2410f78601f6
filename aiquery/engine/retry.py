"""When to retry a failed HTTP attempt, and how long to wait first.

Retries are data: one table of retryable statuses, one parser for the server's requested delay, and tenacity
strategies composed from small named pieces. Every decision is logged at DEBUG with its reason.

- Retryable: 408, 409, 429, 5xx, 529, timeouts, refused or dropped connections, truncated bodies.
- Never retried: quota or spend-limit 429s (the adapter's verdict says so), other 4xx, TLS certificate errors,
  a server-requested delay above the endpoint's cap, ``x-should-retry: false``.
- ``x-should-retry: true`` makes any status retryable.
- The server's delay is ``retry-after-ms`` (milliseconds), else ``Retry-After`` in seconds (floats allowed),
  else ``Retry-After`` as an HTTP date; otherwise full-jitter exponential backoff.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import tenacity
from tenacity import RetryCallState

from aiquery.errors import CallError

__all__ = [
    "BACKOFF_CAP_S",
    "BACKOFF_INITIAL_S",
    "AttemptFailed",
    "is_retryable",
    "parse_retry_after",
    "retry_decision",
    "stop_before_deadline",
    "wait_retry_after",
]

logger = logging.getLogger("aiquery.retry")

RETRYABLE_STATUSES = frozenset({408, 409, 429, 529})
BACKOFF_INITIAL_S = 0.5
BACKOFF_CAP_S = 5.0


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether to retry, why, and the delay the server asked for (seconds) if it asked."""

    retry: bool
    reason: str
    server_delay: float | None = None


class AttemptFailed(Exception):
    """One attempt failed; carries the user-facing error, the retry decision and whether a request went out."""

    def __init__(self, error: CallError, decision: Decision, *, sent: bool = True) -> None:
        super().__init__(error.message)
        self.error = error
        self.decision = decision
        self.sent = sent


def parse_retry_after(headers: Mapping[str, str], now: Callable[[], float] = time.time) -> float | None:
    """The delay in seconds a response asks for, or None.

    Args:
        headers: response headers with lower-cased names.
        now: wall clock in epoch seconds, for HTTP-date values.
    """
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            return max(0.0, float(raw_ms) / 1000.0)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now())


def retry_decision(
    status: int | None,
    headers: Mapping[str, str],
    *,
    verdict_retryable: bool | None = None,
    max_retry_after: float,
    transport_retryable: bool = True,
    body_delay: float | None = None,
    now: Callable[[], float] = time.time,
) -> Decision:
    """Decide whether an attempt that failed with ``status`` (None: no response) may be retried.

    ``body_delay`` is a delay the error body asked for (Gemini's RetryInfo), used when no header gives one.
    """
    if status is None:
        if transport_retryable:
            return Decision(True, "no response (connection or timeout)")
        return Decision(False, "connection error that a retry cannot fix")
    should_retry = headers.get("x-should-retry")
    if should_retry == "false":
        return Decision(False, "server sent x-should-retry: false")
    if verdict_retryable is False:
        return Decision(False, f"HTTP {status} is a quota or spend limit, not a rate limit")
    delay = parse_retry_after(headers, now)
    if delay is None:
        delay = body_delay
    if delay is not None and delay > max_retry_after:
        return Decision(False, f"server asked to wait {delay:.0f} s, above the cap of {max_retry_after:.0f} s")
    if should_retry == "true" or verdict_retryable is True:
        return Decision(True, f"HTTP {status}, server asked for a retry", delay)
    if status in RETRYABLE_STATUSES or status >= 500:
        return Decision(True, f"HTTP {status} is retryable", delay)
    return Decision(False, f"HTTP {status} is not retryable")


def is_retryable(exc: BaseException) -> bool:
    """tenacity predicate: retry an :class:`AttemptFailed` whose decision allows it."""
    retry = isinstance(exc, AttemptFailed) and exc.decision.retry
    if isinstance(exc, AttemptFailed):
        logger.debug("attempt failed: %s; %s", exc.error.message, exc.decision.reason)
    return retry


class wait_retry_after(tenacity.wait.wait_base):
    """Wait as long as the server asked; otherwise fall back to full-jitter exponential backoff."""

    def __init__(self, fallback: tenacity.wait.wait_base | None = None) -> None:
        self.fallback = fallback or tenacity.wait_random_exponential(multiplier=BACKOFF_INITIAL_S, max=BACKOFF_CAP_S)

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, AttemptFailed) and exc.decision.server_delay is not None:
            return exc.decision.server_delay
        return float(self.fallback(retry_state))


class stop_before_deadline(tenacity.stop.stop_base):
    """Stop when the coming wait would leave less than ``margin`` seconds before the call's deadline (monotonic)."""

    def __init__(self, deadline: float, clock: Callable[[], float] = time.monotonic, margin: float = 0.0) -> None:
        self.deadline = deadline
        self.clock = clock
        self.margin = margin

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.clock() + (retry_state.upcoming_sleep or 0.0) + self.margin >= self.deadline
