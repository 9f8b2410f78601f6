"""The wire-format protocol of the emulator's routes, and helpers shared by the formats.

A wire format reads a decoded request body into an :class:`~aiquery.gateway.canned_answers.Ask` (refusing what the
real API refuses with :class:`BadRequest`) and renders a :class:`~aiquery.gateway.canned_answers.Reply` as that API's
response body, with its own usage shape.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from aiquery.gateway.canned_answers import Ask, Reply

__all__ = ["BadRequest", "WireFormat", "now", "optional_positive_int", "require_list", "text_of"]


class BadRequest(ValueError):
    """The request is invalid the way the real API would say with a 400; the message is the API's text."""


class WireFormat(Protocol):
    """One API's request and response bodies."""

    image_form: str | None
    """How its requests carry images (see :func:`images_in`), or None when it takes none."""

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


_DATA_URI = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)$", re.S)


def images_in(body: Any, form: str | None) -> list[bytes]:
    """The images of a request body in its API's own form, each decoded and checked against its declared type.

    Forms: ``image_url`` (chat completions: a ``data:`` URI), ``input_image`` (both responses APIs), ``anthropic``
    (a base64 ``image`` source) and ``inline_data`` (Gemini); None for an API that takes no images.

    Raises:
        BadRequest: an image part of another API's form, bad base64, or bytes that are not the declared type.
    """
    found: list[bytes] = []
    for part in _parts(body):
        kind = part.get("type")
        if kind == "image_url" and form == "image_url":
            url = part.get("image_url")
            found.append(_from_uri(url.get("url") if isinstance(url, Mapping) else None))
        elif kind == "input_image" and form == "input_image":
            found.append(_from_uri(part.get("image_url")))
        elif kind == "image" and form == "anthropic":
            source = part.get("source")
            if not isinstance(source, Mapping) or source.get("type") != "base64":
                raise BadRequest("an image's source must be {'type': 'base64', 'media_type': ..., 'data': ...}")
            found.append(_decoded(source.get("data"), source.get("media_type")))
        elif ("inlineData" in part or "inline_data" in part) and form == "inline_data":
            blob = part.get("inlineData", part.get("inline_data"))
            if not isinstance(blob, Mapping):
                raise BadRequest("inlineData must be an object with mimeType and data")
            found.append(_decoded(blob.get("data"), blob.get("mimeType", blob.get("mime_type"))))
        elif kind in ("image_url", "input_image", "image") or "inlineData" in part or "inline_data" in part:
            raise BadRequest(f"this API takes no image part of the form {kind or 'inlineData'!r}")
    return found


def _parts(value: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(value, Mapping):
        yield value
        for item in value.values():
            yield from _parts(item)
    elif isinstance(value, list):
        for item in value:
            yield from _parts(item)


def _from_uri(uri: Any) -> bytes:
    match = _DATA_URI.match(uri) if isinstance(uri, str) else None
    if match is None:
        raise BadRequest("an image must be a data: URI (data:image/png;base64,...); the emulator fetches no URL")
    return _decoded(match.group("data"), match.group("type"))


def _image_kind(raw: bytes) -> str | None:
    """The emulator's own reading of an image's type (independent of the client's, so that tests compare two)."""
    if raw[:3].hex() == "ffd8ff":
        return "image/jpeg"
    if raw[:8].hex() == "89504e470d0a1a0a":
        return "image/png"
    if raw[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        return "image/webp"
    return None


def _decoded(data: Any, declared: Any) -> bytes:
    if not isinstance(data, str):
        raise BadRequest("an image's data must be a base64 string")
    try:
        raw = base64.b64decode(data, validate=True)
    except ValueError:
        raise BadRequest("an image's data is not valid base64") from None
    actual = _image_kind(raw)
    if actual is None or actual != declared:
        raise BadRequest(f"the image is declared {declared!r}, but its bytes are {actual or 'not an image'}")
    return raw
