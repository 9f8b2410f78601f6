"""Exceptions raised by aiquery.

Every exception carries plain data (strings, numbers, dicts) so it survives pickling: Spark ships a worker's
exception to the driver as a pickle. None holds a live response, session or secret.

The tree::

    AIQueryError
    ├── ConfigError              configuration file, value or environment is wrong (driver, before any request)
    ├── ArgumentError            an ai_query argument is invalid; carries a Databricks error class and SQLSTATE
    ├── BatchCollectionLost      a batch-mode collect pass could not hand its requests to the driver
    └── CallError                one row's call to an endpoint failed (after the retries it was allowed)
        ├── TransportError       no HTTP response: refused, dropped, DNS, TLS
        │   └── RequestTimeout   an attempt ran past the endpoint's timeout
        ├── DeadlineExceeded     the call's total deadline ran out between or during attempts
        ├── BudgetExceeded       not sent: a spending cap counting it is reached (AI_QUERY_BUDGET_EXCEEDED)
        ├── TaskCancelled        not sent: the Spark task was being killed (its job failed or was cancelled)
        ├── UsageNotRecorded     not sent: the driver's usage journal cannot be written (a full disk)
        ├── BatchLineFailed      not sent: its line failed in a provider batch (AI_QUERY_BATCH_LINE_FAILED)
        ├── StatusError          the endpoint answered with an HTTP error status
        │   ├── RateLimitError   429
        │   ├── ServerError      5xx and 529
        │   └── ClientError      other 4xx: bad request, auth, not found (never retried)
        └── ResponseError        2xx, but the body is not JSON, is truncated, or lacks the answer
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "AIQueryError",
    "ArgumentError",
    "BatchCollectionLost",
    "BatchLineFailed",
    "BudgetExceeded",
    "CallError",
    "ClientError",
    "ConfigError",
    "DeadlineExceeded",
    "RateLimitError",
    "RequestTimeout",
    "ResponseError",
    "ServerError",
    "StatusError",
    "TaskCancelled",
    "TransportError",
    "UsageNotRecorded",
    "status_error_class",
]

MAX_BODY_CHARS = 2000


class AIQueryError(Exception):
    """Base class of every aiquery error."""


class ConfigError(AIQueryError):
    """The configuration (file, value or environment variable) is invalid.

    The message names the file, the key and what is allowed.
    """


class ArgumentError(AIQueryError):
    """An ai_query argument is invalid; raised at analysis time, before any request.

    Attributes:
        error_class: Databricks' error class, e.g. ``AI_FUNCTION_INVALID_MODEL_PARAMETERS.INVALID_NUMERIC_PARAMETER``.
        sqlstate: the SQLSTATE Databricks reports for it.
    """

    def __init__(self, error_class: str, message: str, *, sqlstate: str = "42K09") -> None:
        self.error_class = error_class
        self.sqlstate = sqlstate
        self.detail = message
        super().__init__(f"[{error_class}] {message} SQLSTATE: {sqlstate}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_argument_error, (self.error_class, self.detail, self.sqlstate))


def _rebuild_argument_error(error_class: str, message: str, sqlstate: str) -> ArgumentError:
    return ArgumentError(error_class, message, sqlstate=sqlstate)


class CallError(AIQueryError):
    """A call to an endpoint failed.

    Attributes:
        endpoint: the endpoint name used in ``ai_query('name', ...)``.
        message: what went wrong, in words; for HTTP errors the provider's own message.
        status_code: the HTTP status, or None when no response arrived.
        headers: response headers, lower-cased (never request headers, which hold the token).
        body: the response body, truncated to a few thousand characters.
        attempts: how many HTTP requests this call made.
    """

    def __init__(
        self,
        message: str,
        *,
        endpoint: str = "",
        status_code: int | None = None,
        headers: Mapping[str, str] | None = None,
        body: str = "",
        attempts: int = 1,
    ) -> None:
        self.message = message
        self.endpoint = endpoint
        self.status_code = status_code
        self.headers = {k.lower(): v for k, v in (headers or {}).items()}
        self.body = body[:MAX_BODY_CHARS]
        self.attempts = attempts
        super().__init__(self.describe())

    def describe(self) -> str:
        """One line naming the endpoint, the status and the cause, as shown to the user."""
        status = f"HTTP {self.status_code}: " if self.status_code is not None else ""
        tries = f" (after {self.attempts} attempts)" if self.attempts > 1 else ""
        return f"endpoint '{self.endpoint}': {status}{self.message}{tries}"

    def with_attempts(self, attempts: int) -> CallError:
        """A copy of this error that reports ``attempts`` HTTP requests."""
        return type(self)(
            self.message,
            endpoint=self.endpoint,
            status_code=self.status_code,
            headers=self.headers,
            body=self.body,
            attempts=attempts,
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_call_error,
            (type(self), self.message, self.endpoint, self.status_code, self.headers, self.body, self.attempts),
        )


def _rebuild_call_error(
    cls: type[CallError],
    message: str,
    endpoint: str,
    status_code: int | None,
    headers: dict[str, str],
    body: str,
    attempts: int,
) -> CallError:
    return cls(message, endpoint=endpoint, status_code=status_code, headers=headers, body=body, attempts=attempts)


class TransportError(CallError):
    """No HTTP response arrived: connection refused or dropped, DNS or TLS failure."""


class RequestTimeout(TransportError):
    """One attempt ran past the endpoint's ``timeout``."""


