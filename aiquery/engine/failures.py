"""What a failed attempt means: the user-facing error and the retry decision, from a response or its absence.

Pure functions over plain data (a status, headers, a body, a transport failure); the engine raises what they
return. Messages name what to fix: the token variable for 401/403, the URL asked for a 404.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiquery.apis.base import ErrorVerdict, MalformedResponse
from aiquery.apis.error_body import MAX_MESSAGE_CHARS
from aiquery.apis.json_body import decode_json_body
from aiquery.config import MAX_RESPONSE_BYTES_LIMIT, Endpoint
from aiquery.engine.prepared import PreparedSite
from aiquery.engine.retry import AttemptFailed, Decision, retry_decision
from aiquery.engine.transport import HTTPResponse, NoResponse
from aiquery.errors import (
    CallError,
    DeadlineExceeded,
    RequestTimeout,
    ResponseError,
    TransportError,
    status_error_class,
)

__all__ = ["bad_body_failure", "budget_deadline", "deadline_reason", "no_response_failure", "status_failure"]

AUTH_STATUSES = frozenset({401, 403})


def status_failure(
    prepared: PreparedSite, response: HTTPResponse, now: Callable[[], float] = time.time
) -> AttemptFailed:
    """An answer with a non-2xx status: the adapter's reading of the error body, and whether to retry."""
    endpoint = prepared.endpoint
    text = response.body.decode("utf-8", "replace")
    try:
        decoded: Any = decode_json_body(text)
    except ValueError:  # not JSON, or too deep: the adapter reads the text
        decoded = text
    try:
        verdict = prepared.adapter.parse_error(response.status, decoded)
    except Exception:  # adapters promise not to raise; should one, a strange error body still fails only its row
        verdict = ErrorVerdict(message=text[:MAX_MESSAGE_CHARS] or f"HTTP {response.status}")
    decision = retry_decision(
        response.status,
        response.headers,
        verdict_retryable=verdict.retryable,
        max_retry_after=endpoint.max_retry_after,
        body_delay=verdict.retry_after,
        now=now,
    )
    message = verdict.message
    if response.status in AUTH_STATUSES and not decision.retry:
        # Providers rarely say which credential failed; name the variable (never its value) and say that
        # retrying would not help, so nobody waits for a retry that is not coming.
        message = f"{message} (not retried: check the token in {endpoint.token_env})"
    elif response.status == 404 and not decision.retry:
        # An unknown endpoint name or a wrong base_url: say which URL was asked, so the fix is obvious.
        message = f"{message} (not retried: no model {endpoint.model!r} at {prepared.url}; check the name)"
    error = status_error_class(response.status)(
        message,
        endpoint=endpoint.name,
        status_code=response.status,
        headers=response.headers,
        body=text,
    )
    return AttemptFailed(error, decision)


def bad_body_failure(exc: Exception, response: HTTPResponse, endpoint: Endpoint) -> AttemptFailed:
    """A 2xx answer whose body cannot be used: malformed JSON is retried, JSON without an answer is not.

    ``exc`` is whatever decoding and reading the body raised: a :class:`MalformedResponse` (too deep, out of range,
    the wrong shape), a ``ValueError`` (not JSON), or anything else an odd shape provokes in an adapter, which is
    read like a wrong shape.
    """
    text = response.body[:200].decode("utf-8", "replace")
    if isinstance(exc, ValueError) and not isinstance(exc, MalformedResponse):
        return AttemptFailed(
            ResponseError(f"response is not valid JSON: {text!r}", endpoint=endpoint.name, body=text),
            Decision(True, "malformed JSON body"),
        )
    cause = str(exc) if isinstance(exc, MalformedResponse) else f"{type(exc).__name__}: {str(exc)[:300]}"
    # Valid JSON without the answer will look the same next time: not retried.
    return AttemptFailed(
        ResponseError(f"response has no usable answer: {cause}", endpoint=endpoint.name, body=text),
        Decision(False, "response without an answer"),
    )


def no_response_failure(failure: NoResponse, endpoint: Endpoint) -> AttemptFailed:
    """No complete response (timeout, refused or dropped connection, an answer too large or unreadable): retried
    unless a retry cannot help."""
    error: CallError
    if failure.kind in ("too_large", "unreadable"):
        message = failure.message
        if failure.kind == "too_large":
            message += (
                f"; raise max_response_bytes in [endpoints.{endpoint.name}] (at most "
                f"{MAX_RESPONSE_BYTES_LIMIT >> 20} MiB) if such answers are expected"
            )
        error = ResponseError(message, endpoint=endpoint.name)
    else:
        error_type = RequestTimeout if failure.kind == "timeout" else TransportError
        error = error_type(failure.message, endpoint=endpoint.name)
    decision = retry_decision(None, {}, max_retry_after=endpoint.max_retry_after, transport_retryable=failure.retryable)
    return AttemptFailed(error, decision)


def budget_deadline(endpoint: Endpoint) -> AttemptFailed:
    """The rate budget cannot let the call through before its deadline: stopped before sending."""
    return AttemptFailed(
        DeadlineExceeded(
            f"the endpoint's rate budget cannot fit this call before its {endpoint.deadline:g} s deadline",
            endpoint=endpoint.name,
        ),
        Decision(False, "budget wait past the deadline"),
        sent=False,
    )


def deadline_reason(last: AttemptFailed, endpoint: Endpoint) -> str:
    """What stopped a call at its deadline: the unsent attempt's own reason, or the deadline itself."""
    return last.error.message if not last.sent else f"call deadline of {endpoint.deadline:g} s reached"
