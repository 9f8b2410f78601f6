"""The providers' batch jobs as the emulator keeps them: lines, a clock, and each line's outcome.

One :class:`ProviderJob` is one OpenAI batch, Anthropic message batch or Gemini batch. Its lines finish evenly
spread over ``batch_delay`` seconds from creation, so a poll part-way sees part of them done. The job ends
``completed`` once all are done, ``expired`` when the expiry comes first (keeping the lines done by then), or
``cancelled`` ``batch_cancel_s`` after a cancel (keeping the lines done when it was asked). Each answered line is
the answer a live call with the same body gets (the route's wire format and the emulator's canned answers), its
tokens counted in the emulator's stats; a ``batch_failed_share`` of lines, chosen by a hash of their id, fail
with a 500 error instead.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiquery.gateway.accounting import Accounting
from aiquery.gateway.canned_answers import compose_reply
from aiquery.gateway.settings import GatewayConfig
from aiquery.gateway.wire import BadRequest, WireFormat
from aiquery.gateway.wire_native import AnthropicFormat

__all__ = ["JobLine", "LineResult", "ProviderJob", "ProviderJobs", "new_id"]

RUNNING, COMPLETED, EXPIRED, CANCELLING, CANCELLED, FAILED = (
    "running",
    "completed",
    "expired",
    "cancelling",
    "cancelled",
    "failed",
)
"""The job's phase, whatever each API calls it (each API module maps them to its own names)."""


def new_id(prefix: str) -> str:
    """A fresh resource id such as ``batch_3f2a...``."""
    return f"{prefix}{uuid.uuid4().hex[:24]}"


@dataclass(frozen=True, slots=True)
class JobLine:
    """One request of a job: its id, the wire format answering it, and what a live call would carry."""

    key: str
    wire: WireFormat
    body: Any
    headers: Mapping[str, str]
    path_model: str | None = None


@dataclass(frozen=True, slots=True)
class LineResult:
    """How one line ended: ``answered`` (``status`` and ``body`` as a live call's), or ``expired``/``cancelled``."""

    key: str
    kind: str
    status: int = 0
    body: Any = None


@dataclass(kw_only=True)
class ProviderJob:
    """One batch job and its clock (times are Unix seconds)."""

    id: str
    api: str
    lines: list[JobLine]
    created_at: float
    delay_s: float
    expire_s: float
    cancel_s: float
    failed_share: float
    tags: dict[str, Any] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    cancel_at: float | None = None
    results: list[LineResult] | None = None

    def phase(self, now: float) -> tuple[str, int, float | None]:
        """The phase at ``now``, how many lines are done, and when the job ended (None while it runs)."""
        if self.errors:
            return FAILED, 0, self.created_at
        if self.cancel_at is not None:
            done = self.done_by(self.cancel_at)
            ended = self.cancel_at + self.cancel_s
            return (CANCELLED, done, ended) if now >= ended else (CANCELLING, done, None)
        expires = self.created_at + self.expire_s
        if self.expire_s < self.delay_s and now >= expires:
            return EXPIRED, self.done_by(expires), expires
        if now >= self.created_at + self.delay_s:
            return COMPLETED, len(self.lines), self.created_at + self.delay_s
        return RUNNING, self.done_by(now), None

    def done_by(self, moment: float) -> int:
        """Lines finished by ``moment``: line ``i`` of ``n`` finishes ``delay * (i + 1) / n`` after creation."""
        if self.delay_s <= 0:
            return len(self.lines)
        share = (moment - self.created_at) / self.delay_s
        return max(0, min(len(self.lines), int(share * len(self.lines) + 1e-9)))

    def failed_line(self, key: str) -> bool:
        """Whether the line ``key`` is one of the failed share (the same line fails in every poll)."""
        digest = hashlib.blake2b(f"{self.id}\0{key}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64 < self.failed_share


class ProviderJobs:
    """Every job and uploaded file of one emulator, and the answering of their lines.

    Args:
        config: returns the emulator's current settings.
        accounting: where each answered line's tokens are counted (route ``batch/<api>``).
    """

    def __init__(self, config: Callable[[], GatewayConfig], accounting: Accounting) -> None:
        self._config = config
        self._accounting = accounting
        self.jobs: dict[str, ProviderJob] = {}
        self.files: dict[str, bytes] = {}
        self.file_names: dict[str, str] = {}

    @property
    def config(self) -> GatewayConfig:
        """The emulator's current settings."""
        return self._config()

    def create(self, job_id: str, api: str, lines: list[JobLine], *, expire_factor: float = 1.0) -> ProviderJob:
        """Start a job on the current settings' clock."""
        config = self.config
        job = ProviderJob(
            id=job_id,
            api=api,
            lines=lines,
            created_at=time.time(),
            delay_s=config.batch_delay,
            expire_s=config.batch_expire_s * expire_factor,
            cancel_s=config.batch_cancel_s,
            failed_share=config.batch_failed_share,
        )
        self.jobs[job_id] = job
        return job

    def cancel(self, job: ProviderJob) -> None:
        """Ask a running job to stop (a no-op once it ended or was already asked)."""
        if job.cancel_at is None and job.phase(time.time())[2] is None:
            job.cancel_at = time.time()

    def results(self, job: ProviderJob) -> list[LineResult]:
        """Every line's result, decided once the job has ended (in input order)."""
        if job.results is not None:
            return job.results
        phase, done, _ = job.phase(time.time())
        lost = "expired" if phase == EXPIRED else "cancelled"
        results = [self._answer(job, line) for line in job.lines[:done]]
        results.extend(LineResult(line.key, lost) for line in job.lines[done:])
        job.results = results
        return results

    def _answer(self, job: ProviderJob, line: JobLine) -> LineResult:
        if job.failed_line(line.key):
            return LineResult(line.key, "answered", 500, {"message": "The server had an error processing the line."})
        try:
            ask = line.wire.parse(line.body, line.headers, line.path_model)
        except (BadRequest, ValueError) as error:
            return LineResult(line.key, "answered", 400, {"message": str(error)})
        reply = compose_reply(ask, self.config, None)
        rendered = line.wire.render(ask, reply, uuid.uuid4().hex[:20])
        written = reply.cache_creation_tokens if isinstance(line.wire, AnthropicFormat) else 0
        self._accounting.record(
            route=f"batch/{job.api}",
            status=200,
            outcome="ok",
            model=ask.model,
            headers=dict(line.headers),
            tokens=(reply.input_tokens, reply.output_tokens, reply.cached_tokens, written),
        )
        return LineResult(line.key, "answered", 200, rendered)
