"""Faults on demand: each fault kind, scripts, random rates, the rate limiter, latency and directives."""

from __future__ import annotations

import http.client
import json
import socket
import time
from email.utils import parsedate_to_datetime
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
    answer_text,
    error_code,
    request_body,
)

ERROR_CODES = {
    "500": {
        CHAT: "INTERNAL_ERROR",
        OPENAI_RESPONSES: "server_error",
        ANTHROPIC: "api_error",
        GEMINI: "INTERNAL",
    },
    "502": {
        CHAT: "BAD_GATEWAY",
        OPENAI_RESPONSES: "bad_gateway",
        ANTHROPIC: "api_error",
        GEMINI: "UNAVAILABLE",
    },
    "503": {
        CHAT: "TEMPORARILY_UNAVAILABLE",
        OPENAI_RESPONSES: "service_unavailable",
        ANTHROPIC: "api_error",
        GEMINI: "UNAVAILABLE",
    },
    "529": {
        CHAT: "TEMPORARILY_UNAVAILABLE",
        OPENAI_RESPONSES: "overloaded",
        ANTHROPIC: "overloaded_error",
        GEMINI: "UNAVAILABLE",
    },
    "400": {
        CHAT: "BAD_REQUEST",
        OPENAI_RESPONSES: "invalid_request_error",
        ANTHROPIC: "invalid_request_error",
        GEMINI: "INVALID_ARGUMENT",
    },
    "401": {
        CHAT: "UNAUTHENTICATED",
        OPENAI_RESPONSES: "invalid_api_key",
        ANTHROPIC: "authentication_error",
        GEMINI: "UNAUTHENTICATED",
    },
    "429": {
        CHAT: "REQUEST_LIMIT_EXCEEDED",
        OPENAI_RESPONSES: "rate_limit_exceeded",
        ANTHROPIC: "rate_limit_error",
        GEMINI: "RESOURCE_EXHAUSTED",
    },
    "504": {
        CHAT: "DEADLINE_EXCEEDED",
        OPENAI_RESPONSES: "timeout",
        ANTHROPIC: "timeout_error",
        GEMINI: "DEADLINE_EXCEEDED",
    },
}


@pytest.mark.parametrize("path", [CHAT, OPENAI_RESPONSES, ANTHROPIC, GEMINI])
@pytest.mark.parametrize("kind", sorted(ERROR_CODES))
def test_error_faults_in_each_route_shape(post: Any, gateway: Any, path: str, kind: str) -> None:
    gateway.configure(script=[kind])
    response = post(path, request_body(path, "hello"))
    assert response.status == int(kind)
    assert error_code(path, response.json()) == ERROR_CODES[kind][path]


def test_injected_429_carries_retry_headers(post: Any, gateway: Any) -> None:
    gateway.configure(script=["429"], fault_retry_after_s=2.5)
    response = post(GEMINI, request_body(GEMINI, "hello"))
    assert response.status == 429
    assert response.headers["retry-after"] == "3"
    assert response.headers["retry-after-ms"] == "2500"
    assert response.json()["error"]["details"][0]["retryDelay"] == "2s"


@pytest.mark.parametrize(
    ("path", "check"),
    [
        (
            CHAT,
            lambda body: body["error_code"] == "QUOTA_EXCEEDED" and "insufficient_quota" in body["message"],
        ),
        (
            OPENAI_RESPONSES,
            lambda body: body["error"]["type"] == body["error"]["code"] == "insufficient_quota",
        ),
        (ANTHROPIC, lambda body: body["error"]["details"]["error_code"] == "enforced_spend_limit_reached"),
        (GEMINI, lambda body: body["error"]["details"][0]["@type"].endswith("QuotaFailure")),
    ],
)
def test_quota_is_a_429_marked_not_retryable(post: Any, gateway: Any, path: str, check: Any) -> None:
    gateway.configure(script=["quota"])
    response = post(path, request_body(path, "hello"))
    assert response.status == 429
    assert "retry-after" not in response.headers
    assert check(response.json())


def test_anthropic_529_is_overloaded(post: Any, gateway: Any) -> None:
    gateway.configure(script=["529"])
    response = post(ANTHROPIC, request_body(ANTHROPIC, "hello"))
    assert response.status == 529
    assert response.json()["error"] == {"type": "overloaded_error", "message": "Overloaded"}


def test_hang_holds_the_connection_until_the_client_gives_up(post: Any, gateway: Any) -> None:
    gateway.configure(script=["hang"])
    started = time.monotonic()
    with pytest.raises((TimeoutError, socket.timeout)):
        post(CHAT, request_body(CHAT, "hello"), timeout=0.3)
    assert time.monotonic() - started >= 0.3
    assert gateway.stats()["by_status"] == {"hang": 1}


def test_hang_closes_after_hang_seconds(post: Any, gateway: Any) -> None:
    gateway.configure(script=["hang"], hang_seconds=0.2)
    with pytest.raises(http.client.RemoteDisconnected):
        post(CHAT, request_body(CHAT, "hello"), timeout=5)


def test_drop_closes_without_answering(post: Any, gateway: Any) -> None:
    gateway.configure(script=["drop"])
    with pytest.raises(http.client.RemoteDisconnected):
        post(CHAT, request_body(CHAT, "hello"))
    assert gateway.stats()["by_status"] == {"drop": 1}


def test_malformed_is_200_with_invalid_json(post: Any, gateway: Any) -> None:
    gateway.configure(script=["malformed"])
    response = post(CHAT, request_body(CHAT, "hello"))
    assert response.status == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_truncated_announces_more_than_it_sends(post: Any, gateway: Any) -> None:
    gateway.configure(script=["truncated"])
    with pytest.raises(http.client.IncompleteRead):
        post(CHAT, request_body(CHAT, "hello"))


