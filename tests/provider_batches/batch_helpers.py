"""Helpers of the provider-batch tests: endpoints pointing at the emulator's batch APIs, and a poll loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiquery.apis.base import APIRequest
from aiquery.config import Endpoint, load_settings
from aiquery.provider_batches import BatchState, ProviderBatchClient, ProviderHTTP, client_for

T = TypeVar("T")

FAMILIES = {
    "chat": {"api": "chat", "model": "gpt-6.2-sol", "path": "/v1"},
    "embeddings": {"api": "embeddings", "model": "text-embedding-3-small", "path": "/v1"},
    "responses": {"api": "openai-responses", "model": "gpt-6.2-sol", "path": "/v1"},
    "anthropic": {"api": "anthropic", "model": "claude-sonnet-5", "path": ""},
    "gemini": {"api": "gemini", "model": "gemini-3-flash", "path": ""},
}
"""One endpoint of each wire format with a batch API; ``path`` is what the SDK's base URL adds to the host."""
POLL_S = 0.05
WAIT_S = 20.0


def endpoint(gateway: Any, family: str) -> Endpoint:
    """An endpoint of ``family`` with ``batch = true`` whose base URL is the emulator's, as the SDK's would be."""
    options = FAMILIES[family]
    token = {"DATABRICKS_TOKEN": gateway.token, "DATABRICKS_HOST": gateway.url}
    settings = load_settings(token).with_endpoint(
        family, api=options["api"], model=options["model"], base_url=gateway.url + options["path"], batch=True
    )
    return settings.endpoint(family)


def requests(family: str, count: int, prefix: str = "row") -> dict[str, APIRequest]:
    """``count`` distinct requests by line id."""
    model = FAMILIES[family]["model"]
    return {f"{prefix}-{index}": APIRequest(prompt=f"Say something about parcel {index}.", model=model)
            for index in range(count)}  # fmt: skip


def run(work: Callable[[ProviderBatchClient], Awaitable[T]], gateway: Any, family: str, **options: Any) -> T:
    """Run ``work`` with a client of ``family`` on a fresh event loop, closing its HTTP session after."""

    async def scenario() -> T:
        http = ProviderHTTP()
        client = client_for(endpoint(gateway, family), http)
        for name, value in options.items():
            setattr(client, name, value)
        try:
            return await work(client)
        finally:
            await http.aclose()

    return asyncio.run(scenario())


async def wait_until_ended(client: ProviderBatchClient, state: BatchState) -> BatchState:
    """Poll until the batch has ended (or failed)."""
    deadline = time.monotonic() + WAIT_S
    while state.phase not in ("ended", "failed"):
        assert time.monotonic() < deadline, f"batch {state.id} still {state.status} after {WAIT_S} s"
        await asyncio.sleep(POLL_S)
        state = await client.status(state.id)
    return state


async def submit(client: ProviderBatchClient, wanted: dict[str, APIRequest], tag: str = "run-1") -> BatchState:
    """Submit ``wanted`` as one batch."""
    lines = [client.line(custom_id, request) for custom_id, request in wanted.items()]
    return await client.submit(lines, tag)


async def outcomes(client: ProviderBatchClient, state: BatchState, wanted: dict[str, APIRequest]) -> dict[str, Any]:
    """Every line's outcome by id."""
    return {outcome.custom_id: outcome async for outcome in client.results(state, wanted)}
