"""Submitting a run's requests: split into the provider's limits, priced against the cap, the intent written to
the state before each create call and the provider's id right after, every batch tagged; and the recovery of
intents a crash left without an id.

A batch's tag is ``<run tag>.<intent number>``: unique, so a resumed run that finds an intent without an id lists
the provider's batches by it (OpenAI ``metadata``, Gemini ``displayName``) and adopts the one it finds, or
creates the batch when the provider has none. Anthropic batches carry no tag: an intent is matched to the one
batch of the listing with its number of lines that no batch of the state holds; with none the create never
reached Anthropic, with several the run stops and says so (cancel the stray ones with ``aiquery batch cancel``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from aiquery.apis.base import APIRequest
from aiquery.errors import AIQueryError
from aiquery.provider_batches.batch_client import ProviderBatchClient
from aiquery.provider_batches.records import BatchLine, BatchState, ProviderBatchError
from aiquery.provider_batches.run_state import BatchRow, RunState

__all__ = ["DEFAULT_OUTPUT_ESTIMATE", "SubmitReport", "line_cost", "recover_intents", "submit_unsent"]

logger = logging.getLogger(__name__)

DEFAULT_OUTPUT_ESTIMATE = 256
"""Output tokens counted for a line that sets no ``max_tokens`` (the cost cap's estimate, as for live calls)."""


class RecoveryError(AIQueryError):
    """An intent's batch cannot be told apart from others at the provider."""


@dataclass
class SubmitReport:
    """What a submit did: batches created, batches the cost cap kept back, and create calls that failed (why)."""

    created: list[BatchRow] = field(default_factory=list)
    held_back: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def line_cost(client: ProviderBatchClient, line: BatchLine, request: APIRequest) -> float:
    """A line's batch cost as the cap counts it: its body's size / 4 input tokens, its ``max_tokens`` output."""
    price = client.endpoint.price
    if price is None:
        return 0.0
    output = request.parameters.get("max_tokens") or request.parameters.get("max_output_tokens")
    output_tokens = int(output) if isinstance(output, int | float) else DEFAULT_OUTPUT_ESTIMATE
    cost = price.batch_cost((len(client.encode(line)) + 1) // 4, output_tokens)
    return cost or 0.0


async def submit_unsent(
    state: RunState,
    client: ProviderBatchClient,
    requests: Mapping[str, APIRequest],
    *,
    tag: str,
    budget: Callable[[float], bool] | None = None,
) -> SubmitReport:
    """Submit ``requests`` (by fingerprint; the endpoint's requests in no batch yet) as batches.

    Args:
        state: the run's state.
        client: the endpoint's batch client.
        requests: what to send, by fingerprint.
        tag: the run's tag; each batch's is ``<tag>.<intent number>``.
        budget: takes a batch's cost and says whether the cap allows it (counting it when it does).
    """
    report = SubmitReport()
    name = client.endpoint.name
    lines = [client.line(fingerprint, request) for fingerprint, request in sorted(requests.items())]
    for group in client.split(lines):
        cost = sum(line_cost(client, line, requests[line.custom_id]) for line in group)
        if budget is not None and not budget(cost):
            report.held_back.append(
                f"{name}: a batch of {len(group)} line(s) was not submitted: its cost ({cost:.4f}) would pass the "
                "spending cap; its rows run live, under the cap"
            )
            continue
        intent = state.add_intent(name, tag, [line.custom_id for line in group], cost)
        try:
            created = await client.submit(group, intent.tag)
        except ProviderBatchError as error:
            # Refused (Gemini's 429 past 100 running batches, a quota) or no answer: the intent stays for
            # recover_intents to settle by listing; the endpoint's other groups wait for the next round.
            report.refused.append(f"{name}: creating a batch of {len(group)} line(s) failed: {error}")
            break
        state.set_created(intent.number, created.id, created.status, created.phase)
        logger.info("created batch %s (%d lines) of endpoint %s", created.id, len(group), name)
        report.created.append(state.batch(intent.number))
    return report


async def recover_intents(state: RunState, client: ProviderBatchClient) -> list[str]:
    """Settle the endpoint's intents without an id: adopt the provider's batch of each, or forget the intent
    (its lines are unsent again) when the provider has none. What was done, one sentence per intent.

    Raises:
        RecoveryError: an Anthropic intent matches several batches.
    """
    said: list[str] = []
    rows = state.batches(client.endpoint.name)
    orphans = [row for row in rows if row.provider_id is None]
    if not orphans:
        return said
    held = {row.provider_id for row in rows if row.provider_id}
    listed: list[BatchState] | None = None
    for row in orphans:
        if client.tagged:
            found = await client.list(row.tag)
        else:
            listed = listed if listed is not None else await client.list(None)
            found = [batch for batch in listed if batch.id not in held and batch.total == row.lines]
            if len(found) > 1:
                ids = ", ".join(batch.id for batch in found[:5])
                raise RecoveryError(
                    f"batch intent {row.tag} of endpoint {row.endpoint} has no id and {len(found)} batches could be "
                    f"it ({ids}): Anthropic batches carry no tag; cancel the strays (aiquery batch cancel) and resume"
                )
        if found:
            batch = found[0]
            held.add(batch.id)
            state.set_created(row.number, batch.id, batch.status, batch.phase)
            said.append(f"found batch {batch.id} of intent {row.tag} at the provider (created before a crash)")
        else:
            state.drop_intent(row.number)
            said.append(f"intent {row.tag} never reached the provider; its {row.lines} line(s) will be submitted")
    return said


def pending_rows(rows: Sequence[BatchRow]) -> list[BatchRow]:
    """The batches still to wait for or to store."""
    return [row for row in rows if row.provider_id is not None and not row.stored]
