"""A small HTTP/1.1 server on ``asyncio.Protocol``.

aiohttp's web server costs several times more CPU per request than this, and the emulator must never be the
bottleneck of a benchmark. It supports what LLM clients send: keep-alive, pipelined requests (answered in
order), ``Content-Length`` bodies and ``Expect: 100-continue``. Chunked uploads are refused with 501.

The application is a callable that receives an :class:`Exchange` per request and answers it now or later
(:meth:`Exchange.later` schedules on the event loop, so a delayed answer costs a timer, not a thread). A
streamed body (:meth:`Exchange.stream`) is produced as the client reads it: the next chunk is written only
while the transport is not paused, so an endless body costs a chunk of memory, not the whole body.
"""

from __future__ import annotations

import asyncio
import http
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

__all__ = ["Application", "Exchange", "HTTPProtocol", "serve"]

logger = logging.getLogger(__name__)

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024

Application = Callable[["Exchange"], None]

_REASONS = {status.value: status.phrase for status in http.HTTPStatus}
_REASONS[529] = "Overloaded"  # Anthropic's status; not in the IANA registry


def _status_line(status: int) -> bytes:
    return f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\n".encode("latin-1")


_STATUS_LINES = {status: _status_line(status) for status in _REASONS}


class Exchange:
    """One request and the means to answer it once: respond, send raw bytes, drop, or hold.

    Attributes:
        method: the request method, e.g. ``POST``.
        path: the target without its query string.
        query: the query string (without ``?``), or empty.
        headers: request headers with lower-cased names (the last one wins when a name repeats).
        body: the request body.
        on_finish: called once when the exchange ends, however it ends (answered, dropped, client gone).
    """

    __slots__ = (
        "_protocol",
        "_timer",
        "body",
        "done",
        "headers",
        "keep_alive",
        "method",
        "on_finish",
        "path",
        "query",
    )

    def __init__(
        self,
        protocol: HTTPProtocol,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
        keep_alive: bool,
    ) -> None:
        self._protocol = protocol
        self._timer: asyncio.Handle | None = None
        self.method = method
        self.path, _, self.query = target.partition("?")
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive
        self.done = False
        self.on_finish: Callable[[Exchange], None] | None = None

    def respond(
        self,
        status: int,
        body: bytes,
        headers: Sequence[tuple[str, str]] = (),
        content_type: str = "application/json",
    ) -> None:
        """Send a complete response (ignored if the exchange already ended)."""
        if self.done:
            return
        head = [_STATUS_LINES.get(status) or _status_line(status)]
        head.append(b"Content-Type: %s\r\nContent-Length: %d\r\n" % (content_type.encode(), len(body)))
        for name, value in headers:
            head.append(f"{name}: {value}\r\n".encode("latin-1"))
        if not self.keep_alive:
            head.append(b"Connection: close\r\n")
        head.append(b"\r\n")
        head.append(body)
        self._protocol.write(b"".join(head))
        self._end(close=not self.keep_alive)

    def respond_truncated(self, status: int, body: bytes, sent_bytes: int) -> None:
        """Announce all of ``body`` in ``Content-Length``, send only its first ``sent_bytes``, then close."""
        if self.done:
            return
        head = _STATUS_LINES.get(status) or _status_line(status)
        head += b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
        self._protocol.write(head + body[:sent_bytes])
        self._end(close=True)

    def stream(
        self,
        status: int,
        chunks: Iterator[bytes],
        *,
        length: int | None = None,
        interval_s: float = 0.0,
        content_type: str = "application/json",
    ) -> None:
        """Send a response whose body is ``chunks``, each written once the client has taken the previous ones.

        Args:
            status: the HTTP status.
            chunks: the body's pieces; the body ends when they do (never, for an endless iterator).
            length: the ``Content-Length`` to announce; None sends the body chunked.
            interval_s: a pause between two chunks (a slow trickle), else as fast as the client reads.
            content_type: the ``Content-Type`` header.
        """
        if self.done:
            return
        head = [_STATUS_LINES.get(status) or _status_line(status), b"Content-Type: %s\r\n" % content_type.encode()]
        head.append(b"Transfer-Encoding: chunked\r\n" if length is None else b"Content-Length: %d\r\n" % length)
        head.append(b"\r\n" if self.keep_alive else b"Connection: close\r\n\r\n")
        self._protocol.write(b"".join(head))
        _BodyPump(self, chunks, chunked=length is None, interval_s=interval_s).next()

    def drop(self) -> None:
        """Close the connection without answering."""
        if not self.done:
            self._end(close=True)

    def write(self, data: bytes) -> None:
        """Write part of a streamed body."""
        if not self.done:
            self._protocol.write(data)

    def end(self) -> None:
        """End a streamed response (the connection closes unless the client keeps it alive)."""
        if not self.done:
            self._end(close=not self.keep_alive)

    def wait(self, delay_s: float, callback: Callable[[], None]) -> None:
        """Run ``callback`` after ``delay_s`` seconds (0: on the next loop turn), unless the exchange ends first."""
        loop = self._protocol.loop
        self._timer = loop.call_later(delay_s, callback) if delay_s > 0 else loop.call_soon(callback)

    def when_writable(self, callback: Callable[[], None]) -> bool:
        """Whether the client is taking data now; if not, ``callback`` runs once it is again."""
        return self._protocol.when_writable(callback)

    def later(self, delay_s: float, callback: Callable[..., None], *args: Any) -> None:
        """Run ``callback(*args)`` after ``delay_s`` seconds, unless the client goes away first."""
        if delay_s <= 0:
            callback(*args)
            return
        self._timer = self._protocol.loop.call_later(delay_s, callback, *args)

    def _end(self, *, close: bool) -> None:
        self.done = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.on_finish is not None:
            self.on_finish(self)
        self._protocol.finished(self, close=close)

    def lost(self) -> None:
        """The connection went away before the exchange ended (called by the protocol)."""
        if not self.done:
            self._end(close=True)


