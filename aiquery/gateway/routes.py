"""The six gateway routes: each pairs a wire format with an error style and its accepted key header."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from aiquery.gateway.error_bodies import ANTHROPIC, DATABRICKS, GOOGLE, OPENAI, ErrorStyle
from aiquery.gateway.wire import WireFormat
from aiquery.gateway.wire_native import AnthropicFormat, GeminiFormat
from aiquery.gateway.wire_openai import ChatFormat, EmbeddingsFormat, ResponsesFormat

__all__ = ["GEMINI", "ROUTES", "UNKNOWN_ROUTE", "Route", "match_route"]

UNKNOWN_ROUTE = "unknown"
"""The route key under which requests to paths the gateway does not serve are counted."""


@dataclass(frozen=True, slots=True)
class Route:
    """One served route.

    Attributes:
        key: the route's name in counters and the request log: its path after ``/ai-gateway/``.
        wire: the request and response format.
        errors: the error-body style.
        key_header: a header accepted instead of ``Authorization: Bearer`` (the native SDKs' own), or None.
        accepts_query_key: whether ``?key=<token>`` authenticates too (Google's API does).
    """

    key: str
    wire: WireFormat
    errors: ErrorStyle
    key_header: str | None = None
    accepts_query_key: bool = False


_CHAT = ChatFormat()
_RESPONSES = ResponsesFormat()

ROUTES: dict[str, Route] = {
    f"/ai-gateway/{route.key}": route
    for route in (
        Route("mlflow/v1/chat/completions", _CHAT, DATABRICKS),
        Route("mlflow/v1/embeddings", EmbeddingsFormat(), DATABRICKS),
        Route("mlflow/v1/responses", _RESPONSES, DATABRICKS),
        Route("openai/v1/responses", _RESPONSES, OPENAI),
        Route("anthropic/v1/messages", AnthropicFormat(), ANTHROPIC, key_header="x-api-key"),
    )
}

_ANTHROPIC_ROUTE = ROUTES["/ai-gateway/anthropic/v1/messages"]
PROVIDER_ROUTES: dict[str, Route] = {
    "/" + route.key: route
    for route in (
        Route("v1/chat/completions", _CHAT, OPENAI),
        Route("v1/embeddings", EmbeddingsFormat(), OPENAI),
        Route("v1/responses", _RESPONSES, OPENAI),
        Route("v1/messages", _ANTHROPIC_ROUTE.wire, ANTHROPIC, key_header="x-api-key"),
    )
}
"""The providers' own paths (an endpoint whose ``base_url`` is the emulator's, as with ``batch = true``: the rows
its batches did not answer are sent live there)."""

GEMINI = Route(
    "gemini/v1beta/models/{model}:generateContent",
    GeminiFormat(),
    GOOGLE,
    key_header="x-goog-api-key",
    accepts_query_key=True,
)
_GEMINI_PREFIXES = ("/ai-gateway/gemini/v1beta/models/", "/v1beta/models/")
_GEMINI_SUFFIX = ":generateContent"


def match_route(path: str) -> tuple[Route, str | None] | None:
    """The route serving ``path`` and the model named in it (Gemini only), or None for an unknown path."""
    route = ROUTES.get(path) or PROVIDER_ROUTES.get(path)
    if route is not None:
        return route, None
    if "%" in path:
        path = unquote(path)
    prefix = next((prefix for prefix in _GEMINI_PREFIXES if path.startswith(prefix)), None)
    if prefix is not None and path.endswith(_GEMINI_SUFFIX):
        model = path[len(prefix) : -len(_GEMINI_SUFFIX)]
        if model and "/" not in model:
            return GEMINI, model
    return None
