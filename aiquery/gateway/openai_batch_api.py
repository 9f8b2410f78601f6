"""OpenAI's Batch API on the emulator: ``/v1/files`` (multipart upload, content), ``/v1/batches`` (create, get,
list, cancel), output and error files.

Validation happens at creation, as OpenAI's ``validating`` step does, and a refused file makes a batch whose
status is ``failed`` with ``errors.data`` (codes ``invalid_json_line``, ``duplicate_custom_id``, ``url_mismatch``,
``model_mismatch``, ``empty_file``, ``too_many_tasks``). Answered lines go to the output file, lines answered with
an error status and expired or cancelled lines to the error file (``batch_expired`` / ``batch_cancelled``).
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from aiquery.gateway.error_bodies import OPENAI
from aiquery.gateway.provider_batch_http import APIError, Request, Response, Route
from aiquery.gateway.provider_jobs import (
    CANCELLED,
    CANCELLING,
    COMPLETED,
    EXPIRED,
    FAILED,
    JobLine,
    ProviderJob,
    ProviderJobs,
    new_id,
)
from aiquery.gateway.wire import WireFormat
from aiquery.gateway.wire_openai import ChatFormat, EmbeddingsFormat, ResponsesFormat

__all__ = ["MAX_LINES", "OPENAI_ROUTES"]

MAX_LINES = 50_000
MAX_METADATA_PAIRS = 16
WIRES: dict[str, WireFormat] = {
    "/v1/chat/completions": ChatFormat(),
    "/v1/embeddings": EmbeddingsFormat(),
    "/v1/responses": ResponsesFormat(),
}
_STATUS = {FAILED: "failed", COMPLETED: "completed", EXPIRED: "expired", CANCELLING: "cancelling",
           CANCELLED: "cancelled"}  # fmt: skip
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?')
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _upload(jobs: ProviderJobs, request: Request) -> Response:
    fields = _multipart(request)
    if fields.get("purpose", (b"", ""))[0] != b"batch" or "file" not in fields:
        raise APIError(400, "bad_request", "A multipart body with purpose=batch and a file is required.")
    content, filename = fields["file"]
    file_id = new_id("file-")
    jobs.files[file_id], jobs.file_names[file_id] = content, filename or "upload.jsonl"
    return Response(200, _file_object(file_id, jobs))


def _multipart(request: Request) -> dict[str, tuple[bytes, str]]:
    """The form's fields by name: (value, filename)."""
    found = _BOUNDARY.search(request.headers.get("content-type", ""))
    if found is None:
        raise APIError(400, "bad_request", "Content-Type must be multipart/form-data with a boundary.")
    fields: dict[str, tuple[bytes, str]] = {}
    for part in request.body.split(b"--" + found.group(1).encode())[1:]:
        head, separator, value = part.partition(b"\r\n\r\n")
        if not separator:
            continue
        disposition = head.decode("latin-1")
        name = re.search(r'name="([^"]*)"', disposition)
        filename = re.search(r'filename="([^"]*)"', disposition)
        if name is not None:
            fields[name.group(1)] = (value.removesuffix(b"\r\n"), filename.group(1) if filename else "")
    return fields


def _file_object(file_id: str, jobs: ProviderJobs) -> dict[str, Any]:
    return {
        "id": file_id,
        "object": "file",
        "bytes": len(jobs.files[file_id]),
        "created_at": int(time.time()),
        "filename": jobs.file_names[file_id],
        "purpose": "batch",
    }


def _file_content(jobs: ProviderJobs, request: Request) -> Response:
    file_id = request.groups[0]
    if file_id in jobs.files:
        return Response(200, jobs.files[file_id])
    for job in jobs.jobs.values():
        if file_id in (job.tags.get("output_file_id"), job.tags.get("error_file_id")):
            return Response(200, _result_file(jobs, job, errors=file_id == job.tags.get("error_file_id")))
    raise APIError(404, "not_found", f"No such File object: {file_id}")


def _create(jobs: ProviderJobs, request: Request) -> Response:
    body = request.json()
    endpoint, file_id = body.get("endpoint"), body.get("input_file_id")
    if endpoint not in WIRES:
        raise APIError(400, "bad_request", f"endpoint must be one of {sorted(WIRES)}, got {endpoint!r}")
    if body.get("completion_window") != "24h":
        raise APIError(400, "bad_request", "completion_window must be '24h'.")
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict) or len(metadata) > MAX_METADATA_PAIRS:
        raise APIError(400, "bad_request", f"metadata must be an object of at most {MAX_METADATA_PAIRS} pairs.")
    if file_id not in jobs.files:
        raise APIError(404, "not_found", f"No such File object: {file_id}")
    lines, errors, model = _read_lines(jobs.files[file_id], str(endpoint), request.headers)
    job = jobs.create(new_id("batch_"), "openai", lines)
    job.errors = errors
    job.tags.update(metadata=metadata, endpoint=endpoint, input_file_id=file_id, model=model)
    return Response(200, _batch_object(jobs, job))


