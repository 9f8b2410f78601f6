"""What every provider's batch client shares: the endpoint, its headers, line building, splitting and reading
each result line with the live adapter.

A client is built for one endpoint (``batch = true``) and one :class:`~aiquery.provider_batches.provider_http.
ProviderHTTP`. Its lines are the live calls' bodies (the adapter's ``build_body``), and a succeeded line's answer is
read by the adapter's ``parse_response``, an errored one's by ``parse_error``: text, usage and errors exactly as a
live call reads them. A line the results never mention is reported ``errored`` (providers have lost lines).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

from aiquery.apis.auth import auth_header
from aiquery.apis.base import Adapter, APIRequest
from aiquery.apis.registry import get_adapter
from aiquery.config import Endpoint
from aiquery.provider_batches.limits import ProviderLimits, split_lines
from aiquery.provider_batches.provider_http import ProviderHTTP
from aiquery.provider_batches.records import BatchLine, BatchState, LineOutcome

__all__ = ["MAX_LIST_PAGES", "ProviderBatchClient", "encode_json"]

MAX_LIST_PAGES = 100
"""Pages of a provider's batch listing read at most when looking for a run's batches."""

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def encode_json(value: Any) -> str:
    """Compact JSON, as the lines are written."""
    return _encode(value)


class ProviderBatchClient:
    """The common part of the three clients; see :mod:`aiquery.provider_batches`."""

    limits: ClassVar[ProviderLimits]
    tagged: ClassVar[bool] = True
    """Whether the provider keeps a batch's tag (so :meth:`list` can find a run's batches by it)."""

    def __init__(self, endpoint: Endpoint, http: ProviderHTTP) -> None:
        self.endpoint = endpoint
        self.adapter: Adapter = get_adapter(endpoint.api)
        self.http = http
        self.base_url = endpoint.base_url.rstrip("/")

    def headers(self) -> dict[str, str]:
        """The adapter's own headers and the endpoint's credential."""
        headers = dict(self.adapter.headers(self.endpoint.anthropic_version))
        token = self.endpoint.token
        found = auth_header(self.endpoint.auth, token.reveal()) if token is not None else None
        if found is not None:
            headers[found[0]] = found[1]
        return headers

    async def request(
        self,
        method: str,
        url: str,
        *,
        json_body: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[Any, dict[str, str]]:
        """One call with the endpoint's headers (and ``headers`` over them) and TLS setting."""
        sent = {**self.headers(), **(headers or {})}
        verify = self.endpoint.verify_tls
        return await self.http.call(method, url, sent, json_body=json_body, data=data, verify_tls=verify)

    def stream(self, url: str) -> AsyncIterator[Any]:
        """The decoded lines of a results file, one at a time."""
        return self.http.lines(url, self.headers(), verify_tls=self.endpoint.verify_tls)

    def line(self, custom_id: str, request: APIRequest) -> BatchLine:
        """The line of one request: the body a live call would send."""
        return BatchLine(custom_id, self.adapter.build_body(request), request.model)

    def encode(self, line: BatchLine) -> bytes:
        """The line as the provider receives it (without the newline)."""
        raise NotImplementedError

    def split(self, lines: Iterable[BatchLine]) -> Iterator[list[BatchLine]]:
        """The lines in groups each within one batch's limits (see :func:`split_lines`)."""
        return split_lines(lines, self.limits, lambda line: len(self.encode(line)) + 1)

    async def submit(self, lines: Sequence[BatchLine], tag: str) -> BatchState:
        """Create one batch of ``lines`` (within :attr:`limits`) tagged with the run's ``tag``."""
        raise NotImplementedError

    async def status(self, batch_id: str) -> BatchState:
        """The batch's current state."""
        raise NotImplementedError

    async def cancel(self, batch_id: str) -> BatchState:
        """Ask the provider to stop the batch; its state after the request."""
        raise NotImplementedError

    async def list(self, tag: str | None = None) -> list[BatchState]:
        """The provider's batches, newest first, those tagged ``tag`` only when given (none on Anthropic, which
        has no tags: a run keeps its Anthropic batch ids in its state)."""
        raise NotImplementedError

    async def pages(
        self, url_for: Callable[[str], str], items_key: str, next_cursor: Callable[[Mapping[str, Any], list[Any]], str]
    ) -> list[Any]:
        """The items of a paged listing, at most :data:`MAX_LIST_PAGES` pages.

        Args:
            url_for: the URL of the page after a cursor ('' for the first page).
            items_key: the key of a page's list of items.
            next_cursor: the cursor of the next page, from a page and its items ('' when it was the last).
        """
        items: list[Any] = []
        cursor = ""
        for _ in range(MAX_LIST_PAGES):
            page, _ = await self.request("GET", url_for(cursor))
            found = page.get(items_key) if isinstance(page, dict) else None
            if not isinstance(found, list) or not found:
                break
            items.extend(found)
            cursor = next_cursor(page, found)
            if not cursor:
                break
        return items

    def raw_results(self, state: BatchState) -> AsyncIterator[tuple[str, str, int | None, Any]]:
        """Each results line as (custom_id, kind, HTTP status, body): ``kind`` ``answered`` (body an answer or
        error body by its status), ``errored`` (body the provider's message), ``expired`` or ``cancelled``."""
        raise NotImplementedError

    async def results(self, state: BatchState, requests: Mapping[str, APIRequest]) -> AsyncIterator[LineOutcome]:
        """Stream the outcome of every line of an ended batch, reading one results line at a time.

        Args:
            state: the batch, ended.
            requests: the batch's requests by line id (the parse of an answer needs its request).
        """
        seen: set[str] = set()
        async for custom_id, kind, status, body in self.raw_results(state):
            if custom_id in seen or custom_id not in requests:
                continue
            seen.add(custom_id)
            yield self.outcome(custom_id, kind, status, body, requests[custom_id])
        for custom_id in requests:
            if custom_id not in seen:
                yield LineOutcome(custom_id=custom_id, kind=self.unmentioned(state), error=_missing(state))

    def unmentioned(self, state: BatchState) -> Any:
        """What a line absent from the results became (Gemini's expired batch has no results at all)."""
        return "errored"

    def outcome(self, custom_id: str, kind: str, status: int | None, body: Any, request: APIRequest) -> LineOutcome:
        """One line's outcome, its body read as the live call reads it; whatever one line raises is its error."""
        if kind in ("expired", "cancelled"):
            return LineOutcome(custom_id=custom_id, kind=kind)  # type: ignore[arg-type]
        if kind != "answered" or status is None:
            return LineOutcome(custom_id=custom_id, kind="errored", error=str(body), status=status)
        try:
            if 200 <= status < 300:
                answer = self.adapter.parse_response(body, request)
                return LineOutcome(custom_id=custom_id, kind="succeeded", answer=answer, status=status)
            verdict = self.adapter.parse_error(status, body)
            return LineOutcome(custom_id=custom_id, kind="errored", error=verdict.message, status=status)
        except Exception as error:  # one unreadable answer is one line's error, never the batch's
            return LineOutcome(custom_id=custom_id, kind="errored", error=f"unreadable answer: {error}", status=status)


def _missing(state: BatchState) -> str:
    return f"the line is missing from the results of batch {state.id} ({state.status})"
