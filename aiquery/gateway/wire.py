"""The wire-format protocol of the emulator's routes, and helpers shared by the formats.

A wire format reads a decoded request body into an :class:`~aiquery.gateway.answers.Ask` (refusing what the
real API refuses with :class:`BadRequest`) and renders a :class:`~aiquery.gateway.answers.Reply` as that API's
response body, with its own usage shape.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Protocol

from aiquery.gateway.answers import Ask, Reply

__all__ = ["BadRequest", "WireFormat", "now", "optional_positive_int", "require_list", "text_of"]


class BadRequest(ValueError):
    """The request is invalid the way the real API would say with a 400; the message is the API's text."""


class WireFormat(Protocol):
    """One API's request and response bodies."""

    def parse(self, body: Any, headers: Mapping[str, str], path_model: str | None) -> Ask:
        """What the request asks.

        Args:
            body: the decoded JSON body.
            headers: request headers, lower-cased names.
            path_model: the model named in the URL (Gemini), else None.

        Raises:
            BadRequest: the body or headers are invalid for this API.
        """
        ...

    def render(self, ask: Ask, reply: Reply, response_id: str) -> dict[str, Any]:
        """The API's success body for ``reply``."""
        ...

    def render_without_answer(self, ask: Ask, reply: Reply, response_id: str) -> dict[str, Any]:
        """A well-formed success body that lacks the answer (the ``no_text`` fault)."""
        ...


def now() -> int:
    """Unix time in whole seconds, as ``created`` fields carry it."""
    return int(time.time())


def text_of(content: Any) -> str:
    """The text in a message's content: a string, a list of parts with ``text``, or a part."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(text_of(part) for part in content)
    if isinstance(content, Mapping):
        if isinstance(content.get("text"), str):
            return str(content["text"])
        for key in ("content", "parts"):
            if key in content:
                return text_of(content[key])
    return ""


def require_object(body: Any) -> Mapping[str, Any]:
    """The body as a JSON object."""
    if not isinstance(body, Mapping):
        raise BadRequest("the request body must be a JSON object")
    return body


def require_list(body: Mapping[str, Any], key: str) -> list[Any]:
    """``body[key]`` as a non-empty list."""
    value = body.get(key)
    if not isinstance(value, list) or not value:
        raise BadRequest(f"'{key}' is required and must be a non-empty array")
    return value


def require_model(body: Mapping[str, Any]) -> str:
    """The body's ``model``."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required and must be a string")
    return model


def optional_positive_int(body: Mapping[str, Any], *keys: str) -> int | None:
    """The first of ``keys`` present in ``body``, checked to be a positive integer."""
    for key in keys:
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BadRequest(f"'{key}' must be a positive integer, got {value!r}")
        return value
    return None
