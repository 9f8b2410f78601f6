"""One usage record per batch line, put in the ledger's spool exactly once, even across a crash and a resume.

A batch line is one request: it gets one record, like a live call, with these conventions:

- ``request_id`` and ``call_id``: ``<batch id>:<fingerprint>`` (a line's only attempt; the same on a replay);
- ``event_time``: when the batch was created (the moment the request left for the provider);
- ``latency_ms``: from the batch's creation to the moment the run saw it ended (as fine as the polling);
- ``status_code``: the line's own HTTP status where the provider gives one (200 for an answer), else None
  (expired, cancelled, or an error without a status), with ``error_message`` saying which;
- ``cost``: the tokens at the batch price (:meth:`~aiquery.pricing.Price.batch_cost`); 0 for a failed line
  (providers bill only answered lines).

Exactly once: the records of a chunk of lines are first written to a file the ingestion ignores
(``_batch-<run>-<n>.json`` in the spool folder), then the chunk's outcomes and an *outbox* row ``n`` are committed
in one state transaction, then the file is renamed to its published name (``usage-batch-<run>-<n>.json``,
where ingestion takes it), then the outbox row is marked published. The rename is the commit point of the
ledger side and the transaction that of the state side; :func:`settle_outbox` finishes whatever a crash cut:

- file written, no transaction: the outcomes are not kept, so the results are read again: the file is deleted;
- transaction, no rename: the file is still under its hidden name: it is renamed now;
- renamed, not marked: the hidden name is gone: it is only marked.

A line whose outcome is kept is never given a record again (a resumed store skips it).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable
from pathlib import Path

from aiquery.apis.base import Answer
from aiquery.config import Endpoint
from aiquery.provider_batches.records import LineOutcome
from aiquery.provider_batches.run_state import RunState
from aiquery.store.base import TOKEN_FIELDS
from aiquery.usage.codec import RecordEncoder
from aiquery.usage.record import UsageRecord
from aiquery.version import __version__

__all__ = ["LineContext", "line_record", "publish_records", "settle_outbox"]

USER_AGENT = f"aiquery/{__version__} provider-batch"
HIDDEN_PREFIX = "_batch-"
PUBLISHED_PREFIX = "usage-batch-"


class LineContext:
    """What every record of one batch shares: the endpoint, the batch, the run's tag and requester."""

    def __init__(
        self, endpoint: Endpoint, *, batch_id: str, url: str, api_type: str, created_at: float, ended_at: float,
        query_tag: str | None, requester: str,
    ) -> None:  # fmt: skip
        self.endpoint = endpoint
        self.batch_id = batch_id
        self.url = url
        self.api_type = api_type
        self.event_time = dt.datetime.fromtimestamp(created_at, dt.UTC)
        self.latency_ms = max(0, round((ended_at - created_at) * 1000))
        self.query_tag = query_tag
        self.requester = requester


def line_record(context: LineContext, outcome: LineOutcome, model: str) -> UsageRecord:
    """The usage record of one line's outcome (conventions in the module docstring)."""
    endpoint = context.endpoint
    request_id = f"{context.batch_id}:{outcome.custom_id}"
    record = UsageRecord(
        request_id=request_id,
        call_id=request_id,
        attempt=1,
        event_time=context.event_time,
        endpoint_name=endpoint.name,
        destination_model=model,
        api_type=context.api_type,
        url=context.url,
        requester=context.requester,
        user_agent=USER_AGENT,
        request_tags=dict(endpoint.request_tags),
        request_hash=outcome.custom_id,
        latency_ms=context.latency_ms,
        query_tag=context.query_tag,
        currency=endpoint.price.currency if endpoint.price is not None else None,
        batch_id=context.batch_id,
    )
    answer: Answer | None = outcome.answer
    if outcome.kind == "succeeded" and answer is not None:
        for name in TOKEN_FIELDS:
            setattr(record, name, getattr(answer.usage, name, None))
        record.tokens_estimated = bool(answer.usage.estimated)
        record.status_code = outcome.status or 200
        if endpoint.price is not None:
            record.cost = endpoint.price.batch_cost(
                record.input_tokens,
                record.output_tokens,
                record.cache_read_input_tokens,
                record.cache_creation_input_tokens,
            )
        return record
    record.status_code = outcome.status
    record.error_message = outcome.error or f"the batch line {outcome.kind}"
    record.cost = 0.0 if endpoint.price is not None else None
    return record


def _names(spool_dir: Path, run: str, number: int) -> tuple[Path, Path]:
    return (
        spool_dir / f"{HIDDEN_PREFIX}{run}-{number:08d}.json",
        spool_dir / f"{PUBLISHED_PREFIX}{run}-{number:08d}.json",
    )


def write_hidden(spool_dir: Path, run: str, number: int, records: Iterable[UsageRecord]) -> Path:
    """Write the records' spool lines under the hidden name (synced: the state will say they exist)."""
    hidden, _ = _names(spool_dir, run, number)
    encoder = RecordEncoder()
    data = "".join(encoder.line(record) for record in records).encode()
    fd = os.open(hidden, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    return hidden


def publish_records(state: RunState, spool_dir: Path, run: str, number: int) -> None:
    """Rename outbox file ``number`` to its published name (if not yet) and mark it published."""
    hidden, published = _names(spool_dir, run, number)
    if hidden.exists():
        os.replace(hidden, published)
    with state.transaction() as db:
        db.execute("UPDATE outbox SET published = 1 WHERE number = ?", (number,))


def settle_outbox(state: RunState, spool_dir: Path, run: str) -> None:
    """Finish what a crash cut between the steps (see the module docstring)."""
    pending = [int(row[0]) for row in state.outbox_pending()]
    for number in pending:
        publish_records(state, spool_dir, run, number)
    known = state.outbox_numbers()
    for path in spool_dir.glob(f"{HIDDEN_PREFIX}{run}-*.json"):
        number = int(path.stem.rsplit("-", 1)[1])
        if number not in known:
            path.unlink(missing_ok=True)
