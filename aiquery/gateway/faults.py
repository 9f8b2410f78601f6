"""Deciding what goes wrong: the rate limiter, scripted and random faults, prompt directives, latency.

Order of precedence for an accepted request: a ``[[fault:...]]`` directive in the prompt, then the next
``script`` entry, then the ``hostile_share`` (decided by a hash of the request body, see
:func:`aiquery.gateway.hostile.hostile_kind_for`), then a draw against ``fault_rates``. A directive does not
consume a script entry, so a test can mix per-row faults with an exact script for the other requests.
"""

from __future__ import annotations

import math
import random
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate

from aiquery.gateway.settings import GatewayConfig, is_fault

__all__ = ["Directives", "FaultPicker", "TokenBucket", "read_directives", "retry_after_headers"]

_DIRECTIVE = re.compile(r"\[\[(\w+):\s*([^\]\s]+)\s*\]\]")


@dataclass(slots=True)
class Directives:
    """Per-request behaviour written into the prompt.

    For example ``[[fault:503]]``, ``[[latency_ms:500]]``, ``[[tokens:2000]]``.
    """

    fault: str | None = None
    latency_ms: float | None = None
    tokens: int | None = None


def read_directives(prompt: str) -> Directives | None:
    """The directives in ``prompt``, or None if it has none.

    Raises:
        ValueError: a directive is unknown or its value is invalid (answered as a 400, so typos show).
    """
    if "[[" not in prompt:
        return None
    found = _DIRECTIVE.findall(prompt)
    if not found:
        return None
    directives = Directives()
    for name, value in found:
        try:
            if name == "fault" and (is_fault(value) or value == "ok"):
                directives.fault = value
            elif name == "latency_ms" and float(value) >= 0:
                directives.latency_ms = float(value)
            elif name == "tokens" and int(value) > 0:
                directives.tokens = int(value)
            else:
                raise ValueError(value)
        except ValueError:
            raise ValueError(f"invalid emulator directive [[{name}:{value}]]") from None
    return directives


class TokenBucket:
    """A token bucket over accepted requests: ``rate`` tokens a second, at most ``burst`` saved up."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._tokens = burst
        self._last = clock()

    def take(self) -> float:
        """Take a token: 0.0 if one was free, else the seconds until one will be (nothing is taken then)."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self._rate


class FaultPicker:
    """The scripted and random part of fault selection, plus random latency, all from one seeded state."""

    def __init__(self, config: GatewayConfig) -> None:
        self._faults = random.Random(config.seed)
        # A separate stream, so turning random latency on does not change which requests fail.
        self._latency = random.Random(None if config.seed is None else config.seed + 1)
        self._script: deque[str] = deque(config.script)
        self._table: list[tuple[str, float]] = []
        self.set_rates(config)

    def set_rates(self, config: GatewayConfig) -> None:
        """Use ``config.fault_rates`` from now on."""
        cumulative, table = 0.0, []
        for kind, rate in sorted(config.fault_rates.items()):
            cumulative += rate
            table.append((kind, cumulative))
        self._table = table

    def set_script(self, script: tuple[str, ...]) -> None:
        """Replace the remaining script."""
        self._script = deque(script)

    @property
    def scripted(self) -> bool:
        """Whether script entries remain (they come before the hostile share and the random draw)."""
        return bool(self._script)

    @property
    def script_remaining(self) -> list[str]:
        """Script entries not used yet."""
        return list(self._script)

    def next_fault(self) -> str:
        """The next scripted entry, else a random draw: a fault kind or ``ok``."""
        if self._script:
            return self._script.popleft()
        if not self._table:
            return "ok"
        draw = self._faults.random()
        for kind, threshold in self._table:
            if draw < threshold:
                return kind
        return "ok"

    def latency_s(self, config: GatewayConfig) -> float:
        """This request's delay before answering, in seconds."""
        if config.latency_min_ms is not None and config.latency_max_ms is not None:
            return self._latency.uniform(config.latency_min_ms, config.latency_max_ms) / 1000.0
        return config.latency_ms / 1000.0


def retry_after_headers(mode: str, wait_s: float) -> list[tuple[str, str]]:
    """The retry headers of a 429 asking to wait ``wait_s`` seconds, per the ``retry_after`` mode."""
    whole_seconds = max(1, math.ceil(round(wait_s, 6)))
    headers: list[tuple[str, str]] = []
    if mode in ("both", "seconds"):
        headers.append(("Retry-After", str(whole_seconds)))
    elif mode == "date":
        headers.append(("Retry-After", formatdate(time.time() + whole_seconds, usegmt=True)))
    if mode in ("both", "ms"):
        headers.append(("retry-after-ms", str(max(1, math.ceil(round(wait_s * 1000.0, 6))))))
    return headers