class DeadlineExceeded(CallError):
    """The call's total deadline (all attempts and waits together) ran out."""


class BudgetExceeded(CallError):
    """Not sent: the next request would pass a spending cap that counts it: its session's
    (``aiquery.budget.max_cost`` or ``max_tokens``, set with ``SET``) or the application's (``aiquery run
    --max-cost`` or ``--max-tokens``). Its message starts with the error class ``[AI_QUERY_BUDGET_EXCEEDED]`` and
    names the cap, whose it is and how to lift it."""

    error_class = "AI_QUERY_BUDGET_EXCEEDED"


class TaskCancelled(CallError):
    """The Spark task was being killed (its job failed or was cancelled) before this call's request was sent."""


class UsageNotRecorded(CallError):
    """Not sent: the driver's usage journal cannot be written (a full or read-only disk), and a request it could not
    record would be paid for and missing from the ledger. Its message starts with ``[AI_QUERY_USAGE_NOT_RECORDED]``
    and names the journal's folder."""

    error_class = "AI_QUERY_USAGE_NOT_RECORDED"


class BatchLineFailed(CallError):
    """Not sent: a batch-mode run's pass found this request's line failed or expired in its provider batch, and
    the run falls back to failing such rows (``--batch-fallback fail``). Its message starts with
    ``[AI_QUERY_BATCH_LINE_FAILED]`` and holds the line's error."""

    error_class = "AI_QUERY_BATCH_LINE_FAILED"


class BatchCollectionLost(AIQueryError):
    """A batch-mode collect pass could not hand a task's requests to the driver (the coordinator is unreachable,
    or none runs): the task fails rather than drop them, since a dropped request would never be batched."""


class StatusError(CallError):
    """The endpoint answered with an HTTP error status."""


class RateLimitError(StatusError):
    """HTTP 429."""


class ServerError(StatusError):
    """HTTP 5xx or 529 (overloaded)."""


class ClientError(StatusError):
    """Another HTTP 4xx: bad request, authentication, permission, not found."""


class ResponseError(CallError):
    """A 2xx response that cannot be used: not JSON, truncated, or without the answer."""


def status_error_class(status: int) -> type[StatusError]:
    """The StatusError subclass for an HTTP status."""
    if status == 429:
        return RateLimitError
    if status >= 500:
        return ServerError
    return ClientError
