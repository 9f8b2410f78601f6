"""Deterministic answers, token counts and their native usage shapes, embeddings."""

from __future__ import annotations

import base64
import json
import math
import struct
from typing import Any

import pytest
from gateway_http import (
    ANTHROPIC,
    CHAT,
    EMBEDDINGS,
    GEMINI,
    OPENAI_RESPONSES,
    RESPONSES,
    TEXT_ROUTES,
    answer_text,
    request_body,
)


def tokens(text: str) -> int:
    return (len(text) + 3) // 4


@pytest.mark.parametrize("path", TEXT_ROUTES)
def test_answers_are_deterministic_and_differ_between_prompts(post: Any, path: str) -> None:
    first = answer_text(path, post(path, request_body(path, "Summarize: alpha beta gamma")).json())
    again = answer_text(path, post(path, request_body(path, "Summarize: alpha beta gamma")).json())
    other = answer_text(path, post(path, request_body(path, "Summarize: alpha beta delta")).json())
    assert first == again
    assert first != other


def test_prompt_and_answer_token_counts(post: Any) -> None:
    prompt = "Summarize the following text: the quick brown fox jumps over the lazy dog"
    body = post(CHAT, request_body(CHAT, prompt)).json()
    assert body["usage"]["prompt_tokens"] == tokens(prompt)
    assert body["usage"]["completion_tokens"] == tokens(body["choices"][0]["message"]["content"])


@pytest.mark.parametrize(
    ("path", "finish"),
    [
        (CHAT, lambda body: body["choices"][0]["finish_reason"] == "length"),
        (RESPONSES, lambda body: body["status"] == "incomplete"),
        (OPENAI_RESPONSES, lambda body: body["incomplete_details"] == {"reason": "max_output_tokens"}),
        (ANTHROPIC, lambda body: body["stop_reason"] == "max_tokens"),
        (GEMINI, lambda body: body["candidates"][0]["finishReason"] == "MAX_TOKENS"),
    ],
)
def test_max_tokens_bounds_the_answer(post: Any, path: str, finish: Any) -> None:
    body = post(path, request_body(path, "[[tokens:500]] a long story", max_tokens=7)).json()
    assert tokens(answer_text(path, body)) <= 7
    assert finish(body)


def test_output_tokens_setting_and_token_directive(post: Any, gateway: Any) -> None:
    gateway.configure(output_tokens=300)
    configured = answer_text(CHAT, post(CHAT, request_body(CHAT, "tell me")).json())
    directed = answer_text(CHAT, post(CHAT, request_body(CHAT, "tell me [[tokens:2000]]")).json())
    assert abs(tokens(configured) - 300) <= 2
    assert abs(tokens(directed) - 2000) <= 2


def test_cached_and_reasoning_tokens_in_each_usage_shape(post: Any, gateway: Any) -> None:
    gateway.configure(cached_tokens=0.5, cache_creation_tokens=0.25, reasoning_tokens=7)
    prompt = "x" * 400  # 100 input tokens: 50 read from cache, 25 written to it
    chat = post(CHAT, request_body(CHAT, prompt)).json()["usage"]
    assert chat["prompt_tokens"] == 100
    assert chat["prompt_tokens_details"]["cached_tokens"] == 50
    assert chat["completion_tokens_details"]["reasoning_tokens"] == 7
    responses = post(RESPONSES, request_body(RESPONSES, prompt)).json()
    assert responses["usage"]["input_tokens_details"]["cached_tokens"] == 50
    assert responses["usage"]["output_tokens_details"]["reasoning_tokens"] == 7
    assert responses["output"][0]["type"] == "reasoning"  # clients must look past it for the message
    anthropic = post(ANTHROPIC, request_body(ANTHROPIC, prompt)).json()["usage"]
    # Anthropic's input_tokens excludes cache reads and writes.
    assert (anthropic["input_tokens"], anthropic["cache_read_input_tokens"]) == (25, 50)
    assert anthropic["cache_creation_input_tokens"] == 25
    gemini = post(GEMINI, request_body(GEMINI, prompt)).json()["usageMetadata"]
    assert (gemini["promptTokenCount"], gemini["cachedContentTokenCount"], gemini["thoughtsTokenCount"]) == (
        100,
        50,
        7,
    )
    assert gemini["totalTokenCount"] == 100 + gemini["candidatesTokenCount"] + 7


def test_embeddings_are_unit_vectors_and_deterministic(post: Any) -> None:
    first = post(EMBEDDINGS, {"model": "e", "input": ["alpha", "beta"]}).json()["data"]
    again = post(EMBEDDINGS, {"model": "e", "input": "alpha"}).json()["data"]
    alpha, beta = first[0]["embedding"], first[1]["embedding"]
    assert math.isclose(math.sqrt(sum(value * value for value in alpha)), 1.0, abs_tol=1e-9)
    assert math.isclose(math.sqrt(sum(value * value for value in beta)), 1.0, abs_tol=1e-9)
    assert again[0]["embedding"] == alpha
    assert alpha != beta


def test_embedding_dimensions(post: Any, gateway: Any) -> None:
    assert len(post(EMBEDDINGS, {"model": "e", "input": "a", "dimensions": 8}).json()["data"][0]["embedding"]) == 8
    gateway.configure(embedding_dim=16)
    assert len(post(EMBEDDINGS, {"model": "e", "input": "a"}).json()["data"][0]["embedding"]) == 16


def test_embedding_base64_encoding(post: Any) -> None:
    floats = post(EMBEDDINGS, {"model": "e", "input": "a", "dimensions": 4}).json()["data"][0]["embedding"]
    encoded = post(EMBEDDINGS, {"model": "e", "input": "a", "dimensions": 4, "encoding_format": "base64"}).json()
    decoded = struct.unpack("<4f", base64.b64decode(encoded["data"][0]["embedding"]))
    assert all(math.isclose(x, y, rel_tol=1e-6) for x, y in zip(decoded, floats, strict=True))


def test_loose_answers_wrap_structured_output_in_words() -> None:
    from aiquery.gateway.canned_answers import Ask, compose_reply
    from aiquery.gateway.settings import GatewayConfig

    label = {"type": "object", "properties": {"label": {"type": "string", "enum": ["urgent", "later"]}}}
    fields = {"type": "object", "properties": {"person": {"type": "string"}, "company": {"type": "string"}}}
    loose = GatewayConfig().updated({"loose_answers": True})
    strict = compose_reply(Ask(model="m", prompt="p", json_mode="schema", schema=label), GatewayConfig(), None)
    worded = compose_reply(Ask(model="m", prompt="p", json_mode="schema", schema=label), loose, None)
    assert worded.text == f"The answer is: {json.loads(strict.text)['label'].upper()}."
    extraction = compose_reply(Ask(model="m", prompt="p", json_mode="schema", schema=fields), loose, None).text
    assert extraction.startswith("Here is what I found:\n```json\n") and '"Person": ' in extraction
    with pytest.raises(ValueError, match="loose_answers must be true or false"):
        GatewayConfig().updated({"loose_answers": "yes"})
