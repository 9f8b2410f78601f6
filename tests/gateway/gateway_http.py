"""HTTP helpers for the emulator tests: plain http.client over loopback, one request per connection."""

from __future__ import annotations

import http.client
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

CHAT = "/ai-gateway/mlflow/v1/chat/completions"
EMBEDDINGS = "/ai-gateway/mlflow/v1/embeddings"
RESPONSES = "/ai-gateway/mlflow/v1/responses"
OPENAI_RESPONSES = "/ai-gateway/openai/v1/responses"
ANTHROPIC = "/ai-gateway/anthropic/v1/messages"
GEMINI = "/ai-gateway/gemini/v1beta/models/gem-model:generateContent"

TEXT_ROUTES = [CHAT, RESPONSES, OPENAI_RESPONSES, ANTHROPIC, GEMINI]
ALL_ROUTES = [CHAT, EMBEDDINGS, RESPONSES, OPENAI_RESPONSES, ANTHROPIC, GEMINI]

ROUTE_KEYS = {
    CHAT: "mlflow/v1/chat/completions",
    EMBEDDINGS: "mlflow/v1/embeddings",
    RESPONSES: "mlflow/v1/responses",
    OPENAI_RESPONSES: "openai/v1/responses",
    ANTHROPIC: "anthropic/v1/messages",
    GEMINI: "gemini/v1beta/models/{model}:generateContent",
}


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    raw: bytes

    def json(self) -> Any:
        return json.loads(self.raw)


def request_body(path: str, prompt: str, max_tokens: int | None = None, **extra: Any) -> dict[str, Any]:
    """A minimal valid body for ``path`` asking ``prompt``."""
    if path == CHAT:
        body: dict[str, Any] = {"model": "chat-model", "messages": [{"role": "user", "content": prompt}]}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
    elif path == EMBEDDINGS:
        body = {"model": "embed-model", "input": prompt}
    elif path in (RESPONSES, OPENAI_RESPONSES):
        body = {"model": "resp-model", "input": [{"role": "user", "content": prompt}]}
        if max_tokens is not None:
            body["max_output_tokens"] = max_tokens
    elif path == ANTHROPIC:
        body = {
            "model": "claude-model",
            "max_tokens": max_tokens or 1024,
            "messages": [{"role": "user", "content": prompt}],
        }
    else:
        body = {"contents": [{"role": "user", "parts": [{"text": prompt}]}]}
        if max_tokens is not None:
            body["generationConfig"] = {"maxOutputTokens": max_tokens}
    body.update(extra)
    return body


def answer_text(path: str, body: Mapping[str, Any]) -> str:
    """The answer text in a success body of ``path`` (KeyError/IndexError if it is missing)."""
    if path == CHAT:
        return str(body["choices"][0]["message"]["content"])
    if path in (RESPONSES, OPENAI_RESPONSES):
        messages = [item for item in body["output"] if item["type"] == "message"]
        return "".join(part["text"] for part in messages[0]["content"] if part["type"] == "output_text")
    if path == ANTHROPIC:
        return str(body["content"][0]["text"])
    if path == GEMINI:
        return str(body["candidates"][0]["content"]["parts"][0]["text"])
    raise AssertionError(f"no text answer on {path}")


def error_code(path: str, body: Mapping[str, Any]) -> str:
    """The API-specific error identifier in an error body of ``path``."""
    path = path.partition("?")[0]
    if path == OPENAI_RESPONSES:
        return str(body["error"]["code"] or body["error"]["type"])
    if path == ANTHROPIC:
        assert body["type"] == "error"
        return str(body["error"]["type"])
    if path == GEMINI:
        return str(body["error"]["status"])
    return str(body["error_code"])  # the MLflow routes and unknown routes answer in Databricks' shape


def send(
    url: str,
    path: str,
    body: Any = None,
    *,
    token: str | None = None,
    headers: Mapping[str, str] | None = None,
    method: str = "POST",
    raw: bytes | None = None,
    timeout: float = 10.0,
) -> Response:
    """One request on a fresh connection; raises what http.client raises for dropped or truncated answers."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        all_headers = {"Content-Type": "application/json"}
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        all_headers.update(headers or {})
        payload = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        connection.request(method, path, body=payload, headers=all_headers)
        response = connection.getresponse()
        data = response.read()
        return Response(response.status, {name.lower(): value for name, value in response.getheaders()}, data)
    finally:
        connection.close()
