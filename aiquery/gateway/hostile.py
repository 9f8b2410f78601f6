"""Hostile answers: status 200 bodies that a client reading without bounds cannot survive.

Each kind wraps the answer the request would have had, so a client that bounds its reads and its parsing
still sees a valid response shape where one exists (only ``html`` and ``not_json`` carry no answer at all):

- ``deep_json``: valid JSON with an extra member nested :data:`DEEP_JSON_LEVELS` arrays deep.
- ``huge_numbers``: every token count is a 400-digit integer, every vector starts with ``1e400`` and a
  400-digit integer (past a float's range either way).
- ``gzip_bomb``: ``Content-Encoding: gzip``, about 2 MB on the wire inflating to :data:`GZIP_BOMB_BYTES` of
  whitespace before the answer (the compressed padding is built once per process and shared).
- ``endless``: a chunked body that never ends (an array of zeros), sent as fast as the client reads.
- ``oversized``: ``Content-Length`` :data:`OVERSIZED_BYTES`, whitespace then the answer, produced as it is sent.
- ``trickle``: the answer one byte at a time, ``trickle_ms`` apart.
- ``html``: a ``text/html`` login page, as a proxy or captive portal answers.
- ``not_json``: an HTML error page under ``Content-Type: application/json``.

The streamed kinds never hold their body: the server writes the next chunk only when the client has read the
previous ones (see :meth:`aiquery.gateway.http_server.Exchange.stream`).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import struct
import zlib
from collections.abc import Callable, Iterator
from typing import Any

from aiquery.gateway.http_server import Exchange

__all__ = [
    "DEEP_JSON_LEVELS",
    "GZIP_BOMB_BYTES",
    "HUGE_INTEGER",
    "OVERSIZED_BYTES",
    "deep_json_body",
    "gzip_bomb",
    "hostile_kind_for",
    "huge_numbers_body",
    "send_hostile",
]

DEEP_JSON_LEVELS = 200_000
HUGE_INTEGER = "9" * 400
HUGE_FLOAT = "1e400"
GZIP_BOMB_BYTES = 2 * 1024**3
OVERSIZED_BYTES = 512 * 1024**2
STREAM_CHUNK_BYTES = 64 * 1024
_PADDING_CHUNK_BYTES = 1024**2

HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head>\n<body><h1>Sign in to continue</h1>\n"
    b'<form method="post" action="/login"><input name="user"><input name="password" type="password">'
    b"</form></body></html>\n"
)
PROXY_ERROR_PAGE = (
    b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center>"
    b"<hr><center>nginx</center></body></html>\n"
)

_encode = json.JSONEncoder(separators=(",", ":")).encode
# The encoder writes an infinite float as `Infinity` (not JSON): a placeholder string (no answer holds a NUL)
# stands in for it, replaced by the literal afterwards.
_HUGE_FLOAT_MARK = "\x00huge-float"
_HUGE_FLOAT_MARK_JSON = _encode(_HUGE_FLOAT_MARK)


def hostile_kind_for(body: bytes, share: float, kinds: tuple[str, ...]) -> str | None:
    """The hostile kind a request with this ``body`` meets under ``share``, or None for a normal answer.

    A hash of the body decides, so the choice is the same on every attempt and in any arrival order.
    """
    if share <= 0 or not kinds:
        return None
    digest = hashlib.blake2b(body, digest_size=16).digest()
    if int.from_bytes(digest[:8], "big") / 2**64 >= share:
        return None
    return kinds[int.from_bytes(digest[8:], "big") % len(kinds)]


def deep_json_body(answer: dict[str, Any], levels: int = DEEP_JSON_LEVELS) -> bytes:
    """``answer`` with a first member ``trace`` holding arrays nested ``levels`` deep: valid JSON."""
    rest = _encode(answer).encode()[1:]
    return b'{"trace":' + b"[" * levels + b"]" * levels + (b"," + rest if rest != b"}" else rest)


def huge_numbers_body(answer: dict[str, Any]) -> bytes:
    """``answer`` with its token counts and the head of its vectors past a float's range."""
    return _encode(_swell(answer)).replace(_HUGE_FLOAT_MARK_JSON, HUGE_FLOAT).encode()


