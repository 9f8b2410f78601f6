"""The emulator's behaviour settings: latency, rate limit, faults, answer sizes and token-count shaping.

Settings are a frozen dataclass; a partial update (from ``start_gateway(**config)``, ``--config`` or
``POST /_emulator/config``) goes through :meth:`GatewayConfig.updated`, which checks every value so a typo in
a test fails loudly instead of silently doing nothing.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_EMBEDDING_DIM",
    "DEFAULT_HANG_SECONDS",
    "DEFAULT_HOSTILE_SHARE",
    "DEFAULT_TRICKLE_MS",
    "FAULT_KINDS",
    "HOSTILE_KINDS",
    "RETRY_AFTER_MODES",
    "GatewayConfig",
    "is_fault",
]

DEFAULT_EMBEDDING_DIM = 1024
DEFAULT_HANG_SECONDS = 300.0
DEFAULT_FAULT_RETRY_AFTER_S = 1.0
DEFAULT_HOSTILE_SHARE = 0.05
DEFAULT_TRICKLE_MS = 100.0
DEFAULT_BATCH_DELAY_S = 1.0
DEFAULT_BATCH_EXPIRE_S = 86_400.0
DEFAULT_BATCH_CANCEL_S = 0.5

HOSTILE_KINDS = (
    "deep_json",
    "huge_numbers",
    "gzip_bomb",
    "endless",
    "oversized",
    "trickle",
    "html",
    "not_json",
)
"""Answers a careless client cannot survive, all with status 200 (see :mod:`aiquery.gateway.hostile`)."""

FAULT_KINDS = frozenset(
    {
        "429",
        "500",
        "502",
        "503",
        "529",
        "quota",
        "400",
        "401",
        "hang",
        "drop",
        "malformed",
        "truncated",
        "no_text",
        *HOSTILE_KINDS,
    }
)
"""Named faults. Any other HTTP error status (``"404"``, ``"504"`` …) is accepted too, as a plain error."""

RETRY_AFTER_MODES = ("both", "seconds", "ms", "date", "none")


def is_fault(kind: str) -> bool:
    """Whether ``kind`` names a fault: one of :data:`FAULT_KINDS` or an HTTP error status 400-599."""
    return kind in FAULT_KINDS or (len(kind) == 3 and kind.isdigit() and 400 <= int(kind) <= 599)


@dataclass(frozen=True, kw_only=True)
class GatewayConfig:
    """How the emulator behaves. Every field can be changed at start and at run time.

    Attributes:
        latency_ms: fixed delay before each answer (and before each injected fault but a 429, which is immediate).
        latency_min_ms: with ``latency_max_ms``, a uniformly random delay instead of ``latency_ms``.
        latency_max_ms: upper bound of the random delay.
        rate_limit_rps: token-bucket rate over accepted requests; beyond it the route answers 429 at once.
        rate_limit_burst: bucket size; defaults to ``rate_limit_rps`` (at least 1).
        retry_after: which retry headers a 429 carries: ``both`` (``Retry-After`` in whole seconds and
            ``retry-after-ms``), ``seconds``, ``ms``, ``date`` (``Retry-After`` as an HTTP-date) or ``none``.
        fault_rates: probability of each fault kind per accepted request (sum at most 1).
        fault_retry_after_s: the wait an injected ``"429"`` fault asks for.
        hang_seconds: how long a ``hang`` holds the connection before closing it unanswered.
        script: fault kinds (or ``"ok"``) for the next requests in arrival order, before ``fault_rates``.
        seed: seed of the random choices (faults, random latency); None seeds from the clock.
        output_tokens: force every text answer to about this many tokens.
        embedding_dim: length of embedding vectors when the request names no ``dimensions``.
        cached_tokens: fraction of input tokens reported as read from the prompt cache.
        cache_creation_tokens: fraction of input tokens reported as written to the cache (Anthropic only).
        reasoning_tokens: reasoning tokens added to (and reported within) each answer's output tokens.
        context_tokens: the models' context: a text request with more input tokens is refused with 400, as a
            provider refuses a prompt longer than its model's context window.
        loose_answers: answer requests for structured output the way a model that ignores it does: a label in
            another case wrapped in words ("The answer is: POSITIVE."), an object's keys in another case inside
            prose and a code fence.
        hostile_share: the share of requests without a directive answered with one of ``hostile_kinds``, chosen
            from a hash of the request body: the same request meets the same answer, whatever the arrival order.
        hostile_kinds: the kinds ``hostile_share`` picks from (default all of :data:`HOSTILE_KINDS`).
        trickle_ms: the pause between two bytes of a ``trickle`` answer.
        batch_delay: seconds a provider batch takes from creation to its last line (the lines finish evenly
            spread over them); the provider batch APIs' clock (``--batch-delay``).
        batch_failed_share: the share of batch lines answered with an error (chosen by a hash of the line id).
        batch_expire_s: seconds after which an unfinished OpenAI or Anthropic batch expires (their 24 h); a
            Gemini batch expires after twice this (its 48 h), with no results.
        batch_cancel_s: seconds a cancelled batch stays ``cancelling`` (OpenAI: up to 10 minutes) before it ends.
        batch_create_hold_s: seconds a batch create call's answer is held back after the batch exists (a fault
            hook: a client killed meanwhile has created a batch it never heard of).
    """

    latency_ms: float = 0.0
    latency_min_ms: float | None = None
    latency_max_ms: float | None = None
    rate_limit_rps: float | None = None
    rate_limit_burst: float | None = None
    retry_after: str = "both"
    fault_rates: Mapping[str, float] = field(default_factory=dict)
    fault_retry_after_s: float = DEFAULT_FAULT_RETRY_AFTER_S
    hang_seconds: float = DEFAULT_HANG_SECONDS
    script: tuple[str, ...] = ()
    seed: int | None = 0
    output_tokens: int | None = None
    embedding_dim: int = DEFAULT_EMBEDDING_DIM
    cached_tokens: float = 0.0
    cache_creation_tokens: float = 0.0
    reasoning_tokens: int = 0
    loose_answers: bool = False
    context_tokens: int | None = None
    hostile_share: float = 0.0
    hostile_kinds: tuple[str, ...] = HOSTILE_KINDS
    trickle_ms: float = DEFAULT_TRICKLE_MS
    batch_delay: float = DEFAULT_BATCH_DELAY_S
    batch_failed_share: float = 0.0
    batch_expire_s: float = DEFAULT_BATCH_EXPIRE_S
    batch_cancel_s: float = DEFAULT_BATCH_CANCEL_S
    batch_create_hold_s: float = 0.0

    def updated(self, changes: Mapping[str, Any]) -> GatewayConfig:
        """A copy with ``changes`` applied, each value checked and normalised.

        Raises:
            ValueError: an unknown key, a value of the wrong type or out of range, or inconsistent values.
        """
        unknown = sorted(set(changes) - set(_CHECKS))
        if unknown:
            raise ValueError(f"unknown gateway setting(s) {unknown}; known: {sorted(_CHECKS)}")
        normalised = {name: _CHECKS[name](name, value) for name, value in changes.items()}
        config = dataclasses.replace(self, **normalised)
        if (config.latency_min_ms is None) != (config.latency_max_ms is None):
            raise ValueError("latency_min_ms and latency_max_ms must be set together")
        if config.latency_min_ms is not None and config.latency_min_ms > (config.latency_max_ms or 0.0):
            raise ValueError("latency_min_ms must not exceed latency_max_ms")
        if config.cached_tokens + config.cache_creation_tokens > 1.0:
            raise ValueError("cached_tokens + cache_creation_tokens must not exceed 1")
        return config

    @property
    def burst(self) -> float:
        """The token bucket's size."""
        if self.rate_limit_burst is not None:
            return self.rate_limit_burst
        return max(1.0, self.rate_limit_rps or 1.0)

    def to_json(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict (what ``POST /_emulator/config`` returns)."""
        data = dataclasses.asdict(self)
        data["fault_rates"] = dict(self.fault_rates)
        data["script"] = list(self.script)
        data["hostile_kinds"] = list(self.hostile_kinds)
        return data


def _number(minimum: float, *, optional: bool = False, maximum: float = math.inf) -> Callable[[str, Any], float | None]:
    def check(name: str, value: Any) -> float | None:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name} must be a number, got {value!r}")
        if not minimum <= value <= maximum:
            raise ValueError(f"{name} must be between {minimum} and {maximum}, got {value!r}")
        return float(value)

    return check


def _integer(minimum: int, *, optional: bool = False) -> Callable[[str, Any], int | None]:
    def check(name: str, value: Any) -> int | None:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
        return value

    return check


def _positive_rate(name: str, value: Any) -> float | None:
    rate = _number(0.0, optional=True)(name, value)
    if rate is not None and rate <= 0:
        raise ValueError(f"{name} must be positive (or null for no limit), got {value!r}")
    return rate


def _boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, not {value!r}")
    return value


def _retry_after_mode(name: str, value: Any) -> str:
    if value not in RETRY_AFTER_MODES:
        raise ValueError(f"{name} must be one of {list(RETRY_AFTER_MODES)}, got {value!r}")
    return str(value)


def _fault_kind(name: str, value: Any, *, allow_ok: bool) -> str:
    kind = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    if (allow_ok and kind == "ok") or is_fault(kind):
        return kind
    raise ValueError(f"{name}: {value!r} is not a fault kind; use one of {sorted(FAULT_KINDS)} or a 4xx/5xx status")


def _fault_rates(name: str, value: Any) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be an object of fault kind to probability, got {value!r}")
    probability = _number(0.0, maximum=1.0)
    rates = {
        _fault_kind(name, kind, allow_ok=False): probability(f"{name}[{kind}]", rate) or 0.0
        for kind, rate in value.items()
    }
    total = sum(rates.values())
    if total > 1.0 + 1e-9:
        raise ValueError(f"{name} probabilities must sum to at most 1, got {total}")
    return {kind: rate for kind, rate in rates.items() if rate}


def _script(name: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{name} must be a list of fault kinds or 'ok', got {value!r}")
    return tuple(_fault_kind(name, item, allow_ok=True) for item in value)


def _hostile_kinds(name: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not value or any(kind not in HOSTILE_KINDS for kind in value):
        raise ValueError(f"{name} must be a non-empty list of {list(HOSTILE_KINDS)}, got {value!r}")
    return tuple(dict.fromkeys(value))


_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "latency_ms": _number(0.0),
    "latency_min_ms": _number(0.0, optional=True),
    "latency_max_ms": _number(0.0, optional=True),
    "rate_limit_rps": _positive_rate,
    "rate_limit_burst": _positive_rate,
    "retry_after": _retry_after_mode,
    "fault_rates": _fault_rates,
    "fault_retry_after_s": _number(0.0),
    "hang_seconds": _number(0.0),
    "script": _script,
    "seed": _integer(0, optional=True),
    "output_tokens": _integer(1, optional=True),
    "embedding_dim": _integer(1),
    "cached_tokens": _number(0.0, maximum=1.0),
    "cache_creation_tokens": _number(0.0, maximum=1.0),
    "reasoning_tokens": _integer(0),
    "loose_answers": _boolean,
    "context_tokens": _integer(1, optional=True),
    "hostile_share": _number(0.0, maximum=1.0),
    "hostile_kinds": _hostile_kinds,
    "trickle_ms": _number(1.0),
    "batch_delay": _number(0.0),
    "batch_failed_share": _number(0.0, maximum=1.0),
    "batch_expire_s": _number(0.001),
    "batch_cancel_s": _number(0.0),
    "batch_create_hold_s": _number(0.0),
}
