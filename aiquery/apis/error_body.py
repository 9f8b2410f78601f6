"""Reading error bodies: the provider's own message, its error code, and whether the body rules out a retry.

Every adapter shares this reader because a gateway may answer any route with any of these shapes (the
Databricks gateway wraps upstream errors in its own shape, an OpenAI-compatible server may speak OpenAI's):

- OpenAI and OpenAI-compatible: ``{"error": {"message", "type", "param", "code"}}``
- Databricks: ``{"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "..."}``
- Anthropic: ``{"type": "error", "error": {"type", "message", "details"?}, "request_id"}``
- Gemini (Google RPC): ``{"error": {"code": 429, "message", "status": "RESOURCE_EXHAUSTED", "details"}}``
- anything else: a top-level ``message``/``detail``/``error`` string, or the raw text (an HTML proxy page).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from aiquery.apis.base import ErrorVerdict
from aiquery.apis.json_body import decode_json_body

__all__ = ["MAX_MESSAGE_CHARS", "parse_error_body"]

MAX_MESSAGE_CHARS = 500

# 429s that no amount of waiting fixes within a query: the account is out of money or over a spend cap.
# OpenAI puts these in `type` or `code`; the Stainless SDKs do not special-case them, so without this
# table a batch would burn its whole retry budget on every row.
_QUOTA_CODES = frozenset(
    {
        "insufficient_quota",
        "credit_balance_exhausted",
        "billing_hard_limit_reached",
        "billing_not_active",
        "quota_exceeded",  # Databricks' QUOTA_EXCEEDED (compared lower-cased)
    }
)
_QUOTA_CODE_SUFFIXES = ("_spend_limit_exceeded",)
# Anthropic: a 402, or a 429 whose details say the organisation hit its enforced spend limit.
_ANTHROPIC_FINAL_TYPES = frozenset({"billing_error"})
_ANTHROPIC_FINAL_DETAIL_CODES = frozenset({"enforced_spend_limit_reached"})

_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


def parse_error_body(status: int, body: Any) -> ErrorVerdict:
    """The provider's message, code and retry hint in an error response body.

    Args:
        status: the HTTP status of the response.
        body: the decoded JSON body, or the raw text (or bytes) when the body is not JSON.

    Returns:
        An :class:`ErrorVerdict`. ``retryable`` is False only for quota or spend-limit errors; otherwise it is
        None so that the engine decides by status.
    """
    if isinstance(body, (bytes, bytearray)):
        body = bytes(body).decode("utf-8", errors="replace")
    if isinstance(body, str):
        decoded = _maybe_json(body)
        if decoded is None:
            return ErrorVerdict(message=_text_message(status, body))
        body = decoded
    if isinstance(body, list) and body and isinstance(body[0], Mapping):
        body = body[0]  # Gemini wraps errors in a one-element array on some routes
    if not isinstance(body, Mapping):
        return ErrorVerdict(message=_truncate(json.dumps(body, default=str)) or f"HTTP {status}")
    for reader in _READERS:
        verdict = reader(body)
        if verdict is not None:
            return verdict
    return ErrorVerdict(message=_truncate(json.dumps(body, default=str, sort_keys=True)))


def _maybe_json(text: str) -> Any:
    stripped = text.strip()
    if not stripped.startswith(("{", "[")):
        return None
    try:
        return decode_json_body(stripped)
    except ValueError:  # not JSON, or nested too deep to read: the text is the message
        return None


def _text_message(status: int, text: str) -> str:
    title = _TITLE.search(text)
    if title:
        cleaned = _SPACE.sub(" ", html.unescape(title.group(1))).strip()
    else:
        cleaned = _SPACE.sub(" ", html.unescape(_TAG.sub(" ", text))).strip()
    return _truncate(cleaned) or f"HTTP {status} with an empty body"


def _truncate(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _anthropic(body: Mapping[str, Any]) -> ErrorVerdict | None:
    error = body.get("error")
    if body.get("type") != "error" or not isinstance(error, Mapping):
        return None
    error_type = _string(error.get("type"))
    details = error.get("details")
    detail_code = _string(details.get("error_code")) if isinstance(details, Mapping) else None
    final = error_type in _ANTHROPIC_FINAL_TYPES or detail_code in _ANTHROPIC_FINAL_DETAIL_CODES
    return ErrorVerdict(
        message=_truncate(_string(error.get("message")) or error_type or "unknown Anthropic error"),
        code=detail_code or error_type,
        retryable=False if final else None,
    )


def _google(body: Mapping[str, Any]) -> ErrorVerdict | None:
    error = body.get("error")
    if not isinstance(error, Mapping) or not isinstance(error.get("status"), str):
        return None
    details = error.get("details")
    details = [d for d in details if isinstance(d, Mapping)] if isinstance(details, list) else []
    return ErrorVerdict(
        message=_truncate(_string(error.get("message")) or error["status"]),
        code=error["status"],
        retryable=False if _quota_cannot_recover(details) else None,
        retry_after=_retry_delay(details),
    )


def _quota_cannot_recover(details: list[Mapping[str, Any]]) -> bool:
    # A daily quota, or a quota of zero (a free tier without access to the model), does not come back
    # within any retry budget; a per-minute quota does, so it stays with the status table.
    for detail in details:
        if not str(detail.get("@type", "")).endswith("google.rpc.QuotaFailure"):
            continue
        for violation in detail.get("violations") or []:
            if not isinstance(violation, Mapping):
                continue
            if "PerDay" in str(violation.get("quotaId", "")) or str(violation.get("quotaValue")) == "0":
                return True
    return False


def _retry_delay(details: list[Mapping[str, Any]]) -> float | None:
    for detail in details:
        if str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            match = _DURATION.match(str(detail.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None


def _openai(body: Mapping[str, Any]) -> ErrorVerdict | None:
    error = body.get("error")
    if not isinstance(error, Mapping):
        return None
    error_type = _string(error.get("type"))
    code = _string(error.get("code")) or (str(error["code"]) if isinstance(error.get("code"), int) else None)
    final = any(_is_quota_code(c) for c in (error_type, code))
    return ErrorVerdict(
        message=_truncate(_string(error.get("message")) or code or error_type or "unknown error"),
        code=code or error_type,
        retryable=False if final else None,
    )


def _is_quota_code(code: str | None) -> bool:
    return code is not None and (code in _QUOTA_CODES or code.endswith(_QUOTA_CODE_SUFFIXES))


def _databricks(body: Mapping[str, Any]) -> ErrorVerdict | None:
    code = _string(body.get("error_code"))
    if code is None:
        return None
    return ErrorVerdict(
        message=_truncate(_string(body.get("message")) or code),
        code=code,
        retryable=False if _is_quota_code(code.lower()) else None,
    )


def _plain(body: Mapping[str, Any]) -> ErrorVerdict | None:
    # vLLM ({"object": "error", "message", "type", "code"}), FastAPI ({"detail"}) and servers that send
    # {"error": "text"}.
    for key in ("message", "detail", "error"):
        text = _string(body.get(key))
        if text is not None:
            code = _string(body.get("code")) or _string(body.get("type"))
            return ErrorVerdict(message=_truncate(text), code=code, retryable=False if _is_quota_code(code) else None)
    return None


_READERS: tuple[Callable[[Mapping[str, Any]], ErrorVerdict | None], ...] = (
    _anthropic,
    _google,
    _openai,
    _databricks,
    _plain,
)
