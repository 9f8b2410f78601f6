"""Images sent with a prompt (``ai_query(..., files => content)``): their type, read from their bytes, and the
size limit an API may have (``Adapter.max_image_bytes``).

A file is an image when its first bytes say so: JPEG (``FF D8 FF``), PNG (``89 50 4E 47 0D 0A 1A 0A``), GIF
(``GIF87a`` / ``GIF89a``) or WEBP (``RIFF....WEBP``); anything else gets a clear error for its row. Each adapter
sends it in its API's own form (see :func:`data_uri` and :func:`base64_text`).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import ClassVar, Protocol

__all__ = ["FilePrompt", "ImageError", "base64_text", "check_image", "data_uri", "media_type"]


class ImageLimit(Protocol):
    """An API's per-image limit: set where it is below the request-size limit (16 MiB of JSON, so about 12 MB of
    image), as Anthropic's 5 MB is; OpenAI (20 MB per image) and Gemini (20 MB inline per request) are above it."""

    api: ClassVar[str]
    max_image_bytes: ClassVar[int | None]


_SIGNATURES = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


class ImageError(ValueError):
    """A file that cannot be sent as an image: not one, or too large for the API."""


@dataclass(frozen=True, slots=True)
class FilePrompt:
    """One row's request with the file of ``files =>``: hashable, so equal rows (same text, same bytes) are sent
    once, and different images with one text are two requests."""

    text: str
    image: bytes


def media_type(data: bytes) -> str | None:
    """``image/jpeg``, ``image/png``, ``image/gif`` or ``image/webp`` from the bytes, else None."""
    for signature, kind in _SIGNATURES:
        if data.startswith(signature):
            return kind
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def check_image(data: bytes, api: ImageLimit) -> str:
    """The image's media type.

    Raises:
        ImageError: the bytes are not a JPEG, PNG, GIF or WEBP image, or are over the API's per-image limit.
    """
    kind = media_type(data)
    if kind is None:
        head = data[:8].hex(" ")
        raise ImageError(
            f"the file is not an image aiquery can send (JPEG, PNG, GIF or WEBP); its first bytes are {head or 'none'}"
        )
    limit = api.max_image_bytes
    if limit is not None and len(data) > limit:
        raise ImageError(
            f"the image is {len(data) / 1e6:.1f} MB; the {api.api} API takes at most {limit / 1e6:.1f} MB per image"
        )
    return kind


def base64_text(data: bytes) -> str:
    """The bytes in base64, as the APIs take inline data."""
    return base64.b64encode(data).decode("ascii")


def data_uri(data: bytes) -> str:
    """``data:image/png;base64,...`` (the OpenAI APIs' form)."""
    return f"data:{media_type(data) or 'application/octet-stream'};base64,{base64_text(data)}"
