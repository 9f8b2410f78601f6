"""The coordinator's wire protocol: length-prefixed frames over one TCP connection per worker process.

A frame is ``!II`` (length of the metadata, length of the payload), the metadata as compact JSON, and the
payload as raw bytes. Usage records travel in the payload as the journal's own lines, so the driver appends
them to its journal without decoding them; the metadata says whose they are.

The connection opens with a mutual proof of the application's secret (:mod:`.handshake`): the coordinator
sends a nonce, the worker answers with its own nonce and an HMAC of both under the secret, and the
coordinator's welcome carries its own HMAC of both, which the worker checks before it sends anything else. The
secret itself never crosses the wire; a peer that does not prove it is refused and closed before any other
frame is read, and until then frames are small (:data:`.handshake.PRE_AUTH_FRAME_BYTES`). Every later frame is
a request (``seq`` numbers it) answered by one reply (``re`` names it); a sync that asks the answer store is
answered once the store has answered or its deadline has passed, so a reply may overtake an earlier request's.

Request ``op`` values:

- ``sync``: everything a worker has for the shared state, each part optional: ``b`` (request ids whose
  record heads fill the first ``bl`` payload bytes, one per line: begun, to be journaled before they are
  sent), ``e`` (request ids whose complete lines fill the rest of the payload: ended), ``x`` (request ids
  begun and then not sent after all: not recorded), ``demand``
  (per endpoint: calls and tokens waiting, and the endpoint's configured budgets), ``seen`` (per endpoint:
  answers, 429s and requests sent since the last sync), ``rows`` (per query: progress counters). The reply
  carries ``lease``: per endpoint, the request and token rates this worker may use now; and ``stop``: the task
  attempts among the begins' whose job failed or was cancelled (their begins were not journaled: those requests
  are not sent).
- ``bye``: the worker is shutting down cleanly.
"""

from __future__ import annotations

import json
import secrets
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiquery.config import Secret

__all__ = [
    "HEADER",
    "PROTOCOL_VERSION",
    "CoordinatorAddress",
    "FrameReader",
    "encode_frame",
    "new_secret",
]

PROTOCOL_VERSION = 2
HEADER = struct.Struct("!II")
MAX_META_BYTES = 1 << 20
MAX_PAYLOAD_BYTES = 64 << 20
"""A frame larger than this is a protocol error (a worker sends its records in parts well below it)."""


@dataclass(frozen=True, kw_only=True)
class CoordinatorAddress:
    """How a worker reaches its application's coordinator; travels in the query plan like an endpoint's token."""

    host: str
    port: int
    secret: Secret = field(repr=False)
    fingerprint: str | None = None
    """SHA-256 of the coordinator's TLS certificate (hex) when its traffic is encrypted, else None."""
    application: str = ""
    """The Spark application id (names the worker's local fallback journal)."""
    parallelism: int = 1
    """Concurrent tasks of the application: a worker cut off from the driver uses 1/parallelism of a budget."""
    same_machine: bool = False
    """The workers run on the driver's machine (a local master): they journal their requests straight into the
    driver's usage spool directory, which is as safe as the driver's acknowledgement and costs no round trip
    (see :mod:`aiquery.coordinator.journaling`)."""
    driver_pid: int = 0
    """The driver's process id when ``same_machine`` (0 otherwise): a worker that loses its connection checks
    whether the driver is gone, and then sends nothing more (nobody is left to take the answers)."""


def new_secret() -> Secret:
    """A fresh random per-application secret."""
    return Secret(secrets.token_hex(32))


def encode_frame(meta: dict[str, Any], payload: bytes = b"") -> bytes:
    """One frame: header, metadata, payload."""
    encoded = json.dumps(meta, separators=(",", ":")).encode()
    return HEADER.pack(len(encoded), len(payload)) + encoded + payload


class ProtocolError(Exception):
    """The peer sent something that is not a frame of this protocol."""


class FrameReader:
    """Cuts a byte stream into frames; feed it what arrives, then iterate the complete frames.

    Args:
        max_meta: the largest metadata accepted (until the peer is authenticated, a few KiB: see
            :meth:`trust`).
        max_payload: the largest payload accepted.
    """

    __slots__ = ("_buffer", "max_meta", "max_payload")

    def __init__(self, max_meta: int = MAX_META_BYTES, max_payload: int = MAX_PAYLOAD_BYTES) -> None:
        self._buffer = bytearray()
        self.max_meta = max_meta
        self.max_payload = max_payload

    def trust(self) -> None:
        """The peer proved the secret: accept frames up to the protocol's limits from now on."""
        self.max_meta = MAX_META_BYTES
        self.max_payload = MAX_PAYLOAD_BYTES

    def feed(self, data: bytes) -> Iterator[tuple[dict[str, Any], bytes]]:
        """Add ``data`` and yield every frame now complete.

        Raises:
            ProtocolError: a frame is larger than the protocol allows or its metadata is not a JSON object.
        """
        buffer = self._buffer
        buffer += data
        start = 0
        size = HEADER.size
        try:
            while len(buffer) - start >= size:
                meta_length, payload_length = HEADER.unpack_from(buffer, start)
                # Checked on the header alone: a frame too large is refused before its body is buffered.
                if meta_length > self.max_meta or payload_length > self.max_payload:
                    raise ProtocolError(f"frame too large ({meta_length} + {payload_length} bytes)")
                end = start + size + meta_length + payload_length
                if len(buffer) < end:
                    break
                meta_end = start + size + meta_length
                try:
                    meta = json.loads(bytes(buffer[start + size : meta_end]))
                except ValueError:
                    raise ProtocolError("frame metadata is not JSON") from None
                if not isinstance(meta, dict):
                    raise ProtocolError("frame metadata is not a JSON object")
                yield meta, bytes(buffer[meta_end:end])
                start = end
        finally:
            del buffer[:start]
