"""Each route's happy path and shape, unknown routes, authentication and request validation."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from gateway_http import (
    ALL_ROUTES,
    ANTHROPIC,
    CHAT,
    EMBEDDINGS,
    GEMINI,
    OPENAI_RESPONSES,
    RESPONSES,
    TEXT_ROUTES,
    answer_text,
    error_code,
    request_body,
    send,
)

from aiquery.gateway import start_gateway


def test_chat_completion_shape(post: Any) -> None:
    response = post(CHAT, request_body(CHAT, "Summarize: the cat sat on the mat"))
    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == "chat-model"
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert "cat sat on the mat" in choice["message"]["content"]
    assert choice["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == 0
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 0


def test_embeddings_shape(post: Any) -> None:
    body = post(EMBEDDINGS, {"model": "embed-model", "input": ["one", "two", "three"]}).json()
    assert body["object"] == "list"
    assert body["model"] == "embed-model"
    assert [item["index"] for item in body["data"]] == [0, 1, 2]
    assert all(item["object"] == "embedding" and len(item["embedding"]) == 1024 for item in body["data"])
    # (chars + 3) // 4 per input: 1 + 1 + 2
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] == 4


@pytest.mark.parametrize("path", [RESPONSES, OPENAI_RESPONSES])
def test_responses_shape(post: Any, path: str) -> None:
    body = post(path, request_body(path, "What is Databricks?", instructions="Be brief.")).json()
    assert body["object"] == "response"
    assert body["status"] == "completed"
    assert body["id"].startswith("resp_")
    message = body["output"][0]
    assert message["type"] == "message"
    assert message["content"][0]["type"] == "output_text"
    assert "Databricks" in message["content"][0]["text"]
    usage = body["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["input_tokens_details"] == {"cached_tokens": 0}
    assert usage["output_tokens_details"] == {"reasoning_tokens": 0}


def test_responses_accepts_a_plain_string_and_content_parts(post: Any) -> None:
    plain = post(RESPONSES, {"model": "m", "input": "Hello there"}).json()
    parts = post(
        RESPONSES,
        {
            "model": "m",
            "input": [{"role": "user", "content": [{"type": "input_text", "text": "Hello there"}]}],
        },
    ).json()
    assert answer_text(RESPONSES, plain) == answer_text(RESPONSES, parts)


def test_anthropic_shape(post: Any) -> None:
    body = post(ANTHROPIC, request_body(ANTHROPIC, "Hello!", system="You are terse.")).json()
    assert body["type"] == "message"
    assert body["role"] == "assistant"
    assert body["id"].startswith("msg_")
    assert body["content"][0]["type"] == "text"
    assert body["stop_reason"] == "end_turn"
    assert set(body["usage"]) >= {
        "input_tokens",
        "output_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
    }


def test_gemini_shape_takes_model_from_the_url(post: Any) -> None:
    body = post(GEMINI, request_body(GEMINI, "Hello!", systemInstruction={"parts": [{"text": "Be kind."}]})).json()
    candidate = body["candidates"][0]
    assert candidate["content"]["role"] == "model"
    assert candidate["finishReason"] == "STOP"
    assert body["modelVersion"] == "gem-model"
    usage = body["usageMetadata"]
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["candidatesTokenCount"]
    assert usage["cachedContentTokenCount"] == 0 and usage["thoughtsTokenCount"] == 0


def test_unknown_route_is_a_databricks_404(post: Any) -> None:
    response = post("/ai-gateway/mlflow/v1/completions", {"model": "x"})
    assert response.status == 404
    assert response.json()["error_code"] == "ENDPOINT_NOT_FOUND"
    assert "message" in response.json()


def test_get_on_a_route_is_refused(post: Any) -> None:
    assert post(CHAT, method="GET").status == 405


@pytest.mark.parametrize("path", ALL_ROUTES)
@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_missing_or_wrong_token_is_401_in_the_route_shape(post: Any, path: str, token: str | None) -> None:
    response = post(path, request_body(path, "hi"), token=token)
    assert response.status == 401
    expected = {
        CHAT: "UNAUTHENTICATED",
        EMBEDDINGS: "UNAUTHENTICATED",
        RESPONSES: "UNAUTHENTICATED",
        OPENAI_RESPONSES: "invalid_api_key",
        ANTHROPIC: "authentication_error",
        GEMINI: "UNAUTHENTICATED",
    }[path]
    assert error_code(path, response.json()) == expected


def test_native_key_headers(post: Any, gateway: Any) -> None:
    anthropic = post(ANTHROPIC, request_body(ANTHROPIC, "hi"), token=None, headers={"x-api-key": gateway.token})
    gemini = post(GEMINI, request_body(GEMINI, "hi"), token=None, headers={"x-goog-api-key": gateway.token})
    gemini_query = post(GEMINI + f"?key={gateway.token}", request_body(GEMINI, "hi"), token=None)
    assert (anthropic.status, gemini.status, gemini_query.status) == (200, 200, 200)
    # Each key header belongs to its own API only.
    assert post(CHAT, request_body(CHAT, "hi"), token=None, headers={"x-api-key": gateway.token}).status == 401
    assert post(GEMINI, request_body(GEMINI, "hi"), token=None, headers={"x-api-key": gateway.token}).status == 401


def test_basic_auth_as_in_the_documented_curl_examples(post: Any, gateway: Any) -> None:
    credentials = base64.b64encode(f"token:{gateway.token}".encode()).decode()
    ok = post(CHAT, request_body(CHAT, "hi"), token=None, headers={"Authorization": f"Basic {credentials}"})
    wrong = base64.b64encode(b"token:nope").decode()
    refused = post(CHAT, request_body(CHAT, "hi"), token=None, headers={"Authorization": f"Basic {wrong}"})
    assert (ok.status, refused.status) == (200, 401)


def test_no_token_means_no_auth_check() -> None:
    with start_gateway(token=None, in_process=True) as gateway:
        assert send(gateway.url, CHAT, request_body(CHAT, "hi")).status == 200
        assert gateway.token is None


def test_anthropic_requires_the_version_header(post: Any, gateway: Any) -> None:
    response = send(gateway.url, ANTHROPIC, request_body(ANTHROPIC, "hi"), token=gateway.token)
    assert response.status == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "anthropic-version" in response.json()["error"]["message"]


def test_anthropic_version_2026_10_21_refuses_the_sampling_parameters(gateway: Any) -> None:
    body = {**request_body(ANTHROPIC, "hi"), "temperature": 1.0}
    new = {"anthropic-version": "2026-10-21"}
    refused = send(gateway.url, ANTHROPIC, body, token=gateway.token, headers=new)
    assert refused.status == 400 and "temperature: Extra inputs are not permitted" in refused.json()["error"]["message"]
    old = send(gateway.url, ANTHROPIC, body, token=gateway.token, headers={"anthropic-version": "2023-06-01"})
    plain = send(gateway.url, ANTHROPIC, request_body(ANTHROPIC, "hi"), token=gateway.token, headers=new)
    assert (old.status, plain.status) == (200, 200)
    unknown = send(gateway.url, ANTHROPIC, body, token=gateway.token, headers={"anthropic-version": "2025-01-01"})
    assert unknown.status == 400 and "not a valid version" in unknown.json()["error"]["message"]


def test_anthropic_requires_max_tokens(post: Any) -> None:
    body = {"model": "claude-model", "messages": [{"role": "user", "content": "hi"}]}
    response = post(ANTHROPIC, body)
    assert response.status == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in response.json()["error"]["message"]


@pytest.mark.parametrize("path", ALL_ROUTES)
def test_bad_json_is_400_in_the_route_shape(post: Any, path: str) -> None:
    response = post(path, raw=b'{"model": "x", "messages": [')
    assert response.status == 400
    expected = {
        OPENAI_RESPONSES: "invalid_request_error",
        ANTHROPIC: "invalid_request_error",
        GEMINI: "INVALID_ARGUMENT",
    }
    assert error_code(path, response.json()) == expected.get(path, "BAD_REQUEST")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (CHAT, {"model": "m", "messages": []}),
        (CHAT, {"messages": [{"role": "user", "content": "hi"}]}),
        (CHAT, {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}),
        (EMBEDDINGS, {"model": "m", "input": [1, 2]}),
        (RESPONSES, {"model": "m"}),
        (GEMINI, {"contents": []}),
    ],
)
def test_invalid_bodies_are_400(post: Any, path: str, body: dict[str, Any]) -> None:
    assert post(path, body).status == 400


@pytest.mark.parametrize("path", TEXT_ROUTES)
def test_every_text_route_answers_from_the_prompt(post: Any, path: str) -> None:
    body = post(path, request_body(path, "Quarterly revenue grew strongly")).json()
    assert "Quarterly revenue grew strongly" in answer_text(path, body)
