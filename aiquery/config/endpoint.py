"""One endpoint as a call reaches it, and the wrapper that keeps its token out of every ``repr``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiquery.config.defaults import (
    DEFAULT_AUTH,
    DEFAULT_CONTEXT_TOKENS,
    DEFAULT_DEADLINE_S,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_RETRY_AFTER_S,
    DEFAULT_TIMEOUT_S,
    DEFAULT_TOKEN_ENV,
)
from aiquery.pricing import Price

__all__ = ["Endpoint", "Secret"]


class Secret:
    """A string that never shows itself in ``repr``, ``str``, logs or query plans."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret value, for the one place that puts it on the wire."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Secret, (self._value,))


@dataclass(frozen=True, kw_only=True, slots=True)
class Endpoint:
    """One endpoint as ``ai_query('name', ...)`` reaches it: wire format, URL, model, token and limits."""

    name: str
    """The name used in SQL."""
    api: str
    """Wire format: one of :data:`APIS`."""
    model: str
    """The model name sent to the gateway (defaults to the endpoint's name)."""
    base_url: str
    """The base URL you would give that API's official SDK, without a trailing slash."""
    token: Secret | None = field(default=None, compare=False)
    """The credential, or None for an unauthenticated endpoint."""
    token_env: str = DEFAULT_TOKEN_ENV
    """The environment variable the token came from (named in errors, never the value)."""
    auth: str = DEFAULT_AUTH
    """How the token travels: ``bearer``, ``x-api-key`` (Anthropic direct) or ``x-goog-api-key`` (Gemini direct)."""
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    """Requests in flight at once, per Python worker."""
    requests_per_minute: float | None = None
    """Request budget shared by every worker of the application; None to learn the limit from 429s."""
    tokens_per_minute: float | None = None
    """Token budget (input + output) shared by every worker; None for no token budget."""
    timeout: float = DEFAULT_TIMEOUT_S
    """Seconds one HTTP attempt may take."""
    deadline: float = DEFAULT_DEADLINE_S
    """Seconds one call may take in all, attempts and waits included."""
    max_retries: int = DEFAULT_MAX_RETRIES
    """Retries after the first attempt for retryable failures."""
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER_S
    """Longest server-requested wait (Retry-After) honoured; a longer one is not retried."""
    verify_tls: bool = True
    """Check the server's TLS certificate. Only an explicit ``verify_tls = false`` turns it off."""
    request_tags: Mapping[str, str] = field(default_factory=dict)
    """Tags sent with every request to this endpoint (``Databricks-Ai-Gateway-Request-Tags``)."""
    cache: bool = True
    """Answer from the answer store when it has the answer; ``cache = false`` sends every row."""
    price: Price | None = None
    """Prices per million tokens: the endpoint's ``price`` table, else the built-in list price of its model, else
    None (its requests' cost is NULL)."""
    anthropic_version: str | None = None
    """The ``anthropic-version`` header of an Anthropic endpoint (None: the adapter's default, 2023-06-01)."""
    context_tokens: int = DEFAULT_CONTEXT_TOKENS
    """The model's context window in tokens: ``ai_agg`` packs each request's rows to fit it."""
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    """Bytes of one answer read at most, counted after decompression; a larger answer is that row's error."""
    batch: bool = False
    """Send this endpoint's calls through its provider's batch API (``--batch`` runs); needs a provider ``base_url``."""