class _BodyPump:
    """Writes a streamed body one chunk at a time, pausing while the transport's buffer is full."""

    __slots__ = ("_chunked", "_chunks", "_exchange", "_interval_s")

    def __init__(self, exchange: Exchange, chunks: Iterator[bytes], *, chunked: bool, interval_s: float) -> None:
        self._exchange = exchange
        self._chunks = chunks
        self._chunked = chunked
        self._interval_s = interval_s

    def next(self) -> None:
        exchange = self._exchange
        if exchange.done or not exchange.when_writable(self.next):
            return
        chunk = next(self._chunks, None)
        if chunk is None:
            if self._chunked:
                exchange.write(b"0\r\n\r\n")
            exchange.end()
            return
        if chunk:
            exchange.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if self._chunked else chunk)
        exchange.wait(self._interval_s, self.next)


class HTTPProtocol(asyncio.Protocol):
    """One client connection: parses requests in order and hands each to the application."""

    def __init__(
        self, app: Application, loop: asyncio.AbstractEventLoop, connections: set[HTTPProtocol] | None = None
    ) -> None:
        self.loop = loop
        self._app = app
        self._connections = connections
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._head: tuple[str, str, dict[str, str], int, bool] | None = None
        self._current: Exchange | None = None
        self._parsing = False
        self._body_start = 0
        self._paused = False
        self._on_resume: Callable[[], None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport implements asyncio.Transport's methods without subclassing it, so an
        # isinstance check would refuse every connection whenever uvloop is installed.
        self._transport = cast(asyncio.Transport, transport)
        if self._connections is not None:
            self._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._connections is not None:
            self._connections.discard(self)
        if self._current is not None:
            self._current.lost()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._current is None and not self._parsing:
            self._parse()

    def write(self, data: bytes) -> None:
        """Write to the client if it is still connected."""
        if self._transport is not None:
            self._transport.write(data)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        callback, self._on_resume = self._on_resume, None
        if callback is not None:
            callback()

    def when_writable(self, callback: Callable[[], None]) -> bool:
        """Whether the transport takes data now; if not, ``callback`` runs when it does again."""
        if not self._paused:
            return True
        self._on_resume = callback
        return False

    def finished(self, exchange: Exchange, *, close: bool) -> None:
        """The current exchange ended: close, or go on with any pipelined request already buffered."""
        if exchange is not self._current:
            return
        self._current = None
        if close:
            self._close()
        elif self._buffer and not self._parsing:
            self._parse()

    def close(self) -> None:
        """Close the connection; an exchange in progress ends unanswered."""
        if self._current is not None:
            self._current.lost()
        self._close()

    def _close(self) -> None:
        self._buffer.clear()
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def _parse(self) -> None:
        # Loop rather than recurse: a synchronous answer re-enters `finished`, which must not parse again.
        self._parsing = True
        try:
            while self._current is None and self._transport is not None and self._buffer:
                if self._head is None and not self._read_head():
                    return
                assert self._head is not None
                method, target, headers, length, keep_alive = self._head
                end = self._body_start + length
                if len(self._buffer) < end:
                    return
                body = bytes(self._buffer[self._body_start : end])
                del self._buffer[:end]
                self._head = None
                exchange = self._current = Exchange(self, method, target, headers, body, keep_alive)
                try:
                    self._app(exchange)
                except Exception:
                    # A bug in the application must cost one request a 500, not the whole connection.
                    logger.exception("error while handling %s %s", method, target)
                    exchange.respond(500, b'{"error_code":"INTERNAL_ERROR","message":"emulator error"}')
        finally:
            self._parsing = False

    def _read_head(self) -> bool:
        """Parse a complete request head from the buffer; False if more bytes are needed or it was refused."""
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEAD_BYTES:
                self._refuse(431, "request head too large")
            return False
        lines = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
        request_line = lines[0].split(" ")
        if len(request_line) != 3 or not request_line[2].startswith("HTTP/1."):
            self._refuse(400, "malformed request line")
            return False
        method, target, version = request_line
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                self._refuse(400, "malformed header line")
                return False
            headers[name.strip().lower()] = value.strip()
        if "transfer-encoding" in headers:
            self._refuse(501, "chunked request bodies are not supported; send Content-Length")
            return False
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            self._refuse(413 if length > 0 else 400, "bad or too large Content-Length")
            return False
        connection = headers.get("connection", "").lower()
        keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
        if headers.get("expect", "").lower() == "100-continue":
            self.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self._body_start = end + 4
        self._head = (method, target, headers, length, keep_alive)
        return True

    def _refuse(self, status: int, message: str) -> None:
        body = f'{{"error_code":"BAD_REQUEST","message":"{message}"}}'.encode()
        self.write(_STATUS_LINES[status] + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        self._close()


async def serve(app: Application, host: str, port: int, connections: set[HTTPProtocol] | None = None) -> asyncio.Server:
    """Listen on ``host:port`` (0 picks a free port) and serve ``app``; asyncio sets TCP_NODELAY itself.

    Args:
        app: called with each request.
        host: the address to listen on.
        port: the port, or 0 for a free one.
        connections: if given, kept up to date with the open connections (to close them at shutdown).
    """
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: HTTPProtocol(app, loop, connections), host, port, backlog=2048)
