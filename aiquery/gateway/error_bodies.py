"""Error bodies in each route's own shape: Databricks, OpenAI, Anthropic and Google.

Each style maps an error *kind* (what went wrong, independent of the API) to its API's code and renders the
body. Quota (spend-limit) errors are 429s that must not be retried, and each style marks them the way its API
does: Databricks ``QUOTA_EXCEEDED``, OpenAI ``insufficient_quota``, Anthropic
``error.details.error_code = enforced_spend_limit_reached``, Google a daily ``QuotaFailure`` without
``RetryInfo``.
"""

from __future__ import annotations

import uuid
from typing import Any, Protocol

__all__ = [
    "ANTHROPIC",
    "DATABRICKS",
    "GOOGLE",
    "KIND_BY_STATUS",
    "OPENAI",
    "ErrorStyle",
    "kind_of_status",
]

KIND_BY_STATUS = {
    400: "bad_request",
    401: "unauthenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    408: "timeout",
    409: "conflict",
    413: "too_large",
    429: "rate_limit",
    500: "server_error",
    502: "bad_gateway",
    503: "unavailable",
    504: "timeout",
    529: "overloaded",
}

MESSAGES = {
    "bad_request": "The request is invalid.",
    "unauthenticated": "Invalid or missing credentials.",
    "permission_denied": "You do not have permission to query this endpoint.",
    "not_found": "The endpoint does not exist.",
    "method_not_allowed": "Method not allowed; use POST.",
    "timeout": "The request timed out upstream.",
    "conflict": "Conflicting concurrent request.",
    "too_large": "The request is too large.",
    "rate_limit": "Rate limit exceeded; retry later.",
    "quota": "You exceeded your current quota (spend limit reached); check your plan and billing details.",
    "server_error": "The server had an error while processing your request.",
    "bad_gateway": "Bad gateway: the upstream model server gave an invalid response.",
    "unavailable": "The service is temporarily unavailable.",
    "overloaded": "Overloaded",
}


def kind_of_status(status: int) -> str:
    """The error kind of an HTTP status (server_error for unknown 5xx, bad_request for unknown 4xx)."""
    return KIND_BY_STATUS.get(status, "server_error" if status >= 500 else "bad_request")


class ErrorStyle(Protocol):
    """How one API spells its errors."""

    def body(self, kind: str, status: int, message: str, retry_after_s: float | None = None) -> dict[str, Any]:
        """The error body for ``kind`` at ``status``; ``retry_after_s`` is the wait a 429 asks for."""
        ...


class DatabricksStyle:
    """``{"error_code": ..., "message": ...}`` (the MLflow routes and unknown routes)."""

    codes = {
        "bad_request": "BAD_REQUEST",
        "unauthenticated": "UNAUTHENTICATED",
        "permission_denied": "PERMISSION_DENIED",
        "not_found": "ENDPOINT_NOT_FOUND",
        "method_not_allowed": "BAD_REQUEST",
        "timeout": "DEADLINE_EXCEEDED",
        "conflict": "ABORTED",
        "too_large": "REQUEST_TOO_LARGE",
        "rate_limit": "REQUEST_LIMIT_EXCEEDED",
        "quota": "QUOTA_EXCEEDED",
        "server_error": "INTERNAL_ERROR",
        "bad_gateway": "BAD_GATEWAY",
        "unavailable": "TEMPORARILY_UNAVAILABLE",
        "overloaded": "TEMPORARILY_UNAVAILABLE",
    }

    def body(self, kind: str, status: int, message: str, retry_after_s: float | None = None) -> dict[str, Any]:
        if kind == "quota":
            message = f"insufficient_quota: {message}"
        return {"error_code": self.codes.get(kind, "INTERNAL_ERROR"), "message": message}


