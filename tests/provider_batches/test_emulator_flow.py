"""The three batch APIs on the emulator, driven by aiquery's clients: create, progress on the clock, results read
by the live adapters, failed lines, expiry, cancellation, listing by tag."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from batch_helpers import FAMILIES, outcomes, requests, run, submit, wait_until_ended

from aiquery.provider_batches import ProviderBatchClient

ALL = ["chat", "embeddings", "responses", "anthropic", "gemini"]


@pytest.mark.parametrize("family", ALL)
def test_a_batch_runs_on_the_clock_and_every_line_is_answered(batch_gateway: Any, family: str) -> None:
    wanted = requests(family, 12)

    async def work(client: ProviderBatchClient) -> tuple[Any, Any, Any, float]:
        started = time.monotonic()
        state = await submit(client, wanted)
        first = await client.status(state.id)
        ended = await wait_until_ended(client, first)
        return first, ended, await outcomes(client, ended, wanted), time.monotonic() - started

    first, ended, found, elapsed = run(work, batch_gateway, family)
    assert first.phase == "running" and first.done < 12
    assert ended.phase == "ended" and ended.total == 12 and ended.done == 12 and ended.failed == 0
    assert elapsed >= 0.4
    assert set(found) == set(wanted)
    assert {outcome.kind for outcome in found.values()} == {"succeeded"}
    assert all(outcome.answer.usage.input_tokens > 0 for outcome in found.values())
    stats = batch_gateway.stats()
    assert stats["by_route"][f"batch/{_api_family(family)}"] == {"200": 12}
    assert stats["tokens"]["input"] == sum(outcome.answer.usage.input_tokens for outcome in found.values())


def _api_family(family: str) -> str:
    return family if family in ("anthropic", "gemini") else "openai"


@pytest.mark.parametrize("family", ALL)
def test_a_batch_line_is_answered_as_the_live_call(batch_gateway: Any, family: str) -> None:
    wanted = requests(family, 1)
    request = wanted["row-0"]

    async def work(client: ProviderBatchClient) -> tuple[Any, Any]:
        state = await wait_until_ended(client, await submit(client, wanted))
        (batched,) = (await outcomes(client, state, wanted)).values()
        # The live call goes to the emulator's gateway route of the same wire format.
        url = client.adapter.url(batch_gateway.url + client.adapter.gateway_path, request.model)
        async with aiohttp.ClientSession() as session:
            body = client.adapter.build_body(request)
            async with session.post(url, json=body, headers=client.headers()) as response:
                assert response.status == 200, await response.text()
                live = client.adapter.parse_response(await response.json(), request)
        return batched.answer, live

    batched, live = run(work, batch_gateway, family)
    assert batched.value == live.value
    assert batched.usage == live.usage


@pytest.mark.parametrize("family", ["chat", "anthropic", "gemini"])
def test_a_share_of_lines_fails_and_is_reported_per_line(batch_gateway: Any, family: str) -> None:
    batch_gateway.configure(batch_failed_share=0.3, batch_delay=0.1)
    wanted = requests(family, 40)

    async def work(client: ProviderBatchClient) -> tuple[Any, dict[str, Any]]:
        state = await wait_until_ended(client, await submit(client, wanted))
        return state, await outcomes(client, state, wanted)

    state, found = run(work, batch_gateway, family)
    errored = [outcome for outcome in found.values() if outcome.kind == "errored"]
    assert 0 < len(errored) < 40
    assert state.failed == len(errored)
    assert all(outcome.status == 500 and outcome.error for outcome in errored)
    assert sum(outcome.kind == "succeeded" for outcome in found.values()) == 40 - len(errored)


@pytest.mark.parametrize(("family", "partial"), [("chat", True), ("anthropic", True), ("gemini", False)])
def test_an_expired_batch_keeps_what_finished_except_on_gemini(batch_gateway: Any, family: str, partial: bool) -> None:
    # Lines finish over 2 s; OpenAI and Anthropic expire at 0.5 s, Gemini at twice that, with no results.
    batch_gateway.configure(batch_delay=2.0, batch_expire_s=0.5)
    wanted = requests(family, 20)

    async def work(client: ProviderBatchClient) -> tuple[Any, dict[str, Any]]:
        state = await wait_until_ended(client, await submit(client, wanted))
        return state, await outcomes(client, state, wanted)

    state, found = run(work, batch_gateway, family)
    assert state.status in ("expired", "ended", "BATCH_STATE_EXPIRED")
    kinds = [outcome.kind for outcome in found.values()]
    assert len(kinds) == 20
    if partial:
        assert 0 < kinds.count("succeeded") < 20
        assert kinds.count("expired") == 20 - kinds.count("succeeded")
    else:
        assert kinds == ["expired"] * 20


@pytest.mark.parametrize(("family", "cancelling"), [("chat", "cancelling"), ("anthropic", "canceling"),
                                                    ("gemini", "BATCH_STATE_RUNNING")])  # fmt: skip
def test_a_cancelled_batch_stays_cancelling_a_while_then_ends(batch_gateway: Any, family: str, cancelling: str) -> None:
    batch_gateway.configure(batch_delay=4.0, batch_cancel_s=0.5)
    wanted = requests(family, 20)

    async def work(client: ProviderBatchClient) -> tuple[Any, Any, dict[str, Any]]:
        state = await submit(client, wanted)
        await asyncio.sleep(0.6)
        asked = await client.cancel(state.id)
        ended = await wait_until_ended(client, asked)
        return asked, ended, await outcomes(client, ended, wanted)

    asked, ended, found = run(work, batch_gateway, family)
    assert asked.status == cancelling and asked.phase in ("cancelling", "running")
    assert ended.phase == "ended"
    kinds = [outcome.kind for outcome in found.values()]
    assert kinds.count("cancelled") > 0
    if family == "gemini":
        assert kinds == ["cancelled"] * 20
    else:
        assert 0 < kinds.count("succeeded") < 20


@pytest.mark.parametrize("family", ["chat", "gemini"])
def test_a_run_finds_its_batches_by_tag(batch_gateway: Any, family: str) -> None:
    async def work(client: ProviderBatchClient) -> tuple[str, str, list[Any]]:
        mine = await submit(client, requests(family, 2), tag="run-a")
        other = await submit(client, requests(family, 2), tag="run-b")
        return mine.id, other.id, await client.list("run-a")

    mine, other, found = run(work, batch_gateway, family)
    assert [state.id for state in found] == [mine]
    assert found[0].tag == "run-a" and other != mine


def test_anthropic_batches_are_listed_without_a_tag(batch_gateway: Any) -> None:
    async def work(client: ProviderBatchClient) -> tuple[set[str], list[Any]]:
        ids = {(await submit(client, requests("anthropic", 2), tag=tag)).id for tag in ("run-a", "run-b")}
        return ids, await client.list("run-a")

    ids, found = run(work, batch_gateway, "anthropic")
    assert {state.id for state in found} == ids
    assert all(state.tag is None for state in found)


def test_gemini_inline_requests_come_back_inline(batch_gateway: Any) -> None:
    wanted = requests("gemini", 5)

    async def work(client: ProviderBatchClient) -> tuple[Any, dict[str, Any]]:
        state = await wait_until_ended(client, await submit(client, wanted))
        return state, await outcomes(client, state, wanted)

    state, found = run(work, batch_gateway, "gemini", inline=True)
    assert state.results == "inline"
    assert {outcome.kind for outcome in found.values()} == {"succeeded"}
    assert set(found) == set(wanted) and FAMILIES["gemini"]["api"] == "gemini"
