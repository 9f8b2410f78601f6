"""The providers' batch APIs: half-price calls sent as a file (or list) and answered within a day.

Named for what it talks to, so it is never confused with the engine's row batches (``engine/batch.py``) or the
usage spool's batches (``usage/batches.py``). One client per API, chosen by the endpoint's wire format
(:data:`~aiquery.provider_batches.clients.CLIENTS`): OpenAI's Batch API (``chat``, ``embeddings``, ``responses``,
``openai-responses``), Anthropic's Message Batches (``anthropic``) and Gemini's batch mode (``gemini``)::

    http = ProviderHTTP()
    client = client_for(endpoint, http)
    lines = [client.line(fingerprint, request) for fingerprint, request in requests.items()]
    for group in client.split(lines):
        state = await client.submit(group, tag="run-42")
    ...
    state = await client.status(state.id)            # poll until state.phase == "ended"
    async for outcome in client.results(state, requests):
        ...                                           # LineOutcome: custom_id, kind, answer (Answer), error

A line's ``custom_id`` is the caller's (the run uses the request's fingerprint); its body is the adapter's
``build_body``, and a succeeded line is read by the adapter's ``parse_response``, so text and usage are exactly a
live call's. Results are streamed one line at a time.

The run built on them (no Spark here; its collect and run passes are in :mod:`aiquery.jobs.batch_run`):
:mod:`~aiquery.provider_batches.run_state` (the state folder), :mod:`~aiquery.provider_batches.submission`
(intents, tags, recovery), :mod:`~aiquery.provider_batches.waiting`, :mod:`~aiquery.provider_batches.
result_storing` and :mod:`~aiquery.provider_batches.line_records` (usage records exactly once), tied together by
:func:`~aiquery.provider_batches.provider_run.send_and_store`. See ``docs/batch_mode.md``.
"""

from __future__ import annotations

from aiquery.provider_batches.anthropic_batches import AnthropicBatchClient
from aiquery.provider_batches.batch_client import ProviderBatchClient
from aiquery.provider_batches.clients import CLIENTS, client_for
from aiquery.provider_batches.gemini_batches import GeminiBatchClient
from aiquery.provider_batches.limits import (
    ANTHROPIC_LIMITS,
    GEMINI_LIMITS,
    OPENAI_LIMITS,
    ProviderLimits,
    split_lines,
)
from aiquery.provider_batches.openai_batches import OpenAIBatchClient
from aiquery.provider_batches.provider_http import ProviderHTTP
from aiquery.provider_batches.records import BatchLine, BatchState, LineOutcome, ProviderBatchError

__all__ = [
    "ANTHROPIC_LIMITS",
    "CLIENTS",
    "GEMINI_LIMITS",
    "OPENAI_LIMITS",
    "AnthropicBatchClient",
    "BatchLine",
    "BatchState",
    "GeminiBatchClient",
    "LineOutcome",
    "OpenAIBatchClient",
    "ProviderBatchClient",
    "ProviderBatchError",
    "ProviderHTTP",
    "ProviderLimits",
    "client_for",
    "split_lines",
]
