"""Gemini's batch mode on the emulator: ``models/{model}:batchGenerateContent`` with inline requests or an
uploaded JSONL file, the batch as a long-running operation (get, list, ``:cancel``), the resumable file upload
(``/upload/v1beta/files``) and the results file's download.

States are the REST ``BATCH_STATE_*`` names. A batch expires after twice ``batch_expire_s`` (Gemini's 48 h against
the others' 24 h) and then, as Google documents, has **no** results; a cancelled one has none either. A file's
result lines are ``{"key", "response"}`` or ``{"key", "error"}``; inline results are in
``output.inlinedResponses`` in input order, each with its ``metadata.key``.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from aiquery.gateway.anthropic_batch_api import timestamp
from aiquery.gateway.error_bodies import GOOGLE
from aiquery.gateway.provider_batch_http import APIError, Request, Response, Route
from aiquery.gateway.provider_jobs import (
    CANCELLED,
    CANCELLING,
    COMPLETED,
    EXPIRED,
    JobLine,
    LineResult,
    ProviderJob,
    ProviderJobs,
    new_id,
)
from aiquery.gateway.wire_native import GeminiFormat

__all__ = ["GEMINI_ROUTES"]

EXPIRY_FACTOR = 2.0
MAX_ACTIVE_BATCHES = 100
"""Gemini runs at most this many batches at once per project; a create past it is refused with a 429."""
_WIRE = GeminiFormat()
_STATES = {COMPLETED: "BATCH_STATE_SUCCEEDED", EXPIRED: "BATCH_STATE_EXPIRED", CANCELLING: "BATCH_STATE_RUNNING",
           CANCELLED: "BATCH_STATE_CANCELLED"}  # fmt: skip
_BATCH_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch"
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _field(mapping: Any, camel: str, snake: str) -> Any:
    return mapping.get(camel, mapping.get(snake)) if isinstance(mapping, dict) else None


def _upload(jobs: ProviderJobs, request: Request) -> Response:
    command = request.headers.get("x-goog-upload-command", "")
    if command.startswith("start"):
        upload_id = new_id("")
        jobs.files[f"pending/{upload_id}"] = b""
        url = f"http://{request.headers.get('host', 'localhost')}/upload/v1beta/files?upload_id={upload_id}"
        return Response(200, {}, (("X-Goog-Upload-URL", url), ("X-Goog-Upload-Status", "active")))
    upload_id = request.query.get("upload_id", [""])[0]
    if "finalize" not in command or f"pending/{upload_id}" not in jobs.files:
        raise APIError(400, "bad_request", "Start a resumable upload, then send the bytes with 'upload, finalize'.")
    del jobs.files[f"pending/{upload_id}"]
    name = f"files/{upload_id}"
    jobs.files[name] = request.body
    info = {"name": name, "mimeType": "application/jsonl", "sizeBytes": str(len(request.body)), "state": "ACTIVE"}
    return Response(200, {"file": info}, (("X-Goog-Upload-Status", "final"),))


def _create(jobs: ProviderJobs, request: Request) -> Response:
    model = request.groups[0]
    batch = request.json().get("batch")
    config = _field(batch, "inputConfig", "input_config")
    display_name = _field(batch, "displayName", "display_name")
    if not isinstance(display_name, str) or not isinstance(config, dict):
        raise APIError(400, "bad_request", "batch.displayName and batch.inputConfig are required.")
    file_name = _field(config, "fileName", "file_name")
    if file_name is not None:
        if file_name not in jobs.files:
            raise APIError(404, "not_found", f"File {file_name} not found.")
        items = [_file_line(raw) for raw in jobs.files[file_name].splitlines() if raw.strip()]
    else:
        inline = config.get("requests")
        found = inline.get("requests") if isinstance(inline, dict) else None
        if not isinstance(found, list):
            raise APIError(400, "bad_request", "batch.inputConfig needs fileName or requests.requests.")
        items = [(_inline_key(item), item.get("request")) for item in found if isinstance(item, dict)]
    active = sum(1 for job in jobs.jobs.values() if job.api == "gemini" and job.phase(time.time())[2] is None)
    if active >= MAX_ACTIVE_BATCHES:
        raise APIError(429, "rate_limit", f"Resource has been exhausted: at most {MAX_ACTIVE_BATCHES} batches at once.")
    keys = [key for key, _ in items]
    if not items or len(set(keys)) != len(keys):
        raise APIError(400, "bad_request", "The batch needs requests, each with its own key.")
    lines = [JobLine(key, _WIRE, body, dict(request.headers), model) for key, body in items]
    job = jobs.create(new_id(""), "gemini", lines, expire_factor=EXPIRY_FACTOR)
    job.tags.update(display_name=display_name, model=model, file=file_name is not None)
    return Response(200, _operation(jobs, job))


def _inline_key(item: dict[str, Any]) -> str:
    metadata = item.get("metadata")
    return str(metadata.get("key", "")) if isinstance(metadata, dict) else ""


def _file_line(raw: bytes) -> tuple[str, Any]:
    try:
        line = json.loads(raw)
        return str(line["key"]), line["request"]
    except (ValueError, KeyError, TypeError):
        raise APIError(400, "bad_request", "Each line of the input file must be {key, request}.") from None


def _operation(jobs: ProviderJobs, job: ProviderJob) -> dict[str, Any]:
    phase, done, ended = job.phase(time.time())
    state = _STATES.get(phase, "BATCH_STATE_RUNNING" if done else "BATCH_STATE_PENDING")
    stats = {"requestCount": str(len(job.lines)), "pendingRequestCount": str(len(job.lines) - done)}
    batch: dict[str, Any] = {
        "@type": _BATCH_TYPE,
        "name": f"batches/{job.id}",
        "model": f"models/{job.tags['model']}",
        "displayName": job.tags["display_name"],
        "createTime": timestamp(job.created_at),
        "updateTime": timestamp(time.time()),
        "state": state,
        "batchStats": stats,
    }
    operation: dict[str, Any] = {"name": f"batches/{job.id}", "metadata": batch, "done": ended is not None}
    if ended is not None:
        batch["endTime"] = timestamp(ended)
    if phase == COMPLETED:
        results = jobs.results(job)
        failed = sum(1 for result in results if result.status != 200)
        stats.update(successfulRequestCount=str(len(results) - failed), failedRequestCount=str(failed))
        if job.tags["file"]:
            job.tags.setdefault("responses_file", f"files/{new_id('')}")
            batch["output"] = {"responsesFile": job.tags["responses_file"]}
        else:
            inlined = [{**_outcome(result), "metadata": {"key": result.key}} for result in results]
            batch["output"] = {"inlinedResponses": {"inlinedResponses": inlined}}
        operation["response"] = {"@type": _BATCH_TYPE.replace("GenerateContentBatch", "GenerateContentBatchOutput"),
                                 **batch["output"]}  # fmt: skip
    return operation


def _outcome(result: LineResult) -> dict[str, Any]:
    if result.status == 200:
        return {"response": result.body}
    status = "INVALID_ARGUMENT" if result.status == 400 else "INTERNAL"
    return {"error": {"code": result.status, "message": result.body["message"], "status": status}}


def _download(jobs: ProviderJobs, request: Request) -> Response:
    name = f"files/{request.groups[0]}"
    for job in jobs.jobs.values():
        if job.api == "gemini" and job.tags.get("responses_file") == name:
            lines = (_encode({"key": result.key, **_outcome(result)}) + "\n" for result in jobs.results(job))
            return Response(200, "".join(lines).encode())
    raise APIError(404, "not_found", f"File {name} not found.")


def _get(jobs: ProviderJobs, request: Request) -> Response:
    return Response(200, _operation(jobs, _job(jobs, request.groups[0])))


def _cancel(jobs: ProviderJobs, request: Request) -> Response:
    jobs.cancel(_job(jobs, request.groups[0]))
    return Response(200, {})


def _list(jobs: ProviderJobs, request: Request) -> Response:
    size = request.number("pageSize", 50, 1000)
    mine = [job for job in reversed(jobs.jobs.values()) if job.api == "gemini"]
    start = request.number("pageToken", 1, 10**9) - 1 if "pageToken" in request.query else 0
    page = {"operations": [_operation(jobs, job) for job in mine[start : start + size]]}
    if start + size < len(mine):
        page["nextPageToken"] = str(start + size + 1)
    return Response(200, page)


def _job(jobs: ProviderJobs, job_id: str) -> ProviderJob:
    job = jobs.jobs.get(job_id)
    if job is None or job.api != "gemini":
        raise APIError(404, "not_found", f"Batch batches/{job_id} not found.")
    return job


GEMINI_ROUTES = [
    Route("POST", re.compile(r"/upload/v1beta/files"), _upload, GOOGLE),
    Route("POST", re.compile(r"/v1beta/models/([\w.-]+):batchGenerateContent"), _create, GOOGLE),
    Route("GET", re.compile(r"/v1beta/batches"), _list, GOOGLE),
    Route("GET", re.compile(r"/v1beta/batches/([\w-]+)"), _get, GOOGLE),
    Route("POST", re.compile(r"/v1beta/batches/([\w-]+):cancel"), _cancel, GOOGLE),
    Route("GET", re.compile(r"/download/v1beta/files/([\w-]+):download"), _download, GOOGLE),
]
