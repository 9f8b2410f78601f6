"""One round of a batch run after its collect pass: recover, submit, wait, store (no Spark here).

:func:`send_and_store` takes the state's collected requests of each ``batch = true`` endpoint to the providers and
their answers back into the state, the answer store and the ledger's spool. Run again on the same state (after a
crash, or in the next round) it submits nothing already submitted: it first settles what a crash cut (intents
without an id, usage files not published), then submits only the requests in no batch, waits for every batch not
stored yet, and stores them.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from aiquery.apis.base import APIRequest
from aiquery.apis.request_json import request_from_json
from aiquery.config import Endpoint
from aiquery.provider_batches.batch_client import ProviderBatchClient
from aiquery.provider_batches.clients import client_for
from aiquery.provider_batches.line_records import settle_outbox
from aiquery.provider_batches.provider_http import ProviderHTTP
from aiquery.provider_batches.records import ProviderBatchError
from aiquery.provider_batches.result_storing import LedgerSide, StoreCounts, store_batch
from aiquery.provider_batches.run_state import RunState
from aiquery.provider_batches.submission import recover_intents, submit_unsent
from aiquery.provider_batches.waiting import Polling, wait_for_batches

__all__ = ["RoundReport", "new_run_tag", "send_and_store"]


@dataclass
class RoundReport:
    """What one round did: batches created, lines stored by outcome, and lines worth a line in the summary."""

    created: int = 0
    stored: StoreCounts = field(default_factory=StoreCounts)
    notes: list[str] = field(default_factory=list)


async def send_and_store(
    state: RunState,
    endpoints: Mapping[str, Endpoint],
    *,
    tag: str,
    deadline: float,
    ledger: LedgerSide | None,
    put_answers: Callable[[Mapping[str, str]], None] | None = None,
    budget: Callable[[float], bool] | None = None,
    polling: Polling | None = None,
    progress: Callable[[str], None] | None = None,
) -> RoundReport:
    """Submit the state's unsent requests of ``endpoints`` (by name), wait until ``deadline`` (``polling.clock``
    time; then cancel and wait for the final states), and store every ended batch."""
    polling = polling or Polling()
    report = RoundReport()
    http = ProviderHTTP()
    try:
        clients = {name: client_for(endpoint, http) for name, endpoint in endpoints.items()}
        if ledger is not None:
            settle_outbox(state, ledger.spool_dir, ledger.run)
        for client in clients.values():
            report.notes.extend(await recover_intents(state, client))
        for name, client in clients.items():
            unsent = _decoded(state.unsent(name))
            if unsent:
                submitted = await submit_unsent(state, client, unsent, tag=tag, budget=budget)
                report.created += len(submitted.created)
                report.notes.extend(submitted.held_back + submitted.refused)
                if submitted.refused:  # a create that got no answer may have made its batch: settle it now
                    report.notes.extend(await _settle(state, client))
        report.notes.extend(
            await wait_for_batches(state, clients, deadline=deadline, polling=polling, progress=progress)
        )
        for row in state.batches():
            if row.provider_id is None or row.stored or row.endpoint not in clients:
                continue
            if row.phase not in ("ended", "failed"):
                continue
            requests = _decoded(state.requests_of(row.number))
            found = await store_batch(state, clients[row.endpoint], row, requests, ledger=ledger,
                                      put_answers=put_answers)  # fmt: skip
            _add_counts(report.stored, found)
    finally:
        await http.aclose()
    return report


async def _settle(state: RunState, client: ProviderBatchClient) -> list[str]:
    try:
        return await recover_intents(state, client)
    except ProviderBatchError as error:
        return [f"{client.endpoint.name}: its batches cannot be listed ({error}); a resumed run settles them"]


def _decoded(rows: list[tuple[str, str]]) -> dict[str, APIRequest]:
    return {fingerprint: request_from_json(json.loads(text)) for fingerprint, text in rows}


def _add_counts(total: StoreCounts, found: StoreCounts) -> None:
    total.succeeded += found.succeeded
    total.failed += found.failed
    total.expired += found.expired
    total.cancelled += found.cancelled
    total.notes.extend(found.notes)


def new_run_tag(state: RunState) -> str:
    """The run's tag, made once per state folder (``aiquery-<time>-<random>``) and kept in it."""
    found = state.meta("run")
    if found is None:
        found = f"aiquery-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"
        state.set_meta("run", found)
    return found
