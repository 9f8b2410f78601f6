"""Gemini's batch mode for endpoints of api ``gemini``: upload a JSONL file (the resumable upload), create the batch
with ``models/{model}:batchGenerateContent`` named after the run (``displayName``), poll, cancel, list, then
stream the responses file (or read the inline responses of a batch created with ``inline = True``).

The endpoint's ``base_url`` is the SDK's (``https://generativelanguage.googleapis.com``). A batch that expires
(after 48 h) or is cancelled has **no** results: every line of it is reported ``expired`` or ``cancelled``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import quote

from aiquery.config import Endpoint
from aiquery.provider_batches.batch_client import ProviderBatchClient, encode_json
from aiquery.provider_batches.limits import GEMINI_LIMITS, ProviderLimits
from aiquery.provider_batches.provider_http import ProviderHTTP
from aiquery.provider_batches.records import BatchLine, BatchState, Phase, ProviderBatchError

__all__ = ["GeminiBatchClient"]

_PHASES: dict[str, Phase] = {
    "BATCH_STATE_PENDING": "running",
    "BATCH_STATE_RUNNING": "running",
    "BATCH_STATE_SUCCEEDED": "ended",
    "BATCH_STATE_CANCELLED": "ended",
    "BATCH_STATE_EXPIRED": "ended",
    "BATCH_STATE_FAILED": "failed",
}
_NO_RESULTS = {"BATCH_STATE_EXPIRED": "expired", "BATCH_STATE_CANCELLED": "cancelled"}
INLINE = "inline"


class GeminiBatchClient(ProviderBatchClient):
    """Gemini's batch mode for one endpoint.

    Args:
        endpoint: the endpoint.
        http: the HTTP client.
        inline: send the requests inside the create call (Google takes up to 20 MB so) instead of as a file.
    """

    limits: ClassVar[ProviderLimits] = GEMINI_LIMITS

    def __init__(self, endpoint: Endpoint, http: ProviderHTTP, *, inline: bool = False) -> None:
        super().__init__(endpoint, http)
        self.inline = inline

    def encode(self, line: BatchLine) -> bytes:
        return encode_json({"key": line.custom_id, "request": line.body}).encode()

    async def submit(self, lines: Sequence[BatchLine], tag: str) -> BatchState:
        if not lines:
            raise ValueError("a batch needs at least one line")
        if self.inline:
            requests = [{"request": line.body, "metadata": {"key": line.custom_id}} for line in lines]
            source: dict[str, Any] = {"requests": {"requests": requests}}
        else:
            source = {"fileName": await self._upload(lines, tag)}
        model = quote(lines[0].model.removeprefix("models/"), safe="-_.~")
        body = {"batch": {"displayName": tag, "inputConfig": source}}
        url = f"{self.base_url}/v1beta/models/{model}:batchGenerateContent"
        created, _ = await self.request("POST", url, json_body=body)
        return self.state(created)

    async def _upload(self, lines: Sequence[BatchLine], tag: str) -> str:
        content = b"".join(self.encode(line) + b"\n" for line in lines)
        start = {
            "X-Goog-Upload-Protocol": "resumable",
            "X-Goog-Upload-Command": "start",
            "X-Goog-Upload-Header-Content-Length": str(len(content)),
            "X-Goog-Upload-Header-Content-Type": "application/jsonl",
        }
        url = f"{self.base_url}/upload/v1beta/files"
        _, headers = await self.request("POST", url, json_body={"file": {"displayName": tag}}, headers=start)
        upload_url = headers.get("x-goog-upload-url")
        if not upload_url:
            raise ProviderBatchError("the upload start answered no X-Goog-Upload-URL", url=url)
        send = {"X-Goog-Upload-Command": "upload, finalize", "X-Goog-Upload-Offset": "0"}
        uploaded, _ = await self.request("POST", upload_url, data=content, headers=send)
        name = (uploaded.get("file") or {}).get("name") if isinstance(uploaded, dict) else None
        if not isinstance(name, str):
            raise ProviderBatchError("the upload answered no file name", url=upload_url)
        return name

    async def status(self, batch_id: str) -> BatchState:
        found, _ = await self.request("GET", f"{self.base_url}/v1beta/{batch_id}")
        return self.state(found)

    async def cancel(self, batch_id: str) -> BatchState:
        await self.request("POST", f"{self.base_url}/v1beta/{batch_id}:cancel")
        return await self.status(batch_id)

    async def list(self, tag: str | None = None) -> list[BatchState]:
        def url_for(token: str) -> str:
            return f"{self.base_url}/v1beta/batches?pageSize=100" + (f"&pageToken={quote(token)}" if token else "")

        def next_cursor(page: Mapping[str, Any], operations: list[Any]) -> str:
            return str(page.get("nextPageToken") or "")

        states = [self.state(item) for item in await self.pages(url_for, "operations", next_cursor)]
        return [state for state in states if tag is None or state.tag == tag]

    def state(self, operation: Any) -> BatchState:
        """A batch operation as a :class:`BatchState`."""
        batch = operation.get("metadata") if isinstance(operation, dict) else None
        if not isinstance(batch, dict) or not isinstance(operation.get("name"), str):
            raise ProviderBatchError(f"not a batch operation: {str(operation)[:200]}", url=self.base_url)
        status = str(batch.get("state"))
        stats = batch.get("batchStats") or {}
        total, pending = int(stats.get("requestCount") or 0), int(stats.get("pendingRequestCount") or 0)
        output = batch.get("output") or {}
        results = output.get("responsesFile") or (INLINE if "inlinedResponses" in output else None)
        return BatchState(
            id=operation["name"],
            phase=_PHASES.get(status, "running"),
            status=status,
            tag=batch.get("displayName"),
            total=total,
            done=total - pending,
            failed=int(stats.get("failedRequestCount") or 0),
            results=results,
        )

    def unmentioned(self, state: BatchState) -> Any:
        return _NO_RESULTS.get(state.status, "errored")

    async def raw_results(self, state: BatchState) -> AsyncIterator[tuple[str, str, int | None, Any]]:
        if state.results == INLINE:
            found, _ = await self.request("GET", f"{self.base_url}/v1beta/{state.id}")
            output = (found.get("metadata") or {}).get("output") or {}
            for item in (output.get("inlinedResponses") or {}).get("inlinedResponses") or []:
                yield _read_line(item, (item.get("metadata") or {}).get("key"))
        elif state.results:
            url = f"{self.base_url}/download/v1beta/{state.results}:download?alt=media"
            async for line in self.stream(url):
                yield _read_line(line, line.get("key") if isinstance(line, dict) else None)


def _read_line(line: Any, key: Any) -> tuple[str, str, int | None, Any]:
    if not isinstance(line, dict):
        return "", "errored", None, "not a result line"
    if isinstance(line.get("response"), dict):
        return str(key), "answered", 200, line["response"]
    error = line.get("error")
    if isinstance(error, dict):
        code = error.get("code")
        return str(key), "answered", code if isinstance(code, int) and code >= 400 else 500, {"error": error}
    return str(key), "errored", None, "the result line holds neither response nor error"
