"""What the emulator counts and logs, the in-flight gauge, reset and the admin API."""

from __future__ import annotations

import asyncio
import http.client
import json
import time
from typing import Any

import aiohttp
import pytest
from gateway_http import ANTHROPIC, CHAT, EMBEDDINGS, GEMINI, ROUTE_KEYS, request_body, send

from aiquery.gateway import start_gateway


def test_counts_per_route_and_status_and_token_totals(post: Any, gateway: Any) -> None:
    post(CHAT, request_body(CHAT, "one"))
    post(CHAT, request_body(CHAT, "two"))
    post(CHAT, request_body(CHAT, "three"), token="wrong")
    post(EMBEDDINGS, {"model": "e", "input": ["a", "b"]})
    post(GEMINI, request_body(GEMINI, "four [[fault:503]]"))
    post("/ai-gateway/nowhere", {})
    stats = gateway.stats()
    assert stats["requests"] == 6
    assert stats["by_route"] == {
        ROUTE_KEYS[CHAT]: {"200": 2, "401": 1},
        ROUTE_KEYS[EMBEDDINGS]: {"200": 1},
        ROUTE_KEYS[GEMINI]: {"503": 1},
        "unknown": {"404": 1},
    }
    assert stats["by_status"] == {"200": 3, "401": 1, "503": 1, "404": 1}
    log = gateway.requests()
    assert stats["tokens"]["input"] == sum(entry["input_tokens"] for entry in log) > 0
    assert stats["tokens"]["output"] == sum(entry["output_tokens"] for entry in log) > 0
    # Only answered requests carry tokens.
    assert all(entry["input_tokens"] == 0 for entry in log if entry["status"] != 200)


def test_request_log_entries(post: Any, gateway: Any) -> None:
    headers = {
        "X-Client-Request-Id": "req-42",
        "Databricks-Ai-Gateway-Request-Tags": json.dumps({"team": "ml", "project": "demo"}),
        "User-Agent": "aiquery-test/1.0",
    }
    body = post(CHAT, request_body(CHAT, "what is logged", max_tokens=50), headers=headers).json()
    post(ANTHROPIC, request_body(ANTHROPIC, "x"), headers={"X-Client-Request-Id": "req-43"})
    first, second = gateway.requests()
    assert first["client_request_id"] == "req-42"
    assert first["route"] == "mlflow/v1/chat/completions"
    assert first["model"] == "chat-model"
    assert first["status"] == 200 and first["outcome"] == "ok"
    assert first["input_tokens"] == body["usage"]["prompt_tokens"]
    assert first["output_tokens"] == body["usage"]["completion_tokens"]
    assert first["cached_tokens"] == 0
    assert first["request_tags"] == {"team": "ml", "project": "demo"}
    assert first["user_agent"] == "aiquery-test/1.0"
    assert second["client_request_id"] == "req-43"
    assert second["request_tags"] is None
    assert gateway.requests(offset=1) == [second]
    assert gateway.requests(limit=1) == [first]


def test_cached_tokens_are_logged_and_totalled(post: Any, gateway: Any) -> None:
    gateway.configure(cached_tokens=0.5)
    post(ANTHROPIC, request_body(ANTHROPIC, "y" * 400))
    (entry,) = gateway.requests()
    # The log uses one convention for every API: input tokens include cached ones.
    assert (entry["input_tokens"], entry["cached_tokens"]) == (100, 50)
    assert gateway.stats()["tokens"]["cached"] == 50


def test_hang_and_drop_have_their_own_status_keys(post: Any, gateway: Any) -> None:
    gateway.configure(script=["drop", "hang"], hang_seconds=0.1)
    for _ in range(2):
        with pytest.raises(http.client.RemoteDisconnected):
            post(CHAT, request_body(CHAT, "x"), timeout=2)
    assert gateway.stats()["by_route"][ROUTE_KEYS[CHAT]] == {"drop": 1, "hang": 1}
    assert [entry["status"] for entry in gateway.requests()] == ["drop", "hang"]


async def _concurrent(url: str, token: str, count: int, timeout: float) -> list[int | str]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:

        async def one(index: int) -> int | str:
            try:
                async with session.post(
                    url + CHAT,
                    json=request_body(CHAT, f"row {index}"),
                    headers={"Authorization": f"Bearer {token}"},
                ) as response:
                    await response.read()
                    return response.status
            except asyncio.TimeoutError:
                return "timeout"

        return list(await asyncio.gather(*(one(index) for index in range(count))))


def test_in_flight_and_max_in_flight(gateway: Any) -> None:
    gateway.configure(latency_ms=300)
    assert asyncio.run(_concurrent(gateway.url, gateway.token, 20, 10)) == [200] * 20
    stats = gateway.stats()
    assert stats["max_in_flight"] == 20
    assert stats["in_flight"] == 0


def test_a_client_that_gives_up_is_still_counted(gateway: Any) -> None:
    gateway.configure(latency_ms=2000)
    assert asyncio.run(_concurrent(gateway.url, gateway.token, 5, 0.3)) == ["timeout"] * 5
    stats = gateway.stats()
    assert stats["by_status"] == {"200": 5}
    assert stats["tokens"]["input"] > 0
    deadline = time.monotonic() + 5
    while gateway.stats()["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert gateway.stats()["in_flight"] == 0  # the closed connections ended their exchanges


def test_reset_restores_the_starting_state(post: Any, gateway: Any) -> None:
    gateway.configure(latency_ms=5, script=["500", "500"], fault_rates={"503": 0.5})
    post(CHAT, request_body(CHAT, "x"))
    gateway.reset()
    stats = gateway.stats()
    assert stats["requests"] == 0 and stats["logged"] == 0 and stats["max_in_flight"] == 0
    assert stats["script_remaining"] == []
    assert stats["config"]["latency_ms"] == 0 and stats["config"]["fault_rates"] == {}
    assert post(CHAT, request_body(CHAT, "x")).status == 200


def test_reset_goes_back_to_the_configuration_given_at_start() -> None:
    with start_gateway(in_process=True, output_tokens=40, script=["503"]) as gateway:
        gateway.configure(output_tokens=5, script=[])
        gateway.reset()
        assert gateway.config()["output_tokens"] == 40
        assert send(gateway.url, CHAT, request_body(CHAT, "x"), token=gateway.token).status == 503


def test_configure_returns_the_full_configuration(gateway: Any) -> None:
    config = gateway.configure(latency_ms=12)
    assert config["latency_ms"] == 12
    assert config["embedding_dim"] == 1024 and config["retry_after"] == "both"


def test_log_is_bounded() -> None:
    with start_gateway(in_process=True, log_limit=3) as gateway:
        for index in range(5):
            send(
                gateway.url,
                CHAT,
                request_body(CHAT, "x"),
                token=gateway.token,
                headers={"X-Client-Request-Id": str(index)},
            )
        assert [entry["client_request_id"] for entry in gateway.requests()] == ["2", "3", "4"]
        assert gateway.stats()["requests"] == 5


def test_admin_routes_are_not_counted(gateway: Any) -> None:
    gateway.stats()
    gateway.requests()
    gateway.configure(latency_ms=0)
    assert gateway.stats()["requests"] == 0
