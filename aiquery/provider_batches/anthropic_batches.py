"""Anthropic's Message Batches API for endpoints of api ``anthropic``: create with the requests inline
(``/v1/messages/batches``), poll, cancel, list, then stream the ``results_url`` JSONL.

The endpoint's ``base_url`` is the SDK's (``https://api.anthropic.com``). Anthropic batches carry no metadata, so
:meth:`AnthropicBatchClient.list` cannot find a run's batches by its tag: a run keeps their ids in its state.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, ClassVar

from aiquery.provider_batches.batch_client import ProviderBatchClient, encode_json
from aiquery.provider_batches.limits import ANTHROPIC_LIMITS, ProviderLimits
from aiquery.provider_batches.records import BatchLine, BatchState, Phase, ProviderBatchError

__all__ = ["AnthropicBatchClient"]

_PHASES: dict[str, Phase] = {"in_progress": "running", "canceling": "cancelling", "ended": "ended"}
_KINDS = {"canceled": "cancelled", "expired": "expired"}


class AnthropicBatchClient(ProviderBatchClient):
    """The Anthropic Message Batches API for one endpoint."""

    limits: ClassVar[ProviderLimits] = ANTHROPIC_LIMITS
    tagged: ClassVar[bool] = False

    @property
    def batches_url(self) -> str:
        """``{base_url}/v1/messages/batches``."""
        return f"{self.base_url}/v1/messages/batches"

    def encode(self, line: BatchLine) -> bytes:
        return encode_json({"custom_id": line.custom_id, "params": line.body}).encode()

    async def submit(self, lines: Sequence[BatchLine], tag: str) -> BatchState:
        # The body is written by hand, one line at a time, so a batch near 256 MB is encoded once.
        body = b'{"requests":[' + b",".join(self.encode(line) for line in lines) + b"]}"
        json_type = {"Content-Type": "application/json"}
        created, _ = await self.request("POST", self.batches_url, data=body, headers=json_type)
        return self.state(created)

    async def status(self, batch_id: str) -> BatchState:
        found, _ = await self.request("GET", f"{self.batches_url}/{batch_id}")
        return self.state(found)

    async def cancel(self, batch_id: str) -> BatchState:
        found, _ = await self.request("POST", f"{self.batches_url}/{batch_id}/cancel")
        return self.state(found)

    async def list(self, tag: str | None = None) -> list[BatchState]:
        """Every batch of the workspace (``tag`` cannot be matched: Anthropic batches carry none)."""

        def url_for(after: str) -> str:
            return f"{self.batches_url}?limit=100" + (f"&after_id={after}" if after else "")

        def next_cursor(page: Mapping[str, Any], data: list[Any]) -> str:
            return str(page.get("last_id") or "") if page.get("has_more") else ""

        return [self.state(item) for item in await self.pages(url_for, "data", next_cursor)]

    def state(self, batch: Any) -> BatchState:
        """A message batch object as a :class:`BatchState`."""
        if not isinstance(batch, dict) or not isinstance(batch.get("id"), str):
            raise ProviderBatchError(f"not a message batch: {str(batch)[:200]}", url=self.batches_url)
        status = str(batch.get("processing_status"))
        counts = {key: int(value or 0) for key, value in (batch.get("request_counts") or {}).items()}
        finished = sum(counts.get(key, 0) for key in ("succeeded", "errored", "canceled", "expired"))
        return BatchState(
            id=batch["id"],
            phase=_PHASES.get(status, "running"),
            status=status,
            total=finished + counts.get("processing", 0),
            done=finished,
            failed=counts.get("errored", 0),
            results=batch.get("results_url"),
        )

    async def raw_results(self, state: BatchState) -> AsyncIterator[tuple[str, str, int | None, Any]]:
        if not state.results:
            return
        async for line in self.stream(state.results):
            yield _read_line(line)


def _read_line(line: Any) -> tuple[str, str, int | None, Any]:
    result = line.get("result") if isinstance(line, dict) else None
    if not isinstance(result, dict):
        return "", "errored", None, "not a result line"
    custom_id, kind = str(line.get("custom_id")), result.get("type")
    if kind == "succeeded":
        return custom_id, "answered", 200, result.get("message")
    if kind == "errored":
        # The error is an ordinary error body: the adapter reads it as it reads a live call's.
        error = result.get("error")
        status = 400 if _error_type(error) == "invalid_request_error" else 500
        return custom_id, "answered", status, error
    return custom_id, _KINDS.get(str(kind), "errored"), None, f"unknown result type {kind!r}"


def _error_type(error: Any) -> Any:
    inner = error.get("error") if isinstance(error, dict) else None
    return inner.get("type") if isinstance(inner, dict) else None
