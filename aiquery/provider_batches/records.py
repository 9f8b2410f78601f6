"""What the provider-batch clients take and give: a line to send, a batch's state, and one line's outcome."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from aiquery.apis.base import Answer

__all__ = ["BatchLine", "BatchState", "LineOutcome", "ProviderBatchError"]

Phase = Literal["running", "cancelling", "ended", "failed"]
"""A batch's phase whatever its provider calls it: ``ended`` covers completed, expired and cancelled."""


@dataclass(frozen=True, slots=True)
class BatchLine:
    """One request of a batch: its id (the row's fingerprint) and the body a live call would send."""

    custom_id: str
    body: Mapping[str, Any]
    model: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchState:
    """A batch as its provider reports it.

    Attributes:
        id: the provider's batch id (OpenAI ``batch_...``, Anthropic ``msgbatch_...``, Gemini ``batches/...``).
        phase: see :data:`Phase`.
        status: the provider's own status word (``in_progress``, ``canceling``, ``BATCH_STATE_SUCCEEDED`` ...).
        tag: the run tag the batch carries (OpenAI ``metadata``, Gemini ``display_name``); None for Anthropic.
        total: lines in the batch.
        done: lines finished (answered or failed) so far, as the provider counts them.
        failed: lines that failed, as the provider counts them.
        results: where the results are (a file id, URL or file name), or None while there are none.
        errors: validation errors of a batch that failed as a whole (the provider's words, one per problem).
    """

    id: str
    phase: Phase
    status: str
    tag: str | None = None
    total: int = 0
    done: int = 0
    failed: int = 0
    results: str | None = None
    errors: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class LineOutcome:
    """How one line ended.

    ``kind`` is ``succeeded`` (``answer`` read by the live adapter's ``parse_response``), ``errored`` (``error``
    holds the provider's message, ``status`` its HTTP status where it has one), ``expired`` or ``cancelled``.
    """

    custom_id: str
    kind: Literal["succeeded", "errored", "expired", "cancelled"]
    answer: Answer | None = None
    error: str | None = None
    status: int | None = None


class ProviderBatchError(Exception):
    """A batch API refused a call, answered something unreadable, or could not be reached.

    Plain data only, so it pickles: the HTTP ``status`` (None when no answer came), the provider's ``message``
    (truncated) and the ``url`` called.
    """

    def __init__(self, message: str, *, status: int | None = None, url: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.url = url

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.message, self.status, self.url))

    def __str__(self) -> str:
        where = f" ({self.status} from {self.url})" if self.status is not None else f" ({self.url})" if self.url else ""
        return self.message + where


def _rebuild(message: str, status: int | None, url: str) -> ProviderBatchError:
    return ProviderBatchError(message, status=status, url=url)
