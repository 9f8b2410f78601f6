"""HTTP for the batch APIs: one aiohttp session, bounded reads of every answer, results streamed line by line.

The peer is treated as hostile: a JSON answer is read up to ``max_json_bytes``, a results file one line at a time
with each line bounded by ``max_line_bytes`` (so a results file of any size costs one line of memory), and
decoding never recurses without bound (:func:`aiquery.apis.json_body.decode_json_body`). Answers are asked for
uncompressed, so a compressed bomb cannot be inflated behind the bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp

from aiquery.apis.base import MalformedResponse
from aiquery.apis.json_body import decode_json_body
from aiquery.config import DEFAULT_MAX_RESPONSE_BYTES
from aiquery.provider_batches.records import ProviderBatchError

__all__ = ["DEFAULT_MAX_JSON_BYTES", "ERROR_TEXT_CHARS", "ProviderHTTP"]

DEFAULT_MAX_JSON_BYTES = 64 * 1024 * 1024
"""Largest JSON answer read (a batch object, a page of a listing, an inline Gemini result)."""
ERROR_TEXT_CHARS = 2_000
"""Characters of an error answer kept in the exception."""
READ_BYTES = 1 << 16
DEFAULT_TIMEOUT_S = 300.0


class ProviderHTTP:
    """The batch clients' HTTP: JSON calls and streamed result lines.

    Each call says whether to check the server's certificate (its endpoint's ``verify_tls``); one session is kept
    for each choice.

    Args:
        timeout_s: seconds one call may take (a results download is one call per file).
        max_json_bytes: bytes of a JSON answer read at most.
        max_line_bytes: bytes of one results line read at most (an answer, as ``max_response_bytes`` bounds it).
    """

    def __init__(
        self,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_json_bytes: int = DEFAULT_MAX_JSON_BYTES,
        max_line_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.max_json_bytes = max_json_bytes
        self.max_line_bytes = max_line_bytes
        self._sessions: dict[bool, aiohttp.ClientSession] = {}

    def _client(self, verify_tls: bool) -> aiohttp.ClientSession:
        session = self._sessions.get(verify_tls)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(ssl=verify_tls)
            session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, auto_decompress=False, trust_env=False
            )
            self._sessions[verify_tls] = session
        return session

    async def call(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        *,
        json_body: Any = None,
        data: Any = None,
        verify_tls: bool = True,
    ) -> tuple[Any, dict[str, str]]:
        """The decoded JSON answer and its lower-cased headers.

        Raises:
            ProviderBatchError: no answer, a non-2xx status (with the provider's text), or an unreadable body.
        """
        sent = {**headers, "Accept-Encoding": "identity"}
        try:
            async with self._client(verify_tls).request(
                method, url, headers=sent, json=json_body, data=data
            ) as response:
                body = await _read(response, self.max_json_bytes, truncate=response.status >= 300)
                answer_headers = {name.lower(): value for name, value in response.headers.items()}
                status = response.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            raise ProviderBatchError(f"no answer: {type(error).__name__}: {error}", url=url) from None
        if status >= 300:
            text = body.decode("utf-8", "replace")[:ERROR_TEXT_CHARS]
            raise ProviderBatchError(text or "(empty body)", status=status, url=url)
        return (decode(body, url) if body.strip() else {}), answer_headers

    async def lines(self, url: str, headers: Mapping[str, str], *, verify_tls: bool = True) -> AsyncIterator[Any]:
        """Each non-empty line of a JSONL answer, decoded, read one at a time.

        Raises:
            ProviderBatchError: a non-2xx status, a line past ``max_line_bytes``, or a line that is not JSON.
        """
        sent = {**headers, "Accept-Encoding": "identity"}
        try:
            async with self._client(verify_tls).get(url, headers=sent) as response:
                if response.status >= 300:
                    text = (await _read(response, ERROR_TEXT_CHARS, truncate=True)).decode("utf-8", "replace")
                    raise ProviderBatchError(text or "(empty body)", status=response.status, url=url)
                async for line in _split_lines(response, self.max_line_bytes, url):
                    yield decode(line, url)
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            raise ProviderBatchError(f"results download failed: {type(error).__name__}: {error}", url=url) from None

    async def aclose(self) -> None:
        """Close the session (idempotent)."""
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()


def decode(data: bytes, url: str) -> Any:
    """Decode an untrusted JSON text without unbounded recursion."""
    try:
        return decode_json_body(data)
    except (MalformedResponse, ValueError, RecursionError) as error:
        raise ProviderBatchError(f"the answer is not readable JSON: {error}", url=url) from None


async def _read(response: aiohttp.ClientResponse, limit: int, *, truncate: bool) -> bytes:
    kept = bytearray()
    async for chunk in response.content.iter_chunked(READ_BYTES):
        kept += chunk
        if len(kept) > limit:
            if truncate:
                return bytes(kept[:limit])
            raise ProviderBatchError(f"the answer passes {limit} bytes", status=response.status, url=str(response.url))
    return bytes(kept)


async def _split_lines(response: aiohttp.ClientResponse, limit: int, url: str) -> AsyncIterator[bytes]:
    pending = bytearray()
    async for chunk in response.content.iter_chunked(READ_BYTES):
        pending += chunk
        start = 0
        while (end := pending.find(b"\n", start)) >= 0:
            if end - start > limit:
                raise ProviderBatchError(f"a results line passes {limit} bytes", url=url)
            if end > start and pending[start:end].strip():
                yield bytes(pending[start:end])
            start = end + 1
        del pending[:start]
        if len(pending) > limit:
            raise ProviderBatchError(f"a results line passes {limit} bytes", url=url)
    if pending.strip():
        yield bytes(pending)