class OpenAIStyle:
    """``{"error": {"message", "type", "param", "code"}}``."""

    codes: dict[str, tuple[str, str | None]] = {
        "bad_request": ("invalid_request_error", None),
        "unauthenticated": ("invalid_request_error", "invalid_api_key"),
        "permission_denied": ("invalid_request_error", "unsupported_country_region_territory"),
        "not_found": ("invalid_request_error", "model_not_found"),
        "method_not_allowed": ("invalid_request_error", None),
        "timeout": ("server_error", "timeout"),
        "conflict": ("invalid_request_error", "conflict"),
        "too_large": ("invalid_request_error", "request_too_large"),
        "rate_limit": ("requests", "rate_limit_exceeded"),
        "quota": ("insufficient_quota", "insufficient_quota"),
        "server_error": ("server_error", None),
        "bad_gateway": ("server_error", "bad_gateway"),
        "unavailable": ("server_error", "service_unavailable"),
        "overloaded": ("server_error", "overloaded"),
    }

    def body(self, kind: str, status: int, message: str, retry_after_s: float | None = None) -> dict[str, Any]:
        error_type, code = self.codes.get(kind, ("server_error", None))
        return {"error": {"message": message, "type": error_type, "param": None, "code": code}}


class AnthropicStyle:
    """``{"type": "error", "error": {"type", "message"}, "request_id"}``."""

    types = {
        "bad_request": "invalid_request_error",
        "unauthenticated": "authentication_error",
        "permission_denied": "permission_error",
        "not_found": "not_found_error",
        "method_not_allowed": "invalid_request_error",
        "timeout": "timeout_error",
        "conflict": "conflict_error",
        "too_large": "request_too_large",
        "rate_limit": "rate_limit_error",
        "quota": "rate_limit_error",
        "server_error": "api_error",
        "bad_gateway": "api_error",
        "unavailable": "api_error",
        "overloaded": "overloaded_error",
    }

    def body(self, kind: str, status: int, message: str, retry_after_s: float | None = None) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.types.get(kind, "api_error"), "message": message}
        if kind == "quota":
            error["details"] = {"error_code": "enforced_spend_limit_reached"}
        return {"type": "error", "error": error, "request_id": f"req_{uuid.uuid4().hex[:24]}"}


class GoogleStyle:
    """``{"error": {"code", "message", "status", "details"}}`` with gRPC status names."""

    statuses = {
        "bad_request": "INVALID_ARGUMENT",
        "unauthenticated": "UNAUTHENTICATED",
        "permission_denied": "PERMISSION_DENIED",
        "not_found": "NOT_FOUND",
        "method_not_allowed": "INVALID_ARGUMENT",
        "timeout": "DEADLINE_EXCEEDED",
        "conflict": "ABORTED",
        "too_large": "INVALID_ARGUMENT",
        "rate_limit": "RESOURCE_EXHAUSTED",
        "quota": "RESOURCE_EXHAUSTED",
        "server_error": "INTERNAL",
        "bad_gateway": "UNAVAILABLE",
        "unavailable": "UNAVAILABLE",
        "overloaded": "UNAVAILABLE",
    }

    def body(self, kind: str, status: int, message: str, retry_after_s: float | None = None) -> dict[str, Any]:
        error: dict[str, Any] = {
            "code": status,
            "message": message,
            "status": self.statuses.get(kind, "INTERNAL"),
        }
        if kind == "rate_limit" and retry_after_s is not None:
            delay = f"{max(1, round(retry_after_s))}s"
            error["message"] = f"{message} Please retry in {delay}."
            error["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}]
        elif kind == "quota":
            # A per-day quota: waiting seconds will not help, so no RetryInfo is given.
            violation = {
                "quotaMetric": "generate_content_requests",
                "quotaId": "GenerateRequestsPerDayPerProject",
            }
            error["details"] = [{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [violation]}]
        return {"error": error}


DATABRICKS = DatabricksStyle()
OPENAI = OpenAIStyle()
ANTHROPIC = AnthropicStyle()
GOOGLE = GoogleStyle()
