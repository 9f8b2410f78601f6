"""HTTP transport: one aiohttp session per (origin, TLS setting), and the one place aiohttp errors are mapped.

The transport sends bytes and returns bytes; it knows nothing about wire formats, retries or limits.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp

from aiquery.config import DEFAULT_MAX_RESPONSE_BYTES
from aiquery.engine.response_body import ACCEPT_ENCODING, BodyTooLarge, UnreadableBody, describe_size, read_body

__all__ = ["HTTPResponse", "NoResponse", "Transport"]

CONNECT_TIMEOUT_S = 10.0
MIN_TIMEOUT_S = 0.1
"""The shortest timeout a request is given: an attempt with less time than this left is not started."""
ERROR_BODY_BYTES = 1 << 16
"""Bytes of an error answer read: its message is in its first bytes, and errors keep 2,000 characters of it."""
CONTENT_TYPE_CHARS = 255
"""Characters of a response's Content-Type kept for the ledger: a media type and its parameters fit, and a
server's header of kilobytes does not fill the usage table."""
NOT_RETRYABLE = frozenset({"tls", "too_large", "unreadable"})
"""Failures the same request would meet again: a certificate, and an answer too large or in a form not asked for
(a retry would pay for the same answer and throw it away again)."""


@dataclass(frozen=True, slots=True)
class HTTPResponse:
    """A complete response: status, lower-cased headers, body, and timings in seconds.

    ``headers`` is empty for a success (only error handling reads them); ``content_type`` is always read.
    """

    status: int
    headers: dict[str, str]
    body: bytes
    time_to_first_byte: float
    elapsed: float
    content_type: str | None = None


