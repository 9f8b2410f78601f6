"""Storing an ended batch: its results streamed (one line in memory at a time, chunks of outcomes committed), each
answer read by the live adapter, kept in the state folder and put in the answer store, each line's usage record
published exactly once (:mod:`aiquery.provider_batches.line_records`), each failed or expired line's error kept
by fingerprint.

A resumed store reads the results again from the start and skips every line whose outcome the state already
keeps, so no line is recorded twice. A batch that failed as a whole (validation) has no results: each of its
lines is kept as failed with the provider's errors, and gets no usage record (nothing ran, nothing is billed).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aiquery.apis.base import APIRequest
from aiquery.provider_batches.batch_client import ProviderBatchClient
from aiquery.provider_batches.line_records import LineContext, line_record, publish_records, write_hidden
from aiquery.provider_batches.records import LineOutcome
from aiquery.provider_batches.run_state import BatchRow, RunState
from aiquery.store.base import StoredAnswer
from aiquery.usage.record import UsageRecord

__all__ = ["CHUNK_LINES", "LedgerSide", "StoreCounts", "store_batch"]

CHUNK_LINES = 5_000
"""Outcomes committed (and records published) together: bounds the driver's memory whatever the batch's size."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerSide:
    """Where the usage records go: the ledger's spool folder and the run's names for its files and records."""

    spool_dir: Path
    run: str
    query_tag: str | None
    requester: str


@dataclass
class StoreCounts:
    """Lines of one batch stored by this call, by outcome."""

    succeeded: int = 0
    failed: int = 0
    expired: int = 0
    cancelled: int = 0
    notes: list[str] = field(default_factory=list)


class _Chunk:
    def __init__(self) -> None:
        self.answers: list[tuple[str, str]] = []
        self.failures: list[tuple[str, str, str]] = []
        self.records: list[UsageRecord] = []

    def __len__(self) -> int:
        return len(self.answers) + len(self.failures)


async def store_batch(
    state: RunState,
    client: ProviderBatchClient,
    row: BatchRow,
    requests: Mapping[str, APIRequest],
    *,
    ledger: LedgerSide | None,
    put_answers: Callable[[Mapping[str, str]], None] | None = None,
) -> StoreCounts:
    """Store the outcome of every line of the ended batch ``row`` (its requests by fingerprint) not stored yet."""
    counts = StoreCounts()
    batch_id = str(row.provider_id)
    found = await client.status(batch_id)
    if found.phase == "failed":
        message = f"batch {batch_id} failed validation: " + ("; ".join(found.errors) or found.status)
        failures = [(fingerprint, "failed", message) for fingerprint in requests]
        state.keep_outcomes(row.endpoint, batch_id, [], failures, None)
        state.set_stored(row.number)
        counts.failed = len(failures)
        counts.notes.append(message)
        return counts
    context = None
    if ledger is not None:
        context = LineContext(
            client.endpoint, batch_id=batch_id, url=client.base_url, api_type=client.adapter.api_type,
            created_at=row.created_at, ended_at=row.ended_at or time.time(), query_tag=ledger.query_tag,
            requester=ledger.requester,
        )  # fmt: skip
    kept = state.outcome_fingerprints(batch_id)
    chunk = _Chunk()
    async for outcome in client.results(found, requests):
        if outcome.custom_id in kept:
            continue
        _add(chunk, outcome, batch_id, counts)
        if context is not None:
            chunk.records.append(line_record(context, outcome, requests[outcome.custom_id].model))
        if len(chunk) >= CHUNK_LINES:
            _commit(state, row.endpoint, batch_id, chunk, ledger, put_answers)
            chunk = _Chunk()
    _commit(state, row.endpoint, batch_id, chunk, ledger, put_answers)
    state.set_stored(row.number)
    return counts


def _add(chunk: _Chunk, outcome: LineOutcome, batch_id: str, counts: StoreCounts) -> None:
    if outcome.kind == "succeeded" and outcome.answer is not None:
        answer = outcome.answer
        stored = StoredAnswer.of(answer.value, answer.usage, batch_id=batch_id)
        chunk.answers.append((outcome.custom_id, stored.encode()))
        counts.succeeded += 1
        return
    message = outcome.error or f"the line {outcome.kind} in batch {batch_id}"
    if outcome.kind == "expired":
        counts.expired += 1
        message = f"the line expired in batch {batch_id} before it was answered"
    elif outcome.kind == "cancelled":
        counts.cancelled += 1
        message = f"the line was cancelled with batch {batch_id} before it was answered"
    else:
        counts.failed += 1
    chunk.failures.append((outcome.custom_id, outcome.kind, message))


def _commit(
    state: RunState,
    endpoint: str,
    batch_id: str,
    chunk: _Chunk,
    ledger: LedgerSide | None,
    put_answers: Callable[[Mapping[str, str]], None] | None,
) -> None:
    if not len(chunk):
        return
    number = None
    if ledger is not None and chunk.records:
        number = state.next_outbox()
        write_hidden(ledger.spool_dir, ledger.run, number, chunk.records)
    state.keep_outcomes(endpoint, batch_id, chunk.answers, chunk.failures, number)
    if ledger is not None and number is not None:
        publish_records(state, ledger.spool_dir, ledger.run, number)
    if put_answers is not None and chunk.answers:
        put_answers(dict(chunk.answers))
