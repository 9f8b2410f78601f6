"""OpenAI's Batch API (and compatible servers) for endpoints of api ``chat``, ``embeddings``, ``responses`` and
``openai-responses``: upload a JSONL file (``/files``, purpose ``batch``), create the batch (``/batches``) tagged
with the run in ``metadata``, poll, cancel, list, then stream the output and error files.

The endpoint's ``base_url`` is the SDK's (``https://api.openai.com/v1``); each line's ``url`` carries the ``/v1``
path of the live route (``/v1/chat/completions``). One file holds one model.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, ClassVar

import aiohttp

from aiquery.provider_batches.batch_client import ProviderBatchClient, encode_json
from aiquery.provider_batches.limits import OPENAI_LIMITS, ProviderLimits
from aiquery.provider_batches.records import BatchLine, BatchState, Phase, ProviderBatchError

__all__ = ["TAG_KEY", "OpenAIBatchClient"]

TAG_KEY = "aiquery_run"
"""The ``metadata`` key carrying the run's tag."""
_PHASES: dict[str, Phase] = {
    "validating": "running",
    "in_progress": "running",
    "finalizing": "running",
    "cancelling": "cancelling",
    "completed": "ended",
    "expired": "ended",
    "cancelled": "ended",
    "failed": "failed",
}
_LOST = {"batch_expired": "expired", "batch_cancelled": "cancelled"}


class OpenAIBatchClient(ProviderBatchClient):
    """The OpenAI Batch API for one endpoint."""

    limits: ClassVar[ProviderLimits] = OPENAI_LIMITS

    @property
    def route(self) -> str:
        """The live route the lines name, e.g. ``/v1/chat/completions``."""
        return "/v1" + str(getattr(self.adapter, "path", ""))

    def encode(self, line: BatchLine) -> bytes:
        record = {"custom_id": line.custom_id, "method": "POST", "url": self.route, "body": line.body}
        return encode_json(record).encode()

    async def submit(self, lines: Sequence[BatchLine], tag: str) -> BatchState:
        form = aiohttp.FormData()
        form.add_field("purpose", "batch")
        content = b"".join(self.encode(line) + b"\n" for line in lines)
        form.add_field("file", content, filename=f"{tag}.jsonl", content_type="application/jsonl")
        uploaded, _ = await self.request("POST", f"{self.base_url}/files", data=form)
        file_id = uploaded.get("id") if isinstance(uploaded, dict) else None
        if not isinstance(file_id, str):
            raise ProviderBatchError("the file upload answered no file id", url=f"{self.base_url}/files")
        body = {
            "input_file_id": file_id,
            "endpoint": self.route,
            "completion_window": "24h",
            "metadata": {TAG_KEY: tag},
        }
        created, _ = await self.request("POST", f"{self.base_url}/batches", json_body=body)
        return self.state(created)

    async def status(self, batch_id: str) -> BatchState:
        found, _ = await self.request("GET", f"{self.base_url}/batches/{batch_id}")
        return self.state(found)

    async def cancel(self, batch_id: str) -> BatchState:
        found, _ = await self.request("POST", f"{self.base_url}/batches/{batch_id}/cancel")
        return self.state(found)

    async def list(self, tag: str | None = None) -> list[BatchState]:
        def url_for(after: str) -> str:
            return f"{self.base_url}/batches?limit=100" + (f"&after={after}" if after else "")

        def next_cursor(page: Mapping[str, Any], data: list[Any]) -> str:
            return str(data[-1].get("id") or "") if page.get("has_more") and isinstance(data[-1], dict) else ""

        states = [self.state(item) for item in await self.pages(url_for, "data", next_cursor)]
        return [state for state in states if tag is None or state.tag == tag]

    def state(self, batch: Any) -> BatchState:
        """A batch object as a :class:`BatchState`."""
        if not isinstance(batch, dict) or not isinstance(batch.get("id"), str):
            raise ProviderBatchError(f"not a batch object: {str(batch)[:200]}", url=self.base_url)
        status = str(batch.get("status"))
        counts = batch.get("request_counts") or {}
        metadata = batch.get("metadata") or {}
        errors = (batch.get("errors") or {}).get("data") or []
        completed, failed = int(counts.get("completed") or 0), int(counts.get("failed") or 0)
        return BatchState(
            id=batch["id"],
            phase=_PHASES.get(status, "running"),
            status=status,
            tag=metadata.get(TAG_KEY) if isinstance(metadata, dict) else None,
            total=int(counts.get("total") or 0),
            done=completed + failed,
            failed=failed,
            results=batch.get("output_file_id"),
            errors=tuple(f"{error.get('code')} (line {error.get('line')}): {error.get('message')}" for error in errors),
            extra={"error_file_id": batch.get("error_file_id")},
        )

    async def raw_results(self, state: BatchState) -> AsyncIterator[tuple[str, str, int | None, Any]]:
        # Both files: a failed request is in the error file, and some servers put HTTP errors in the output file.
        for file_id in (state.results, state.extra.get("error_file_id")):
            if not file_id:
                continue
            async for line in self.stream(f"{self.base_url}/files/{file_id}/content"):
                yield _read_line(line)


def _read_line(line: Any) -> tuple[str, str, int | None, Any]:
    if not isinstance(line, dict):
        return "", "errored", None, "not a result line"
    custom_id = str(line.get("custom_id"))
    response, error = line.get("response"), line.get("error")
    if isinstance(error, dict):
        code = str(error.get("code"))
        return custom_id, _LOST.get(code, "errored"), None, f"{code}: {error.get('message')}"
    if isinstance(response, dict) and isinstance(response.get("status_code"), int) and response["status_code"] > 0:
        return custom_id, "answered", response["status_code"], response.get("body")
    # `status_code 0` with an empty body has been seen in real error files: an error, retryable live.
    return custom_id, "errored", None, "the result line holds no response"