class NoResponse(Exception):
    """No complete response arrived.

    Attributes:
        kind: ``timeout``, ``connect`` (refused, unreachable, DNS), ``tls`` (certificate), ``dropped``
            (closed mid-request), ``truncated`` (body shorter than announced), ``too_large`` (body past the
            bound) or ``unreadable`` (an encoding not asked for, corrupt compressed data).
        elapsed: seconds spent before giving up.
        time_to_first_byte: seconds until headers arrived, if they did.
        status: the HTTP status, when headers arrived before the failure.
        content_type: the response's Content-Type, when headers arrived before the failure.
    """

    def __init__(
        self,
        kind: str,
        message: str,
        elapsed: float,
        time_to_first_byte: float | None = None,
        status: int | None = None,
        content_type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.elapsed = elapsed
        self.time_to_first_byte = time_to_first_byte
        self.status = status
        self.content_type = content_type

    @property
    def retryable(self) -> bool:
        """Whether another attempt may fare better (see :data:`NOT_RETRYABLE`)."""
        return self.kind not in NOT_RETRYABLE


class Transport:
    """Sends POST requests over pooled keep-alive connections. Use from one event loop."""

    def __init__(self) -> None:
        self._sessions: dict[tuple[str, bool], aiohttp.ClientSession] = {}
        self._by_url: dict[tuple[str, bool], aiohttp.ClientSession] = {}
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    def _session(self, url: str, verify_tls: bool) -> aiohttp.ClientSession:
        session = self._by_url.get((url, verify_tls))
        if session is not None and not session.closed:
            return session
        session = self._origin_session(url, verify_tls)
        if len(self._by_url) < 1024:
            self._by_url[(url, verify_tls)] = session
        return session

    def _origin_session(self, url: str, verify_tls: bool) -> aiohttp.ClientSession:
        parts = urlsplit(url)
        key = (f"{parts.scheme}://{parts.netloc}", verify_tls)
        session = self._sessions.get(key)
        if session is None or session.closed:
            # limit=0: the engine's own concurrency bound is the only one (aiohttp's default caps at 100).
            connector = aiohttp.TCPConnector(
                limit=0,
                ttl_dns_cache=300,
                keepalive_timeout=30.0,
                ssl=verify_tls,
            )
            # Bodies are decompressed by read_body, within the endpoint's bound (see response_body).
            session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                headers={"Accept-Encoding": ACCEPT_ENCODING},
                trust_env=False,
            )
            self._sessions[key] = session
        return session

    def _timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        # Rounded to share the objects; never to 0, which aiohttp reads as "no timeout at all" (a call with
        # 0.04 s of its deadline left would wait on a hung endpoint for as long as it hangs).
        rounded = max(round(seconds, 1), MIN_TIMEOUT_S)
        timeout = self._timeouts.get(rounded)
        if timeout is None:
            timeout = aiohttp.ClientTimeout(total=rounded, connect=min(rounded, CONNECT_TIMEOUT_S))
            if len(self._timeouts) < 4096:
                self._timeouts[rounded] = timeout
        return timeout

    async def post(
        self,
        url: str,
        headers: dict[str, str],
        body: bytes,
        *,
        timeout: float,
        verify_tls: bool = True,
        max_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> HTTPResponse:
        """POST ``body`` and read the whole response, of at most ``max_bytes`` after decompression.

        An error answer (status 300 and up) is cut to its first :data:`ERROR_BODY_BYTES` instead.

        Raises:
            NoResponse: timeout, connection failure, TLS failure, dropped or truncated response, an answer past
                ``max_bytes`` or one that cannot be decompressed.
        """
        session = self._session(url, verify_tls)
        started = time.perf_counter()
        ttfb: float | None = None
        status: int | None = None
        content_type: str | None = None
        try:
            async with session.post(url, data=body, headers=headers, timeout=self._timeout(timeout)) as response:
                ttfb = time.perf_counter() - started
                status = response.status
                content_type = _content_type(response)
                payload = await _read_or_close(response, max_bytes)
                return HTTPResponse(
                    status=status,
                    # Only error handling reads headers (Retry-After, x-should-retry): skip the copy on success.
                    headers={} if status < 300 else {k.lower(): v for k, v in response.headers.items()},
                    body=payload,
                    time_to_first_byte=ttfb,
                    elapsed=time.perf_counter() - started,
                    content_type=content_type,
                )
        except (
            BodyTooLarge,
            UnreadableBody,
            asyncio.TimeoutError,
            aiohttp.ClientError,
            ConnectionError,
            ssl.SSLError,
        ) as exc:
            raise _no_response(exc, started, ttfb, status, content_type, timeout, max_bytes) from None

    async def aclose(self) -> None:
        """Close every session and its connections."""
        sessions, self._sessions = list(self._sessions.values()), {}
        self._by_url.clear()
        for session in sessions:
            await session.close()


async def _read_or_close(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    error = response.status >= 300
    try:
        payload = await read_body(response, min(max_bytes, ERROR_BODY_BYTES) if error else max_bytes, truncate=error)
    except (BodyTooLarge, UnreadableBody):
        response.close()  # the rest is never read: the connection cannot serve another request
        if error:
            return b""  # the status says what happened, and whether to retry
        raise
    if not response.content.at_eof():
        response.close()
    return payload


def _no_response(
    exc: BaseException,
    started: float,
    ttfb: float | None,
    status: int | None,
    content_type: str | None,
    timeout: float,
    max_bytes: int,
) -> NoResponse:
    """The failure a request met, as :class:`NoResponse` (in order: a subclass before its base class)."""
    if isinstance(exc, BodyTooLarge):
        message = f"answer larger than max_response_bytes ({describe_size(max_bytes)}): {exc.message}"
        return NoResponse("too_large", message, _since(started), ttfb, status, content_type)
    if isinstance(exc, UnreadableBody):
        return NoResponse("unreadable", exc.message, _since(started), ttfb, status, content_type)
    if isinstance(exc, asyncio.TimeoutError):
        return NoResponse("timeout", f"no response within {timeout:g} s", _since(started), ttfb)
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return NoResponse("tls", f"TLS certificate rejected: {exc.certificate_error}", _since(started))
    if isinstance(exc, aiohttp.ClientConnectorError):
        message = f"cannot connect to {exc.host}:{exc.port}: {exc.strerror or exc}"
        return NoResponse("connect", message, _since(started))
    if isinstance(exc, aiohttp.ClientPayloadError):
        return NoResponse("truncated", f"response body cut short: {_first_line(exc)}", _since(started), ttfb)
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, ConnectionError)):
        return NoResponse("dropped", f"connection dropped: {_first_line(exc)}", _since(started), ttfb)
    if isinstance(exc, ssl.SSLError):
        return NoResponse("tls", f"TLS error: {exc.reason}", _since(started))
    return NoResponse("dropped", f"HTTP client error: {_first_line(exc)}", _since(started), ttfb)


def _content_type(response: aiohttp.ClientResponse) -> str | None:
    value = response.headers.get("Content-Type")
    return None if value is None else value[:CONTENT_TYPE_CHARS]


def _since(started: float) -> float:
    return time.perf_counter() - started


def _first_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:300]
