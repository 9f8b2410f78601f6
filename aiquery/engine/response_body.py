"""Reading a response body within a size bound, decompressing it here so that the bound counts what is kept.

aiohttp's own decompression is turned off: before 3.13.3 it inflated each network chunk whole (a 2 GiB gzip
bomb in one go), and it decodes what is left in one piece when a response is released early. Here gzip and
deflate are inflated at most :data:`PIECE_BYTES` at a time and counted against the bound as they come, so memory
stays within the bound plus one piece whatever the ratio. Other encodings are never asked for
(:data:`ACCEPT_ENCODING`), so one that comes anyway is refused.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any

import aiohttp

__all__ = ["ACCEPT_ENCODING", "BodyTooLarge", "UnreadableBody", "describe_size", "read_body"]

ACCEPT_ENCODING = "gzip, deflate"
READ_BYTES = 1 << 16
"""Compressed bytes taken from the connection at a time."""
PIECE_BYTES = 1 << 20
"""Inflated bytes produced at a time."""
MAX_GZIP_MEMBERS = 16
"""Concatenated gzip members accepted in one body: each restart copies what is left of the chunk."""


class BodyTooLarge(Exception):
    """The body (after decompression) or its announced ``Content-Length`` passes the bound."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnreadableBody(Exception):
    """The body's ``Content-Encoding`` is not one we asked for, or its compressed data is corrupt."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def describe_size(size: int) -> str:
    """``16 MiB``, ``1.5 MiB``, ``4,096 bytes``: a byte count as a person would write it."""
    if size >= 1 << 20:
        mib = size / (1 << 20)
        return f"{mib:g} MiB" if mib == int(mib) else f"{mib:.1f} MiB"
    return f"{size:,} bytes"


async def read_body(response: aiohttp.ClientResponse, limit: int, *, truncate: bool = False) -> bytes:
    """The body of ``response``, decompressed, of at most ``limit`` bytes.

    Args:
        response: a response whose session does not decompress (``auto_decompress=False``).
        limit: bytes kept at most, counted after decompression.
        truncate: keep the first ``limit`` bytes of a longer body instead of failing (an error answer, whose
            first bytes say all that is kept of it).

    Raises:
        BodyTooLarge: the body, or its announced length, passes ``limit`` (never with ``truncate``).
        UnreadableBody: an encoding not asked for, or corrupt compressed data.
        aiohttp.ClientError, asyncio.TimeoutError: as the connection fails.
    """
    announced = response.content_length
    if announced is not None and announced > limit and not truncate:
        raise BodyTooLarge(f"the answer announces {describe_size(announced)} (Content-Length)")
    inflate = _Inflater.for_encoding(response.headers.get("Content-Encoding", ""))
    kept = bytearray()
    async for chunk in response.content.iter_chunked(READ_BYTES):
        pieces = inflate.pieces(chunk) if inflate is not None else (chunk,)
        for piece in pieces:
            kept += piece
            if len(kept) > limit:
                if truncate:
                    return bytes(kept[:limit])
                raise BodyTooLarge(f"reading stopped after {describe_size(len(kept))}")
    return bytes(kept)


class _Inflater:
    """gzip or deflate, inflated a piece at a time."""

    def __init__(self, encoding: str) -> None:
        self._encoding = encoding
        self._members = 0
        self._decompressor: Any = None

    @classmethod
    def for_encoding(cls, header: str) -> _Inflater | None:
        encoding = header.strip().lower()
        if encoding in ("", "identity"):
            return None
        if encoding in ("gzip", "x-gzip", "deflate"):
            return cls(encoding)
        raise UnreadableBody(f"the answer's Content-Encoding {header[:40]!r} was not asked for ({ACCEPT_ENCODING})")

    def pieces(self, data: bytes) -> Iterator[bytes]:
        """What ``data`` inflates to, in pieces of at most :data:`PIECE_BYTES`, each made only when asked for."""
        while data:
            if self._decompressor is None or self._decompressor.eof:
                data = self._start(data)
            try:
                piece = self._decompressor.decompress(data, PIECE_BYTES)
            except zlib.error as exc:
                raise UnreadableBody(f"the answer's {self._encoding} data is corrupt: {exc}") from None
            data = self._decompressor.unconsumed_tail or (
                self._decompressor.unused_data if self._decompressor.eof else b""
            )
            if piece:
                yield piece

    def _start(self, data: bytes) -> bytes:
        self._members += 1
        if self._members > MAX_GZIP_MEMBERS:
            raise UnreadableBody(f"the answer's {self._encoding} data has more than {MAX_GZIP_MEMBERS} parts")
        if self._encoding == "deflate":
            # RFC 9110 says zlib-wrapped; some servers send raw deflate. The zlib header's low nibble is 8.
            wbits = zlib.MAX_WBITS if data[0] & 0x0F == 8 else -zlib.MAX_WBITS
        else:
            wbits = 16 + zlib.MAX_WBITS
        self._decompressor = zlib.decompressobj(wbits)
        return data
