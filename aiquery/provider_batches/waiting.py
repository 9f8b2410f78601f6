"""Waiting for a run's batches: poll with backoff, report progress, and at the deadline cancel and wait for each
batch's final state (an OpenAI batch stays ``cancelling`` for up to 10 minutes, and its finished lines are paid
for: they are stored like any others).

A poll that fails (the provider unreachable, a 5xx) is logged and tried again at the next poll: a batch is never
given up while it may still answer, since its lines would then be paid twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from aiquery.provider_batches.batch_client import ProviderBatchClient
from aiquery.provider_batches.records import BatchState, ProviderBatchError
from aiquery.provider_batches.run_state import BatchRow, RunState

__all__ = ["DEFAULT_FIRST_POLL_S", "DEFAULT_MAX_POLL_S", "Polling", "progress_line", "wait_for_batches"]

logger = logging.getLogger(__name__)

DEFAULT_FIRST_POLL_S = 1.0
DEFAULT_MAX_POLL_S = 60.0
"""Anthropic's and OpenAI's examples poll every minute; the wait starts quicker, for batches of minutes."""
FINAL_PHASES = ("ended", "failed")


@dataclass(frozen=True, slots=True, kw_only=True)
class Polling:
    """How to poll: the first interval, its growth and its cap, and the clock and sleep (injected in tests)."""

    first_s: float = DEFAULT_FIRST_POLL_S
    max_s: float = DEFAULT_MAX_POLL_S
    growth: float = 1.5
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep


async def wait_for_batches(
    state: RunState,
    clients: Mapping[str, ProviderBatchClient],
    *,
    deadline: float,
    polling: Polling | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[str]:
    """Poll every created, unstored batch of the state until each has ended (or failed).

    Args:
        state: the run's state (each poll's counts are written to it).
        clients: the batch client of each endpoint name.
        deadline: when to stop waiting (``polling.clock`` time): every running batch is then cancelled and waited
            for until it ends.
        polling: the poll timing.
        progress: called with a progress line after each poll.

    Returns:
        What happened worth a line in the run's summary (batches cancelled at the deadline).
    """
    polling = polling or Polling()
    started = polling.clock()
    interval = polling.first_s
    notes: list[str] = []
    cancelled: set[int] = set()
    while True:
        rows = [row for row in _waiting(state) if row.endpoint in clients]
        for row in rows:
            await _poll(state, clients[row.endpoint], row)
        rows = [row for row in _waiting(state) if row.endpoint in clients]
        if progress is not None:
            progress(progress_line(state.batches(), polling.clock() - started))
        if not rows:
            return notes
        now = polling.clock()
        if now >= deadline:
            for row in rows:
                if row.number not in cancelled and row.phase == "running":
                    await _cancel(state, clients[row.endpoint], row)
                    notes.append(f"batch {row.provider_id} of {row.endpoint} cancelled: the --batch-wait time ran out")
                cancelled.add(row.number)
            await polling.sleep(polling.first_s)
            continue
        await polling.sleep(min(interval, max(0.0, deadline - now)) or polling.first_s)
        interval = min(polling.max_s, interval * polling.growth)


def _waiting(state: RunState) -> list[BatchRow]:
    return [row for row in state.batches() if row.provider_id is not None and row.phase not in FINAL_PHASES]


async def _poll(state: RunState, client: ProviderBatchClient, row: BatchRow) -> None:
    try:
        found = await client.status(str(row.provider_id))
    except ProviderBatchError as error:
        logger.warning("polling batch %s failed (tried again at the next poll): %s", row.provider_id, error)
        return
    _record(state, row, found)


async def _cancel(state: RunState, client: ProviderBatchClient, row: BatchRow) -> None:
    try:
        _record(state, row, await client.cancel(str(row.provider_id)))
    except ProviderBatchError as error:
        # A batch that ended meanwhile refuses the cancel: the next poll sees it ended.
        logger.warning("cancelling batch %s failed: %s", row.provider_id, error)


def _record(state: RunState, row: BatchRow, found: BatchState) -> None:
    state.update_batch(
        row.number, status=found.status, phase=found.phase, done=found.done, failed=found.failed, errors=found.errors
    )


def progress_line(rows: list[BatchRow], elapsed: float) -> str:
    """``batches: 2 of 3 ended; 940/1000 rows done, 12 failed; chat 500/500, gemini 440/500 (running); 3m05s``."""
    created = [row for row in rows if row.provider_id is not None]
    ended = sum(row.phase in FINAL_PHASES for row in created)
    lines = sum(row.lines for row in created)
    done = sum(min(row.done, row.lines) for row in created)
    failed = sum(row.failed for row in created)
    per_endpoint: dict[str, list[BatchRow]] = {}
    for row in created:
        per_endpoint.setdefault(row.endpoint, []).append(row)
    parts = []
    for name, own in sorted(per_endpoint.items()):
        running = any(row.phase not in FINAL_PHASES for row in own)
        own_done = sum(min(row.done, row.lines) for row in own)
        parts.append(f"{name} {own_done}/{sum(row.lines for row in own)}" + (" (running)" if running else ""))
    minutes, seconds = divmod(int(elapsed), 60)
    return (
        f"batches: {ended} of {len(created)} ended; {done}/{lines} rows done, {failed} failed; "
        + ", ".join(parts)
        + f"; {minutes}m{seconds:02d}s"
    )