def _read_lines(content: bytes, endpoint: str, headers: Any) -> tuple[list[JobLine], list[dict[str, Any]], str | None]:
    """The file's lines, or the validation errors that fail the batch, and the file's one model."""
    lines: list[JobLine] = []
    seen: set[str] = set()
    model: str | None = None
    for number, raw in enumerate(content.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
            custom_id, url, body = line["custom_id"], line["url"], line["body"]
        except (ValueError, KeyError, TypeError):
            return [], [_error("invalid_json_line", number, "This line is not a valid batch request.")], None
        if custom_id in seen:
            return [], [_error("duplicate_custom_id", number, f"The custom_id {custom_id!r} is used twice.")], None
        if url != endpoint:
            return [], [_error("url_mismatch", number, f"The url {url!r} does not match the batch's {endpoint}.")], None
        line_model = body.get("model") if isinstance(body, dict) else None
        if model is not None and line_model != model:
            message = f"The model {line_model!r} differs from the file's {model!r}: one model per file."
            return [], [_error("model_mismatch", number, message)], None
        model = line_model
        seen.add(custom_id)
        lines.append(JobLine(str(custom_id), WIRES[endpoint], body, dict(headers)))
    if not lines:
        return [], [_error("empty_file", None, "The input file has no request.")], None
    if len(lines) > MAX_LINES:
        return [], [_error("too_many_tasks", None, f"A batch takes at most {MAX_LINES} requests.")], None
    return lines, [], model


def _error(code: str, line: int | None, message: str) -> dict[str, Any]:
    return {"code": code, "line": line, "message": message, "param": None}


def _batch_object(jobs: ProviderJobs, job: ProviderJob) -> dict[str, Any]:
    phase, done, ended = job.phase(time.time())
    status = _STATUS.get(phase, "in_progress")
    counts = {"total": len(job.lines), "completed": done, "failed": 0}
    if ended is not None and phase != FAILED:
        results = jobs.results(job)
        failed = sum(1 for result in results if result.kind == "answered" and result.status != 200)
        counts = {"total": len(job.lines), "completed": done - failed, "failed": failed}
        job.tags.setdefault("output_file_id", new_id("file-"))
        job.tags.setdefault("error_file_id", new_id("file-"))
    created = int(job.created_at)
    return {
        "id": job.id,
        "object": "batch",
        "endpoint": job.tags["endpoint"],
        "model": job.tags.get("model"),
        "errors": {"object": "list", "data": job.errors} if job.errors else None,
        "input_file_id": job.tags["input_file_id"],
        "completion_window": "24h",
        "status": status,
        "output_file_id": job.tags.get("output_file_id"),
        "error_file_id": job.tags.get("error_file_id"),
        "created_at": created,
        "in_progress_at": None if phase == FAILED else created,
        "expires_at": int(job.created_at + job.expire_s),
        "completed_at": int(ended) if phase == COMPLETED and ended else None,
        "failed_at": created if phase == FAILED else None,
        "expired_at": int(ended) if phase == EXPIRED and ended else None,
        "cancelling_at": None if job.cancel_at is None else int(job.cancel_at),
        "cancelled_at": int(ended) if phase == CANCELLED and ended else None,
        "request_counts": counts,
        "metadata": job.tags["metadata"],
    }


def _result_file(jobs: ProviderJobs, job: ProviderJob, *, errors: bool) -> bytes:
    out: list[str] = []
    for result in jobs.results(job):
        line: dict[str, Any] = {"id": new_id("batch_req_"), "custom_id": result.key, "response": None, "error": None}
        if result.kind == "answered":
            if (result.status != 200) != errors:
                continue
            body = result.body if result.status == 200 else {"error": {"message": result.body["message"]}}
            line["response"] = {"status_code": result.status, "request_id": new_id("req_"), "body": body}
        elif errors:
            line["error"] = {"code": f"batch_{result.kind}", "message": f"This request was {result.kind}."}
        else:
            continue
        out.append(_encode(line))
    return "".join(text + "\n" for text in out).encode()


def _get(jobs: ProviderJobs, request: Request) -> Response:
    return Response(200, _batch_object(jobs, _job(jobs, request.groups[0])))


def _cancel(jobs: ProviderJobs, request: Request) -> Response:
    job = _job(jobs, request.groups[0])
    jobs.cancel(job)
    return Response(200, _batch_object(jobs, job))


def _list(jobs: ProviderJobs, request: Request) -> Response:
    limit = request.number("limit", 20, 100)
    mine = [job for job in reversed(jobs.jobs.values()) if job.api == "openai"]
    after = request.query.get("after", [None])[0]
    if after is not None:
        ids = [job.id for job in mine]
        mine = mine[ids.index(after) + 1 :] if after in ids else []
    page = [_batch_object(jobs, job) for job in mine[:limit]]
    first, last = (page[0]["id"], page[-1]["id"]) if page else (None, None)
    return Response(200, {"object": "list", "data": page, "first_id": first, "last_id": last,
                          "has_more": len(mine) > limit})  # fmt: skip


def _job(jobs: ProviderJobs, job_id: str) -> ProviderJob:
    job = jobs.jobs.get(job_id)
    if job is None or job.api != "openai":
        raise APIError(404, "not_found", f"No batch found with id '{job_id}'.")
    return job


OPENAI_ROUTES = [
    Route("POST", re.compile(r"/v1/files"), _upload, OPENAI),
    Route("GET", re.compile(r"/v1/files/([\w-]+)/content"), _file_content, OPENAI),
    Route("POST", re.compile(r"/v1/batches"), _create, OPENAI),
    Route("GET", re.compile(r"/v1/batches"), _list, OPENAI),
    Route("GET", re.compile(r"/v1/batches/([\w-]+)"), _get, OPENAI),
    Route("POST", re.compile(r"/v1/batches/([\w-]+)/cancel"), _cancel, OPENAI),
]
