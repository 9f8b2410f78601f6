"""What the emulator served: counts per route and status, token totals, in-flight gauge, per-request log.

Tests compare the usage table with these numbers, so a request is counted the moment its outcome is decided,
before any latency: a client killed mid-request still shows up. The log keeps plain tuples of immutable values
(the tags header is kept as its raw string), which the garbage collector stops tracking, so a long log does
not slow every collection down.

Two views of tokens: ``input_tokens`` / ``output_tokens`` are what the response body reports in a form a
client can read, ``billed_input_tokens`` / ``billed_output_tokens`` what the emulated provider charges. They
differ where an answer was generated but cannot be read (``truncated`` and the hostile kinds): a provider bills
that generation, and the client's ledger knows no token count for it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from collections import deque
from typing import Any

__all__ = ["DEFAULT_LOG_LIMIT", "LOG_FIELDS", "Accounting"]

DEFAULT_LOG_LIMIT = 2_000_000

LOG_FIELDS = (
    "client_request_id",
    "route",
    "model",
    "status",
    "outcome",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cache_creation_tokens",
    "billed_input_tokens",
    "billed_output_tokens",
    "request_tags",
    "user_agent",
    "time",
)

_TAGS = LOG_FIELDS.index("request_tags")
_Entry = tuple[str | None, str, str, int | str, str, int, int, int, int, int, int, str | None, str | None, float]


class Accounting:
    """Counters and the bounded request log of one emulator."""

    def __init__(self, log_limit: int = DEFAULT_LOG_LIMIT) -> None:
        self._log: deque[_Entry] = deque(maxlen=log_limit)
        self._interned: dict[str, str] = {}
        self.in_flight = 0
        self.reset()

    def reset(self) -> None:
        """Zero the counters and clear the log. The in-flight gauge stays: those requests are still open."""
        self.requests = 0
        self.by_route: dict[str, dict[str, int]] = {}
        self.by_status: dict[str, int] = {}
        self.input_tokens = 0
        self.output_tokens = 0
        self.cached_tokens = 0
        self.billed_input_tokens = 0
        self.billed_output_tokens = 0
        self.max_in_flight = self.in_flight
        self._log.clear()
        self._interned.clear()

    def started(self) -> None:
        """A request is being handled."""
        self.in_flight += 1
        if self.in_flight > self.max_in_flight:
            self.max_in_flight = self.in_flight

    def finished(self) -> None:
        """A request's handling ended (answered, dropped, or the client went away)."""
        self.in_flight -= 1

    def record(
        self,
        *,
        route: str,
        status: int | str,
        outcome: str,
        model: str,
        headers: dict[str, str],
        tokens: tuple[int, int, int, int] = (0, 0, 0, 0),
        billed: tuple[int, int] | None = None,
    ) -> None:
        """Count one request whose outcome is decided.

        Args:
            route: the route key, e.g. ``mlflow/v1/chat/completions``.
            status: the HTTP status sent, or ``hang`` / ``drop``.
            outcome: ``ok``, a fault kind, or why the gateway refused (``unauthenticated``,
                ``rate_limited`` …).
            model: the model the request named (empty if unknown).
            headers: the request headers (lower-cased names).
            tokens: input (including cached), output, cache-read and cache-write tokens reported in the response
                body.
            billed: input and output tokens the provider charges; None when they are the reported ones.
        """
        status_key = str(status)
        self.requests += 1
        per_route = self.by_route.setdefault(route, {})
        per_route[status_key] = per_route.get(status_key, 0) + 1
        self.by_status[status_key] = self.by_status.get(status_key, 0) + 1
        input_tokens, output_tokens, cached_tokens, cache_creation_tokens = tokens
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        self.cached_tokens += cached_tokens
        billed_input, billed_output = (input_tokens, output_tokens) if billed is None else billed
        self.billed_input_tokens += billed_input
        self.billed_output_tokens += billed_output
        self._log.append(
            (
                headers.get("x-client-request-id"),
                route,
                self._intern(model) or "",
                status,
                outcome,
                input_tokens,
                output_tokens,
                cached_tokens,
                cache_creation_tokens,
                billed_input,
                billed_output,
                headers.get("databricks-ai-gateway-request-tags"),
                self._intern(headers.get("user-agent")),
                time.time(),
            )
        )

    def _intern(self, value: str | None) -> str | None:
        # Models and user agents repeat across millions of entries; keep one copy of each.
        if value is None or len(self._interned) > 10_000:
            return value
        return self._interned.setdefault(value, value)

    def stats(self) -> dict[str, Any]:
        """The counters as a JSON-ready dict."""
        return {
            "requests": self.requests,
            "by_route": {route: dict(statuses) for route, statuses in self.by_route.items()},
            "by_status": dict(self.by_status),
            "tokens": {
                "input": self.input_tokens,
                "output": self.output_tokens,
                "cached": self.cached_tokens,
                "billed_input": self.billed_input_tokens,
                "billed_output": self.billed_output_tokens,
            },
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "logged": len(self._log),
        }

    def entries(self, offset: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """Logged requests in arrival order, from ``offset`` (into the kept part of the log)."""
        offset = max(0, offset)
        stop = None if limit is None else offset + max(0, limit)
        return [_as_dict(entry) for entry in itertools.islice(self._log, offset, stop)]


def _as_dict(entry: _Entry) -> dict[str, Any]:
    record = dict(zip(LOG_FIELDS, entry, strict=True))
    raw_tags = entry[_TAGS]
    if isinstance(raw_tags, str):
        # Invalid JSON stays the raw string, so a test can see what the client sent.
        with contextlib.suppress(ValueError):
            record["request_tags"] = json.loads(raw_tags)
    return record