@pytest.mark.parametrize("path", ALL_ROUTES)
def test_no_text_is_valid_json_without_the_answer(post: Any, gateway: Any, path: str) -> None:
    gateway.configure(script=["no_text"])
    response = post(path, request_body(path, "hello"))
    assert response.status == 200
    body = response.json()
    if path == EMBEDDINGS:
        assert body["data"] == []
    else:
        with pytest.raises((KeyError, IndexError)):
            answer_text(path, body)


def test_script_applies_in_arrival_order_then_normal(post: Any, gateway: Any) -> None:
    gateway.configure(script=["429", "503", "ok", "500"])
    statuses = [post(CHAT, request_body(CHAT, f"request {index}")).status for index in range(6)]
    assert statuses == [429, 503, 200, 500, 200, 200]
    assert gateway.stats()["script_remaining"] == []


def test_fault_rates_are_reproducible_with_a_seed(post: Any, gateway: Any) -> None:
    def run() -> list[int]:
        gateway.configure(fault_rates={"503": 0.3, "500": 0.2}, seed=7)
        return [post(CHAT, request_body(CHAT, "x")).status for _ in range(40)]

    first, second = run(), run()
    assert first == second
    assert {200, 500, 503} == set(first)


def test_fault_rate_of_one_fails_every_request(post: Any, gateway: Any) -> None:
    gateway.configure(fault_rates={"502": 1.0})
    assert {post(CHAT, request_body(CHAT, "x")).status for _ in range(5)} == {502}


def test_rate_limit_answers_429_with_the_wait_for_a_free_token(post: Any, gateway: Any) -> None:
    gateway.configure(rate_limit_rps=2, rate_limit_burst=2)
    statuses = [post(CHAT, request_body(CHAT, "x")) for _ in range(3)]
    assert [response.status for response in statuses] == [200, 200, 429]
    limited = statuses[2]
    assert limited.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    assert limited.headers["retry-after"] == "1"
    assert 0 < int(limited.headers["retry-after-ms"]) <= 500
    time.sleep(int(limited.headers["retry-after-ms"]) / 1000 + 0.02)
    assert post(CHAT, request_body(CHAT, "x")).status == 200


@pytest.mark.parametrize(
    ("path", "code"),
    [
        (OPENAI_RESPONSES, "rate_limit_exceeded"),
        (ANTHROPIC, "rate_limit_error"),
        (GEMINI, "RESOURCE_EXHAUSTED"),
        (EMBEDDINGS, "REQUEST_LIMIT_EXCEEDED"),
    ],
)
def test_rate_limit_429_in_each_route_shape(post: Any, gateway: Any, path: str, code: str) -> None:
    gateway.configure(rate_limit_rps=0.5, rate_limit_burst=1)
    assert post(path, request_body(path, "x")).status == 200
    limited = post(path, request_body(path, "x"))
    assert limited.status == 429
    assert error_code(path, limited.json()) == code


@pytest.mark.parametrize(
    ("mode", "present"),
    [
        ("both", {"retry-after", "retry-after-ms"}),
        ("seconds", {"retry-after"}),
        ("ms", {"retry-after-ms"}),
        ("date", {"retry-after"}),
        ("none", set()),
    ],
)
def test_retry_after_modes(post: Any, gateway: Any, mode: str, present: set[str]) -> None:
    gateway.configure(retry_after=mode, script=["429"], fault_retry_after_s=3)
    headers = post(CHAT, request_body(CHAT, "x")).headers
    assert {name for name in ("retry-after", "retry-after-ms") if name in headers} == present
    if mode == "date":
        wait = parsedate_to_datetime(headers["retry-after"]).timestamp() - time.time()
        assert 1 <= wait <= 4
    elif mode in ("both", "seconds"):
        assert headers["retry-after"] == "3"


def test_fixed_and_random_latency(post: Any, gateway: Any) -> None:
    gateway.configure(latency_ms=150)
    started = time.monotonic()
    assert post(CHAT, request_body(CHAT, "x")).status == 200
    assert 0.15 <= time.monotonic() - started < 1.0
    gateway.configure(latency_ms=0, latency_min_ms=50, latency_max_ms=80)
    started = time.monotonic()
    post(CHAT, request_body(CHAT, "x"))
    assert 0.05 <= time.monotonic() - started < 0.5


def test_directives_choose_fault_and_latency_per_request(post: Any, gateway: Any) -> None:
    gateway.configure(script=["500"])
    # A directive wins over the script and leaves the script entry for the next request.
    assert post(CHAT, request_body(CHAT, "row 1 [[fault:400]]")).status == 400
    assert post(CHAT, request_body(CHAT, "row 2 [[fault:400]]")).status == 400
    assert post(CHAT, request_body(CHAT, "row 3")).status == 500
    assert post(CHAT, request_body(CHAT, "row 4 [[fault:quota]]")).status == 429
    started = time.monotonic()
    assert post(RESPONSES, request_body(RESPONSES, "slow row [[latency_ms:200]]")).status == 200
    assert time.monotonic() - started >= 0.2


def test_unknown_directive_is_a_400(post: Any) -> None:
    response = post(CHAT, request_body(CHAT, "row [[fault:teapot]]"))
    assert response.status == 400
    assert "directive" in response.json()["message"]


def test_invalid_settings_are_refused(gateway: Any) -> None:
    for bad in (
        {"fault_rates": {"503": 1.5}},
        {"fault_rates": {"kaboom": 0.1}},
        {"latency_ms": -1},
        {"no_such": 1},
        {"retry_after": "later"},
        {"script": ["ok", "nope"]},
    ):
        with pytest.raises(ValueError):
            gateway.configure(**bad)
    assert gateway.stats()["config"]["fault_rates"] == {}