def _swell(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {name: _swell(item, name) for name, item in value.items()}
    if isinstance(value, list):
        if len(value) >= 2 and all(isinstance(item, float) for item in value):
            return [_HUGE_FLOAT_MARK, int(HUGE_INTEGER), *value[2:]]
        return [_swell(item, key) for item in value]
    if isinstance(value, int) and not isinstance(value, bool) and "token" in key.lower():
        return int(HUGE_INTEGER)
    return value


def gzip_bomb(answer: bytes, inflated_padding: int = GZIP_BOMB_BYTES) -> bytes:
    """A gzip member inflating to ``inflated_padding`` spaces (a multiple of 1 MiB) followed by ``answer``."""
    padding, padding_crc = _deflated_spaces(inflated_padding)
    tail = zlib.compressobj(9, zlib.DEFLATED, -15)
    deflated_answer = tail.compress(answer) + tail.flush()
    size = (inflated_padding + len(answer)) & 0xFFFFFFFF
    trailer = struct.pack("<II", zlib.crc32(answer, padding_crc), size)
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + padding + deflated_answer + trailer


@functools.cache
def _deflated_spaces(total: int) -> tuple[bytes, int]:
    """Raw deflate blocks of ``total`` spaces, and their CRC-32 (about 0.5 s for 2 GiB, once per process).

    A full flush ends a block with nothing to refer back to, so one compressed mebibyte repeated is a valid
    stream of many: the padding costs about 1 KB per inflated MiB.
    """
    if total % _PADDING_CHUNK_BYTES:
        raise ValueError(f"the padding must be a multiple of {_PADDING_CHUNK_BYTES} bytes, got {total}")
    chunk = b" " * _PADDING_CHUNK_BYTES
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(total // _PADDING_CHUNK_BYTES):
        crc = zlib.crc32(chunk, crc)
    return block * (total // _PADDING_CHUNK_BYTES), crc


def endless_chunks() -> Iterator[bytes]:
    """The start of a JSON array of zeros that never closes."""
    return itertools.chain([b'{"data":['], itertools.repeat(b"0," * (STREAM_CHUNK_BYTES // 2)))


def oversized_chunks(answer: bytes, total: int = OVERSIZED_BYTES) -> Iterator[bytes]:
    """``total`` bytes: leading whitespace, then ``answer`` (valid JSON, if one reads it all)."""
    padding = total - len(answer)
    whole, rest = divmod(padding, STREAM_CHUNK_BYTES)
    spaces = b" " * STREAM_CHUNK_BYTES
    return itertools.chain(itertools.repeat(spaces, whole), [spaces[:rest], answer])


def trickle_chunks(answer: bytes) -> Iterator[bytes]:
    """``answer`` one byte at a time."""
    return (answer[index : index + 1] for index in range(len(answer)))


def send_hostile(exchange: Exchange, kind: str, answer: dict[str, Any], trickle_s: float) -> None:
    """Answer ``exchange`` with the hostile ``kind`` built around ``answer`` (a rendered success body)."""
    _SENDERS[kind](exchange, answer, trickle_s)


def _send_deep_json(exchange: Exchange, answer: dict[str, Any], trickle_s: float) -> None:
    exchange.respond(200, deep_json_body(answer))


def _send_huge_numbers(exchange: Exchange, answer: dict[str, Any], trickle_s: float) -> None:
    exchange.respond(200, huge_numbers_body(answer))


def _send_gzip_bomb(exchange: Exchange, answer: dict[str, Any], trickle_s: float) -> None:
    exchange.respond(200, gzip_bomb(_encode(answer).encode()), [("Content-Encoding", "gzip")])


def _send_endless(exchange: Exchange, answer: dict[str, Any], trickle_s: float) -> None:
    exchange.stream(200, endless_chunks())


def _send_oversized(exchange: Exchange, answer: dict[str, Any], trickle_s: float) -> None:
    exchange.stream(200, oversized_chunks(_encode(answer).encode()), length=OVERSIZED_BYTES)


def _send_trickle(exchange: Exchange, answer: dict[str, Any], trickle_s: float) -> None:
    body = _encode(answer).encode()
    exchange.stream(200, trickle_chunks(body), length=len(body), interval_s=trickle_s)


def _send_html(exchange: Exchange, answer: dict[str, Any], trickle_s: float) -> None:
    exchange.respond(200, HTML_PAGE, content_type="text/html; charset=utf-8")


def _send_not_json(exchange: Exchange, answer: dict[str, Any], trickle_s: float) -> None:
    exchange.respond(200, PROXY_ERROR_PAGE)


_SENDERS: dict[str, Callable[[Exchange, dict[str, Any], float], None]] = {
    "deep_json": _send_deep_json,
    "huge_numbers": _send_huge_numbers,
    "gzip_bomb": _send_gzip_bomb,
    "endless": _send_endless,
    "oversized": _send_oversized,
    "trickle": _send_trickle,
    "html": _send_html,
    "not_json": _send_not_json,
}
