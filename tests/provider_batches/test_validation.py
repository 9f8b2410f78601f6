"""Batches the providers refuse: duplicate line ids, a wrong url, mixed models; and answers a client must survive."""

from __future__ import annotations

import dataclasses
from typing import Any

import aiohttp
import pytest
from batch_helpers import requests, run, submit, wait_until_ended

from aiquery.apis.base import APIRequest
from aiquery.provider_batches import BatchLine, ProviderBatchClient, ProviderBatchError, ProviderHTTP


def test_openai_fails_a_batch_with_a_duplicate_custom_id(batch_gateway: Any) -> None:
    async def work(client: ProviderBatchClient) -> Any:
        line = client.line("same", APIRequest(prompt="hello", model="gpt-6.2-sol"))
        return await client.submit([line, line], "run-1")

    state = run(work, batch_gateway, "chat")
    assert state.phase == "failed" and state.status == "failed"
    assert len(state.errors) == 1 and state.errors[0].startswith("duplicate_custom_id (line 2)")


def test_openai_fails_a_file_of_two_models(batch_gateway: Any) -> None:
    async def work(client: ProviderBatchClient) -> Any:
        lines = [client.line(f"l{model}", APIRequest(prompt="hello", model=model)) for model in ("m-a", "m-b")]
        return await client.submit(lines, "run-1")

    state = run(work, batch_gateway, "chat")
    assert state.phase == "failed"
    assert state.errors[0].startswith("model_mismatch (line 2)")


def test_openai_fails_a_line_whose_url_is_not_the_batch_endpoint(batch_gateway: Any) -> None:
    async def work(client: ProviderBatchClient) -> Any:
        line = client.line("l1", APIRequest(prompt="hello", model="gpt-6.2-sol"))
        wrong = client.encode(line).replace(b'"/v1/chat/completions"', b'"/v1/embeddings"')
        form = aiohttp.FormData()
        form.add_field("purpose", "batch")
        form.add_field("file", wrong, filename="f.jsonl")
        uploaded, _ = await client.request("POST", f"{client.base_url}/files", data=form)
        body = {"input_file_id": uploaded["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}
        created, _ = await client.request("POST", f"{client.base_url}/batches", json_body=body)
        return client.state(created)  # type: ignore[attr-defined]

    state = run(work, batch_gateway, "chat")
    assert state.phase == "failed" and state.errors[0].startswith("url_mismatch (line 1)")


@pytest.mark.parametrize("family", ["anthropic", "gemini"])
def test_anthropic_and_gemini_refuse_a_duplicate_id_at_once(batch_gateway: Any, family: str) -> None:
    async def work(client: ProviderBatchClient) -> Any:
        line = client.line("same", next(iter(requests(family, 1).values())))
        with pytest.raises(ProviderBatchError) as refused:
            await client.submit([line, line], "run-1")
        return refused.value

    error = run(work, batch_gateway, family)
    assert error.status == 400


def test_a_results_line_past_the_bound_is_refused(batch_gateway: Any) -> None:
    # An answer of about 4 KB in a results file read with lines bounded at 1 KB.
    batch_gateway.configure(batch_delay=0.0, output_tokens=1000)
    wanted = requests("chat", 1)

    async def work(client: ProviderBatchClient) -> Any:
        client.http = ProviderHTTP(max_line_bytes=1024)
        state = await submit(client, wanted)
        state = await client.status(state.id)
        with pytest.raises(ProviderBatchError, match="passes 1024 bytes"):
            [outcome async for outcome in client.results(state, wanted)]
        await client.http.aclose()

    run(work, batch_gateway, "chat")


def test_a_line_whose_answer_is_unreadable_is_that_lines_error(batch_gateway: Any) -> None:
    wanted = requests("anthropic", 1)

    async def work(client: ProviderBatchClient) -> Any:
        return client.outcome("row-0", "answered", 200, {"content": "not a list"}, wanted["row-0"])

    outcome = run(work, batch_gateway, "anthropic")
    assert outcome.kind == "errored" and outcome.answer is None and outcome.error


def test_a_line_the_results_never_mention_is_reported(batch_gateway: Any) -> None:
    batch_gateway.configure(batch_delay=0.0)
    wanted = requests("chat", 2)

    async def work(client: ProviderBatchClient) -> Any:
        state = await client.submit([client.line("row-0", wanted["row-0"])], "run-1")
        state = await client.status(state.id)
        return {outcome.custom_id: outcome async for outcome in client.results(state, wanted)}

    found = run(work, batch_gateway, "chat")
    assert found["row-0"].kind == "succeeded"
    assert found["row-1"].kind == "errored" and "missing from the results" in (found["row-1"].error or "")


def test_a_batch_line_is_a_plain_record() -> None:
    line = BatchLine("fp", {"model": "m"}, "m")
    assert line.custom_id == "fp" and line.model == "m"


def test_gemini_refuses_a_batch_past_its_hundred_running_ones(batch_gateway: Any) -> None:
    batch_gateway.configure(batch_delay=60.0)
    wanted = requests("gemini", 1)

    async def work(client: ProviderBatchClient) -> Any:
        client.inline = True  # type: ignore[attr-defined]
        for _ in range(100):
            await submit(client, wanted)
        with pytest.raises(ProviderBatchError) as refused:
            await submit(client, wanted)
        return refused.value

    assert run(work, batch_gateway, "gemini").status == 429


def test_a_line_the_api_refuses_is_that_lines_error_read_as_live(batch_gateway: Any) -> None:
    # Under API version 2026-10-21 Anthropic refuses sampling parameters: the line errs, the batch does not.
    wanted = {
        "plain": APIRequest(prompt="hello", model="claude-sonnet-5"),
        "sampled": APIRequest(prompt="hello", model="claude-sonnet-5", parameters={"temperature": 0.2}),
    }

    async def work(client: ProviderBatchClient) -> Any:
        client.endpoint = dataclasses.replace(client.endpoint, anthropic_version="2026-10-21")
        state = await wait_until_ended(client, await submit(client, wanted))
        return {outcome.custom_id: outcome async for outcome in client.results(state, wanted)}

    found = run(work, batch_gateway, "anthropic")
    assert found["plain"].kind == "succeeded"
    assert found["sampled"].kind == "errored" and found["sampled"].status == 400
    assert "temperature" in (found["sampled"].error or "")
