"""Decoding an untrusted JSON body without unbounded recursion.

Python's decoder recurses once per nesting level, so a valid body nested 200,000 deep raises ``RecursionError``
(not a ``ValueError``) wherever it is decoded. :func:`decode_json_body` measures the nesting first, without
recursion, and refuses a body deeper than :data:`MAX_JSON_DEPTH`: no API answers anything near that deep.

Numbers are left as Python's decoder reads them: integers of any length up to the interpreter's digit limit
(longer ones are a ``ValueError``), and floats past the float range as ``inf``. Whether such a number is usable is
the reading adapter's question (an embedding value must be finite; a token count past
:data:`~aiquery.apis.decoding.MAX_TOKEN_COUNT` is unknown).
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

from aiquery.apis.base import MalformedResponse

__all__ = ["MAX_JSON_DEPTH", "JSONTooDeep", "decode_json_body", "json_depth_exceeds"]

MAX_JSON_DEPTH = 512
"""Deepest nesting of arrays and objects decoded; far below the interpreter's recursion limit."""

# A JSON string, escapes included: brackets inside strings do not nest anything.
_BYTES_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_TEXT_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKETS = b"[]{}"
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in _BRACKETS)
_BLOCK = 1 << 16
_STEP = [0] * 256
for _byte in b"[{":
    _STEP[_byte] = 1
for _byte in b"]}":
    _STEP[_byte] = -1


class JSONTooDeep(MalformedResponse):
    """A body nested deeper than :data:`MAX_JSON_DEPTH`: the same request would bring the same answer."""


def json_depth_exceeds(data: bytes | str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether arrays and objects in ``data`` nest deeper than ``limit`` (strings skipped; no recursion).

    Malformed input is measured as well as it can be; the decoder then refuses it for what it is.
    """
    if isinstance(data, str):
        if data.count("[") + data.count("{") <= limit:
            return False  # the usual case, decided at C speed
        data = _TEXT_STRING.sub("", data).encode("utf-8", "surrogatepass")
    else:
        if data.count(b"[") + data.count(b"{") <= limit:
            return False
        data = _BYTES_STRING.sub(b"", data)
    structure = data.translate(None, _NOT_BRACKETS)
    depth = 0
    # C-level loops over blocks, so that a body deep from its start is refused after its first block.
    for start in range(0, len(structure), _BLOCK):
        running = list(accumulate(map(_STEP.__getitem__, structure[start : start + _BLOCK]), initial=depth))
        if max(running) > limit:
            return True
        depth = running[-1]
    return False


def decode_json_body(data: bytes | str) -> Any:
    """``data`` decoded as JSON.

    Raises:
        JSONTooDeep: nested deeper than :data:`MAX_JSON_DEPTH` (a :class:`MalformedResponse`).
        ValueError: not JSON (``json.JSONDecodeError``, or ``UnicodeDecodeError`` for bytes in no UTF encoding).
    """
    if json_depth_exceeds(data):
        raise JSONTooDeep(f"the body nests arrays or objects more than {MAX_JSON_DEPTH} deep")
    try:
        return json.loads(data)
    except RecursionError:
        # Only when the caller's own stack is already deep: the body is refused, the caller goes on.
        raise JSONTooDeep(f"the body nests too deep to decode here (at most {MAX_JSON_DEPTH})") from None
