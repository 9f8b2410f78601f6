"""Anthropic's Message Batches API on the emulator: ``/v1/messages/batches`` (create, get, list, cancel) and each
batch's ``results_url`` (JSONL, only once the batch has ended).

Like the real API it takes the requests inline, 1 to 100,000 of them with unique ``custom_id`` s of 1-64
characters ``[a-zA-Z0-9_-]``, refuses a bad batch at once with a 400, and requires ``anthropic-version``. A
line's ``params`` are checked as the live Messages route checks them: an invalid one is that line's
``errored`` result. Expired and cancelled lines come back as ``expired`` and ``canceled`` results.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from typing import Any

from aiquery.gateway.error_bodies import ANTHROPIC
from aiquery.gateway.provider_batch_http import APIError, Request, Response, Route
from aiquery.gateway.provider_jobs import CANCELLING, RUNNING, JobLine, ProviderJob, ProviderJobs, new_id
from aiquery.gateway.wire_native import AnthropicFormat

__all__ = ["ANTHROPIC_ROUTES", "MAX_REQUESTS"]

MAX_REQUESTS = 100_000
_CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_WIRE = AnthropicFormat()
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def timestamp(moment: float | None) -> str | None:
    """RFC 3339 in UTC, as Anthropic writes times."""
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")


def _create(jobs: ProviderJobs, request: Request) -> Response:
    if not request.headers.get("anthropic-version"):
        raise APIError(400, "bad_request", "anthropic-version: header is required")
    items = request.json().get("requests")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_REQUESTS:
        raise APIError(400, "bad_request", f"requests: must hold 1 to {MAX_REQUESTS} items")
    lines: list[JobLine] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        custom_id = item.get("custom_id") if isinstance(item, dict) else None
        if not isinstance(custom_id, str) or not _CUSTOM_ID.fullmatch(custom_id):
            raise APIError(400, "bad_request", f"requests.{index}.custom_id: 1-64 characters of [a-zA-Z0-9_-]")
        if custom_id in seen:
            raise APIError(400, "bad_request", f"requests.{index}.custom_id: {custom_id!r} is not unique")
        if not isinstance(item.get("params"), dict):
            raise APIError(400, "bad_request", f"requests.{index}.params: Field required")
        seen.add(custom_id)
        lines.append(JobLine(custom_id, _WIRE, item["params"], dict(request.headers)))
    job = jobs.create(new_id("msgbatch_"), "anthropic", lines)
    return Response(200, _batch_object(jobs, job, request))


def _batch_object(jobs: ProviderJobs, job: ProviderJob, request: Request) -> dict[str, Any]:
    phase, _, ended = job.phase(time.time())
    counts = dict.fromkeys(("processing", "succeeded", "errored", "canceled", "expired"), 0)
    if ended is None:
        counts["processing"] = len(job.lines)
    else:
        for result in jobs.results(job):
            counts[_result_type(result.kind, result.status)] += 1
    status = {RUNNING: "in_progress", CANCELLING: "canceling"}.get(phase, "ended")
    host = request.headers.get("host", "localhost")
    return {
        "id": job.id,
        "type": "message_batch",
        "processing_status": status,
        "request_counts": counts,
        "created_at": timestamp(job.created_at),
        "expires_at": timestamp(job.created_at + job.expire_s),
        "ended_at": timestamp(ended),
        "cancel_initiated_at": timestamp(job.cancel_at),
        "archived_at": None,
        "results_url": None if ended is None else f"http://{host}/v1/messages/batches/{job.id}/results",
    }


def _result_type(kind: str, status: int) -> str:
    if kind == "answered":
        return "succeeded" if status == 200 else "errored"
    return "canceled" if kind == "cancelled" else "expired"


def _results(jobs: ProviderJobs, request: Request) -> Response:
    job = _job(jobs, request.groups[0])
    if job.phase(time.time())[2] is None:
        raise APIError(400, "bad_request", f"Batch {job.id} has not ended: its results are not available yet.")
    out = []
    for result in jobs.results(job):
        kind = _result_type(result.kind, result.status)
        outcome: dict[str, Any] = {"type": kind}
        if kind == "succeeded":
            outcome["message"] = result.body
        elif kind == "errored":
            error_type = "invalid_request_error" if result.status == 400 else "api_error"
            outcome["error"] = {"type": "error", "error": {"type": error_type, "message": result.body["message"]}}
        out.append(_encode({"custom_id": result.key, "result": outcome}) + "\n")
    return Response(200, "".join(out).encode())


def _get(jobs: ProviderJobs, request: Request) -> Response:
    return Response(200, _batch_object(jobs, _job(jobs, request.groups[0]), request))


def _cancel(jobs: ProviderJobs, request: Request) -> Response:
    job = _job(jobs, request.groups[0])
    jobs.cancel(job)
    return Response(200, _batch_object(jobs, job, request))


def _list(jobs: ProviderJobs, request: Request) -> Response:
    limit = request.number("limit", 20, 1000)
    mine = [job for job in reversed(jobs.jobs.values()) if job.api == "anthropic"]
    after = request.query.get("after_id", [None])[0]
    if after is not None:
        ids = [job.id for job in mine]
        mine = mine[ids.index(after) + 1 :] if after in ids else []
    page = [_batch_object(jobs, job, request) for job in mine[:limit]]
    first, last = (page[0]["id"], page[-1]["id"]) if page else (None, None)
    return Response(200, {"data": page, "has_more": len(mine) > limit, "first_id": first, "last_id": last})


def _job(jobs: ProviderJobs, job_id: str) -> ProviderJob:
    job = jobs.jobs.get(job_id)
    if job is None or job.api != "anthropic":
        raise APIError(404, "not_found", f"message batch {job_id!r} not found")
    return job


ANTHROPIC_ROUTES = [
    Route("POST", re.compile(r"/v1/messages/batches"), _create, ANTHROPIC),
    Route("GET", re.compile(r"/v1/messages/batches"), _list, ANTHROPIC),
    Route("GET", re.compile(r"/v1/messages/batches/([\w-]+)"), _get, ANTHROPIC),
    Route("POST", re.compile(r"/v1/messages/batches/([\w-]+)/cancel"), _cancel, ANTHROPIC),
    Route("GET", re.compile(r"/v1/messages/batches/([\w-]+)/results"), _results, ANTHROPIC),
]
