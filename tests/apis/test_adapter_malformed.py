"""2xx bodies that lack what the API promises raise MalformedResponse, with a message naming the cause."""

from __future__ import annotations

from typing import Any

import pytest

from aiquery.apis import APIRequest, MalformedResponse, TokenUsage, get_adapter

REQUEST = APIRequest(prompt="Hello there!", model="m")


def _chat(choices: Any) -> dict[str, Any]:
    return {"object": "chat.completion", "choices": choices}


MALFORMED: list[tuple[str, Any, str]] = [
    # chat
    ("chat", ["not", "an", "object"], "expected the response body to be an object, found an array"),
    ("chat", "<html>ok</html>", "found a string"),
    ("chat", None, "found null"),
    ("chat", {"id": "x", "object": "chat.completion"}, "choices is missing"),
    ("chat", {"error": {"message": "upstream timed out", "code": 504}}, "upstream timed out"),
    ("chat", _chat([]), "choices is an empty array"),
    ("chat", _chat({"0": {}}), "expected choices to be an array, found an object"),
    ("chat", _chat(["text"]), "expected choices[0] to be an object, found a string"),
    ("chat", _chat([{"finish_reason": "stop"}]), "expected choices[0].message to be an object, found null"),
    (
        "chat",
        _chat([{"message": {"role": "assistant", "content": None}, "finish_reason": "content_filter"}]),
        "found null (finish_reason: content_filter)",
    ),
    ("chat", _chat([{"message": {"content": None, "refusal": "I can't help with that."}}]), "refused"),
    ("chat", _chat([{"message": {"content": 42}}]), "content to be a string, found a number"),
    ("chat", _chat([{"message": {"content": [{"type": "text", "text": None}]}}]), "text to be a string"),
    # embeddings
    ("embeddings", {"object": "list", "model": "m"}, "data is missing"),
    ("embeddings", {"data": []}, "data is an empty array"),
    ("embeddings", {"data": [None]}, "expected data[0] to be an object"),
    ("embeddings", {"data": [{"embedding": "AAAAPwAAgL8="}]}, "array of numbers, found a string"),
    ("embeddings", {"data": [{"embedding": []}]}, "found an empty array"),
    ("embeddings", {"data": [{"embedding": [0.1, "0.2"]}]}, "holds a string, not a number"),
    ("embeddings", {"data": [{"embedding": [0.1, True]}]}, "holds a boolean, not a number"),
    # responses (and openai-responses, same code)
    ("responses", {"object": "response", "status": "completed"}, "output is missing"),
    ("responses", {"output": {"type": "message"}}, "expected output to be an array"),
    (
        "responses",
        {"status": "completed", "output": [{"type": "reasoning", "summary": []}]},
        "no message item (found: reasoning)",
    ),
    ("responses", {"status": "completed", "output": []}, "no message item (found: nothing)"),
    ("responses", {"output": [{"type": "message", "content": "hi"}]}, "expected output message 0.content"),
    (
        "openai-responses",
        {"output": [{"type": "message", "content": [{"type": "refusal", "refusal": "No."}]}]},
        "refused to answer: No.",
    ),
    (
        "openai-responses",
        {"output": [{"type": "message", "content": [{"type": "output_text", "text": 3}]}]},
        "text to be a string, found a number",
    ),
    # anthropic
    ("anthropic", {"type": "message", "stop_reason": "end_turn"}, "content is missing"),
    ("anthropic", {"content": "hello"}, "expected content to be an array, found a string"),
    ("anthropic", {"content": ["hello"]}, "expected content[0] to be an object"),
    ("anthropic", {"content": [{"type": "text"}]}, "expected content[0].text to be a string, found null"),
    # gemini
    (
        "gemini",
        {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": {"promptTokenCount": 4}},
        "the prompt was blocked: PROHIBITED_CONTENT",
    ),
    ("gemini", {"usageMetadata": {"promptTokenCount": 4}}, "candidates is missing"),
    ("gemini", {"candidates": []}, "candidates is an empty array"),
    ("gemini", {"candidates": [{"finishReason": "SAFETY", "index": 0}]}, "no content (finishReason: SAFETY)"),
    ("gemini", {"candidates": [{"content": {"parts": {"text": "x"}}}]}, "parts to be an array"),
    ("gemini", {"candidates": [{"content": {"parts": [{"text": ["x"]}]}}]}, "parts[0].text to be a string"),
]


@pytest.mark.parametrize(("api", "body", "message"), MALFORMED, ids=[f"{c[0]}-{i}" for i, c in enumerate(MALFORMED)])
def test_malformed_body_raises_with_a_clear_message(api: str, body: Any, message: str) -> None:
    with pytest.raises(MalformedResponse) as raised:
        get_adapter(api).parse_response(body, REQUEST)
    assert message in str(raised.value)


def test_partial_usage_estimates_only_the_missing_count() -> None:
    body = _chat([{"message": {"content": "General Kenobi!"}, "finish_reason": "stop"}])
    body["usage"] = {"prompt_tokens": 11}

    usage = get_adapter("chat").parse_response(body, REQUEST).usage

    # "General Kenobi!" is 15 characters: (15 + 1) // 4 = 4
    assert usage == TokenUsage(input_tokens=11, output_tokens=4, total_tokens=15, estimated=True)


@pytest.mark.parametrize("bad", [-3, "12", True, 1.5, None])
def test_nonsense_counts_are_unknown_not_fatal(bad: Any) -> None:
    body = {
        "content": [{"type": "text", "text": "abc"}],
        "usage": {"input_tokens": bad, "output_tokens": bad},
    }

    usage = get_adapter("anthropic").parse_response(body, REQUEST).usage

    # "Hello there!" is 12 characters: (12 + 1) // 4 = 3; "abc": (3 + 1) // 4 = 1
    assert usage == TokenUsage(input_tokens=3, output_tokens=1, total_tokens=4, estimated=True)


def test_total_is_input_plus_output_even_when_the_provider_says_otherwise() -> None:
    body = _chat([{"message": {"content": "x"}}])
    body["usage"] = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 999}

    assert get_adapter("chat").parse_response(body, REQUEST).usage.total_tokens == 15


def test_unknown_finish_reasons_pass_through() -> None:
    anthropic = {"content": [], "stop_reason": "pause_turn", "usage": {"input_tokens": 1, "output_tokens": 0}}
    gemini = {"candidates": [{"content": {"parts": []}, "finishReason": "MALFORMED_FUNCTION_CALL"}]}

    assert get_adapter("anthropic").parse_response(anthropic, REQUEST).finish_reason == "pause_turn"
    assert get_adapter("gemini").parse_response(gemini, REQUEST).finish_reason == "malformed_function_call"
