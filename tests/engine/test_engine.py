"""Engine tests over real loopback HTTP against the emulator. Waits go through an injected sleep."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from aiquery.config import Endpoint, Secret
from aiquery.engine import CallSite, Engine
from aiquery.engine.transport import NoResponse, Transport
from aiquery.errors import (
    CallError,
    ClientError,
    DeadlineExceeded,
    RequestTimeout,
    ResponseError,
    ServerError,
    TransportError,
)
from aiquery.pricing import Price
from aiquery.usage.record import MemorySink


class RecordingSleep:
    """Records every wait the engine asks for and returns at once (and advances a fake clock if given)."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.waits: list[float] = []
        self.clock = clock

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.clock is not None:
            self.clock.now += seconds
        await asyncio.sleep(0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def endpoint(gateway: Any, api: str = "chat", **options: Any) -> Endpoint:
    base = {
        "chat": "/ai-gateway/mlflow/v1",
        "embeddings": "/ai-gateway/mlflow/v1",
        "responses": "/ai-gateway/mlflow/v1",
        "openai-responses": "/ai-gateway/openai/v1",
        "anthropic": "/ai-gateway/anthropic",
        "gemini": "/ai-gateway/gemini",
    }[api]
    settings: dict[str, Any] = {
        "name": f"test-{api}",
        "api": api,
        "model": f"model-{api}",
        "base_url": gateway.url + base,
        "token": Secret(gateway.token),
    }
    settings.update(options)
    return Endpoint(**settings)


def run(engine: Engine, site: CallSite, prompts: list[str | None], **kwargs: Any) -> list[Any]:
    async def go() -> list[Any]:
        try:
            return await engine.run(site, prompts, **kwargs)
        finally:
            await engine.aclose()

    return asyncio.run(go())


@pytest.mark.parametrize("api", ["chat", "responses", "openai-responses", "anthropic", "gemini"])
def test_every_text_api_answers_in_order_and_skips_nulls(gateway: Any, api: str) -> None:
    prompts = [f"Summarize document number {i}" for i in range(20)]
    prompts[3] = None  # type: ignore[call-overload]
    sink = MemorySink()
    outcomes = run(Engine(sink=sink), CallSite(endpoint=endpoint(gateway, api)), prompts)

    assert outcomes[3].value is None and outcomes[3].error is None
    answered = [o.value for i, o in enumerate(outcomes) if i != 3]
    assert all(isinstance(v, str) and v for v in answered)
    assert len(set(answered)) == 19  # each prompt has its own deterministic answer
    # Same prompts in reverse order give the same answers in reverse order: order is kept.
    again = run(Engine(), CallSite(endpoint=endpoint(gateway, api)), list(reversed(prompts)))
    assert [o.value for o in again] == [o.value for o in reversed(outcomes)]
    assert gateway.stats()["requests"] == 38
    assert len(sink.records) == 19 and not sink.in_flight


def test_embeddings_give_unit_vectors(gateway: Any) -> None:
    outcomes = run(Engine(), CallSite(endpoint=endpoint(gateway, "embeddings")), ["alpha", "beta", None])
    vectors = [o.value for o in outcomes[:2]]
    assert all(isinstance(v, list) and len(v) > 10 for v in vectors)
    assert abs(sum(x * x for x in vectors[0]) - 1.0) < 1e-3
    assert vectors[0] != vectors[1] and outcomes[2].value is None


def test_identical_prompts_are_sent_once(gateway: Any) -> None:
    prompts = ["same"] * 50 + ["other"] * 50
    outcomes = run(Engine(), CallSite(endpoint=endpoint(gateway)), prompts)
    assert gateway.stats()["requests"] == 2
    assert len({o.value for o in outcomes[:50]}) == 1 and outcomes[0].value != outcomes[99].value


@pytest.mark.parametrize(("mode", "expected"), [("seconds", 7.0), ("ms", 7.0), ("date", None)])
def test_429_retry_after_is_waited_out(gateway: Any, mode: str, expected: float | None) -> None:
    gateway.configure(script=["429", "ok"], retry_after=mode, fault_retry_after_s=7)
    sleep = RecordingSleep()
    sink = MemorySink()
    outcomes = run(Engine(sink=sink, sleep=sleep), CallSite(endpoint=endpoint(gateway)), ["hello"])
    assert outcomes[0].error is None and isinstance(outcomes[0].value, str)
    assert len(sleep.waits) == 1
    if expected is None:  # an HTTP date has one-second resolution
        assert 5.0 <= sleep.waits[0] <= 8.0
    else:
        assert sleep.waits[0] == pytest.approx(expected, abs=0.01)
    records = sorted(sink.records, key=lambda r: r.attempt)
    assert [r.status_code for r in records] == [429, 200]
    assert records[0].call_id == records[1].call_id and records[0].request_id != records[1].request_id
    assert gateway.stats()["by_status"] == {"429": 1, "200": 1}


@pytest.mark.parametrize(
    ("fault", "error_type", "status"),
    [
        ("400", ClientError, 400),
        ("401", ClientError, 401),
        ("quota", CallError, 429),
    ],
)
def test_non_retryable_errors_are_not_retried(gateway: Any, fault: str, error_type: type, status: int) -> None:
    gateway.configure(script=[fault])
    sleep = RecordingSleep()
    outcomes = run(Engine(sleep=sleep), CallSite(endpoint=endpoint(gateway)), ["hello"])
    error = outcomes[0].error
    assert isinstance(error, error_type) and error.status_code == status
    assert error.attempts == 1 and sleep.waits == []
    assert gateway.stats()["requests"] == 1
    assert "test-chat" in str(error) and f"HTTP {status}" in str(error)


def test_retryable_statuses_back_off_with_full_jitter(gateway: Any) -> None:
    gateway.configure(script=["500", "503", "529", "502", "ok"], retry_after="none")
    sleep = RecordingSleep()
    outcomes = run(Engine(sleep=sleep), CallSite(endpoint=endpoint(gateway)), ["hello"])
    assert outcomes[0].error is None
    assert gateway.stats()["requests"] == 5
    assert len(sleep.waits) == 4
    for n, wait in enumerate(sleep.waits):
        assert 0.0 <= wait <= 0.5 * 2 ** (n + 1)


def test_retries_stop_after_max_retries(gateway: Any) -> None:
    gateway.configure(fault_rates={"500": 1.0}, retry_after="none")
    outcomes = run(Engine(sleep=RecordingSleep()), CallSite(endpoint=endpoint(gateway, max_retries=3)), ["x"])
    error = outcomes[0].error
    assert isinstance(error, ServerError) and error.attempts == 4
    assert gateway.stats()["requests"] == 4


def test_retry_after_above_the_cap_is_not_retried(gateway: Any) -> None:
    gateway.configure(script=["429"], retry_after="seconds", fault_retry_after_s=500)
    sleep = RecordingSleep()
    outcomes = run(Engine(sleep=sleep), CallSite(endpoint=endpoint(gateway)), ["x"])
    assert outcomes[0].error is not None and outcomes[0].error.status_code == 429
    assert sleep.waits == [] and gateway.stats()["requests"] == 1


def test_a_hung_request_never_outlives_the_call_deadline(gateway: Any) -> None:
    gateway.configure(fault_rates={"hang": 1.0}, hang_seconds=30)
    site = CallSite(endpoint=endpoint(gateway, timeout=20.0, deadline=1.0))
    started = time.monotonic()
    outcomes = run(Engine(), site, ["a", "b", "c"])
    elapsed = time.monotonic() - started
    assert elapsed < 3.0
    assert all(isinstance(o.error, (RequestTimeout, DeadlineExceeded)) for o in outcomes)


def test_a_timeout_rounded_below_a_tenth_of_a_second_still_times_out(gateway: Any) -> None:
    # aiohttp reads a timeout of 0 as "none": 0.04 s must not become a 30 s wait on a hung endpoint.
    gateway.configure(fault_rates={"hang": 1.0}, hang_seconds=30)

    async def post() -> tuple[NoResponse, float]:
        transport = Transport()
        started = time.monotonic()
        try:
            with pytest.raises(NoResponse) as raised:
                url = f"{gateway.url}/ai-gateway/mlflow/v1/chat/completions"
                headers = {"Authorization": f"Bearer {gateway.token}", "Content-Type": "application/json"}
                body = b'{"model": "m", "messages": [{"role": "user", "content": "x"}]}'
                await transport.post(url, headers, body, timeout=0.04)
            return raised.value, time.monotonic() - started
        finally:
            await transport.aclose()

    failure, elapsed = asyncio.run(post())
    assert failure.kind == "timeout" and elapsed < 2.0, (failure, elapsed)


def test_no_attempt_starts_with_less_than_a_tenth_of_a_second_of_the_deadline_left(gateway: Any) -> None:
    gateway.configure(fault_rates={"hang": 1.0}, hang_seconds=30)
    site = CallSite(endpoint=endpoint(gateway, timeout=20.0, deadline=0.04))
    started = time.monotonic()
    outcomes = run(Engine(clock=FakeClock()), site, ["x"])
    assert time.monotonic() - started < 2.0
    assert isinstance(outcomes[0].error, DeadlineExceeded)
    assert gateway.stats()["requests"] == 0  # nothing sent that could not be waited for


def test_a_call_stopped_by_its_deadline_reports_the_last_request_it_sent(gateway: Any) -> None:
    # Timeouts of 0.5 s within a 1.2 s deadline: where the deadline falls between attempts varies with the backoff's
    # jitter; every call must end at the deadline naming the last request's own error and counting only requests sent.
    gateway.configure(fault_rates={"hang": 1.0}, hang_seconds=30)
    site = CallSite(endpoint=endpoint(gateway, timeout=0.5, deadline=1.2))
    started = time.monotonic()
    outcomes = run(Engine(), site, [f"p{i}" for i in range(8)])
    assert time.monotonic() - started < 1.2 + 1.0
    sent = 0
    for outcome in outcomes:
        error = outcome.error
        assert isinstance(error, DeadlineExceeded), error
        assert "call deadline of 1.2 s reached; last error:" in error.message and "no response within" in error.message
        sent += max(error.attempts, 1)
    assert gateway.stats()["requests"] == sent


def test_deadline_stops_retries_whose_wait_would_end_past_it(gateway: Any) -> None:
    gateway.configure(script=["429", "ok"], retry_after="seconds", fault_retry_after_s=30)
    clock = FakeClock()
    sleep = RecordingSleep(clock)
    site = CallSite(endpoint=endpoint(gateway, deadline=10.0))
    outcomes = run(Engine(sleep=sleep, clock=clock), site, ["x"])
    assert isinstance(outcomes[0].error, DeadlineExceeded)
    assert "HTTP 429" in outcomes[0].error.message
    assert sleep.waits == [] and gateway.stats()["requests"] == 1


def test_in_flight_requests_never_exceed_the_bound(gateway: Any) -> None:
    gateway.configure(latency_ms=40)
    engine = Engine()
    site = CallSite(endpoint=endpoint(gateway, max_concurrency=8))
    outcomes = run(engine, site, [f"p{i}" for i in range(120)])
    assert all(o.error is None for o in outcomes)
    stats = gateway.stats()
    assert stats["max_in_flight"] == 8
    assert stats["requests"] == 120


def test_request_budget_holds(gateway: Any) -> None:
    sink = MemorySink()
    # 1,200 requests per minute = 20 per second; the burst allowance is a tenth of a second (2 requests).
    site = CallSite(endpoint=endpoint(gateway, requests_per_minute=1200))
    outcomes = run(Engine(sink=sink), site, [f"p{i}" for i in range(30)])
    assert all(o.error is None for o in outcomes)
    sends = sorted(r.event_time.timestamp() for r in sink.records)
    assert sends[-1] - sends[0] >= 1.3  # 28 requests beyond the burst at 20 per second
    for start in sends:
        assert sum(1 for t in sends if start <= t < start + 0.5) <= 10 + 2


def test_budget_shared_by_workers_uses_the_share(gateway: Any) -> None:
    sink = MemorySink()
    site = CallSite(endpoint=endpoint(gateway, requests_per_minute=1200), budget_share=0.5)
    run(Engine(sink=sink), site, [f"p{i}" for i in range(16)])
    sends = sorted(r.event_time.timestamp() for r in sink.records)
    assert sends[-1] - sends[0] >= 1.35  # 10 per second: half the budget


def test_a_burst_of_429s_teaches_a_rate(gateway: Any) -> None:
    # 30 of the first 40 requests refused: a limit (a few scattered 429s would not be, see LearnedRate). The
    # retries come back after the one-second decision interval, which then sets the pace from what was accepted.
    gateway.configure(script=["429"] * 30, retry_after="ms", fault_retry_after_s=1.1)
    engine = Engine()
    site = CallSite(endpoint=endpoint(gateway, max_concurrency=64))
    outcomes = run(engine, site, [f"p{i}" for i in range(40)])
    assert all(o.error is None for o in outcomes)
    limits = engine.limits(site.endpoint)
    assert limits.learned is not None and limits.learned.budget is not None
    assert limits.learned.budget.rate < 40  # from the 10 accepted at once and the 30 retries after 1.1 s


def test_usage_records_match_what_the_gateway_served(gateway: Any) -> None:
    gateway.configure(cached_tokens=0.25, reasoning_tokens=5)
    sink = MemorySink()
    site = CallSite(endpoint=endpoint(gateway, request_tags={"team": "ml"}), request_tags={"job": "nightly"})
    engine = Engine(sink=sink, requester="alice@example.com")
    engine.context = {"query_tag": "q1"}
    run(engine, site, [f"Summarize the text {i} " * 10 for i in range(10)])
    served = {entry["client_request_id"]: entry for entry in gateway.requests()}
    assert len(served) == len(sink.records) == 10
    for record in sink.records:
        entry = served[record.request_id]
        assert record.input_tokens == entry["input_tokens"] and record.output_tokens == entry["output_tokens"]
        assert record.cache_read_input_tokens == entry["cached_tokens"] > 0
        assert record.output_reasoning_tokens == 5
        assert record.total_tokens == record.input_tokens + record.output_tokens
        assert entry["request_tags"] == {"team": "ml", "job": "nightly"} == dict(record.request_tags)
        assert record.user_agent.startswith("aiquery/") and entry["user_agent"] == record.user_agent
        assert record.api_type == "mlflow/v1/chat/completions" and record.status_code == 200
        assert record.requester == "alice@example.com" and record.query_tag == "q1"
        assert record.latency_ms is not None and record.time_to_first_byte_ms is not None
        assert len(record.request_hash) == 64 and not record.tokens_estimated


def test_usage_records_carry_the_responses_content_type(gateway: Any) -> None:
    gateway.configure(script=["429", "ok"], retry_after="none")
    sink = MemorySink()
    run(Engine(sink=sink, sleep=RecordingSleep()), CallSite(endpoint=endpoint(gateway)), ["hello"])
    records = sorted(sink.records, key=lambda r: r.attempt)
    assert [(r.status_code, r.response_content_type) for r in records] == [
        (429, "application/json"),  # an error answer's
        (200, "application/json"),
    ]
    # Read from each response, whatever it says: an HTML page under 200, an answer past the bound (no body read),
    # and none at all for a request whose connection dropped before any response.
    for fault, status, content_type in [
        ("html", 200, "text/html; charset=utf-8"),
        ("gzip_bomb", 200, "application/json"),
        ("drop", None, None),
    ]:
        gateway.reset()
        gateway.configure(script=[fault])
        sink = MemorySink()
        site = CallSite(endpoint=endpoint(gateway, max_retries=0, max_response_bytes=1 << 20))
        outcomes = run(Engine(sink=sink, sleep=RecordingSleep()), site, ["hello"])
        assert outcomes[0].error is not None, fault
        assert [(r.status_code, r.response_content_type) for r in sink.records] == [(status, content_type)], fault


def test_malformed_and_truncated_bodies_are_retried_missing_text_is_not(gateway: Any) -> None:
    gateway.configure(script=["malformed", "truncated", "ok"])
    outcomes = run(Engine(sleep=RecordingSleep()), CallSite(endpoint=endpoint(gateway)), ["x"])
    assert outcomes[0].error is None and gateway.stats()["requests"] == 3

    gateway.reset()
    gateway.configure(script=["no_text"])
    outcomes = run(Engine(sleep=RecordingSleep()), CallSite(endpoint=endpoint(gateway)), ["x"])
    assert isinstance(outcomes[0].error, ResponseError) and gateway.stats()["requests"] == 1
    assert "test-chat" in str(outcomes[0].error)


def test_dropped_connections_are_retried(gateway: Any) -> None:
    gateway.configure(script=["drop", "drop", "ok"])
    outcomes = run(Engine(sleep=RecordingSleep()), CallSite(endpoint=endpoint(gateway)), ["x"])
    assert outcomes[0].error is None and gateway.stats()["requests"] == 3


def test_unreachable_host_names_the_endpoint_and_cause() -> None:
    unreachable = Endpoint(
        name="nowhere",
        api="chat",
        model="m",
        base_url="http://127.0.0.1:9/v1",
        token=Secret("dapi-secret-value-xyz"),
        max_retries=2,
    )
    sink = MemorySink()
    outcomes = run(Engine(sink=sink, sleep=RecordingSleep()), CallSite(endpoint=unreachable), ["x"])
    error = outcomes[0].error
    assert isinstance(error, TransportError) and error.attempts == 3
    assert "nowhere" in str(error) and "cannot connect" in str(error)
    assert [r.status_code for r in sink.records] == [None, None, None]


def test_bad_text_and_enormous_prompts_fail_without_a_request(gateway: Any) -> None:
    outcomes = run(Engine(), CallSite(endpoint=endpoint(gateway)), ["bad \ud800 text", "x" * (17 * 1024 * 1024), "ok"])
    assert "not valid Unicode" in str(outcomes[0].error)
    assert "above the 16 MiB limit" in str(outcomes[1].error)
    assert outcomes[2].error is None
    assert gateway.stats()["requests"] == 1


def test_fail_fast_raises_the_first_error_and_cancels_the_rest(gateway: Any) -> None:
    gateway.configure(latency_ms=200)
    prompts = ["bad [[fault:400]]"] + [f"p{i}" for i in range(200)]
    with pytest.raises(ClientError) as raised:
        run(Engine(), CallSite(endpoint=endpoint(gateway, max_concurrency=4)), prompts, fail_fast=True)
    assert raised.value.status_code == 400
    assert gateway.stats()["requests"] < 20


def test_the_token_never_appears_in_errors_or_logs(gateway: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    gateway.configure(script=["500", "401"], retry_after="none")
    site = CallSite(endpoint=endpoint(gateway))
    outcomes = run(Engine(sleep=RecordingSleep()), site, ["x"])
    assert outcomes[0].error is not None
    token = gateway.token
    assert token not in str(outcomes[0].error) and token not in repr(outcomes[0].error)
    assert token not in repr(site)
    assert token not in caplog.text
    assert "retryable" in caplog.text  # the retry decision was logged with its reason


@pytest.mark.parametrize("api", ["chat", "embeddings", "responses", "openai-responses", "anthropic", "gemini"])
@pytest.mark.parametrize("response_format", [None, "json_object", "json_schema"])
def test_spliced_bodies_equal_the_adapters_own(api: str, response_format: str | None) -> None:
    import json

    from aiquery.apis import get_adapter
    from aiquery.apis.base import ResponseFormat
    from aiquery.engine.prepared import PreparedSite

    if api == "embeddings" and response_format is not None:
        return
    fmt = None
    if response_format == "json_object":
        fmt = ResponseFormat(kind="json_object")
    elif response_format == "json_schema":
        fmt = ResponseFormat(kind="json_schema", name="x", schema={"type": "object", "properties": {}})
    site = CallSite(
        endpoint=Endpoint(name="e", api=api, model="m", base_url="http://127.0.0.1:1"),
        parameters={"max_tokens": 7} if api != "embeddings" else {},
        response_format=fmt,
    )
    prepared = PreparedSite(site, "me")
    assert prepared._template is not None
    for prompt in ["plain", 'quotes " and \\ backslash', "new\nline\ttab", "ünïcödé ✓ 中文", "", "\u0000nul"]:
        request = prepared.request(prompt)
        assert json.loads(prepared.body(request)) == get_adapter(api).build_body(request)


def test_text_that_is_not_unicode_fails_its_own_row_unsent(gateway: Any) -> None:
    prompts = ["fine", "lone \ud800 surrogate", "bad byte \udcff kept by surrogateescape", None]
    outcomes = run(Engine(), CallSite(endpoint=endpoint(gateway)), prompts)
    assert outcomes[0].error is None and outcomes[0].value
    assert "not valid Unicode (unpaired surrogate '\\ud800')" in str(outcomes[1].error)
    # How the Spark UDF hands over a byte that was not UTF-8 (see aiquery.spark.udf._prompts).
    assert "not valid UTF-8 (byte 0xFF)" in str(outcomes[2].error)
    assert outcomes[3].error is None and outcomes[3].value is None
    assert outcomes[1].error.attempts == 0 and len(gateway.requests()) == 1


PRICE = {"input_per_million": 3.0, "output_per_million": 15.0, "cached_input_per_million": 0.3}


@pytest.mark.parametrize("api", ["chat", "embeddings", "responses", "openai-responses", "anthropic", "gemini"])
def test_each_request_costs_its_tokens_at_the_endpoints_price(gateway: Any, api: str) -> None:
    # A tenth of each prompt read from the provider's cache, a fifth written to it (only Anthropic reports writes,
    # and an embeddings response reports neither).
    gateway.configure(cached_tokens=0.1, cache_creation_tokens=0.2)
    price = Price(**PRICE, cache_write_per_million=3.75, currency="EUR")
    sink = MemorySink()
    site = CallSite(endpoint=endpoint(gateway, api, price=price))
    run(Engine(sink=sink), site, [f"Summarize the text {i} " * (20 + i) for i in range(8)])
    served = {entry["client_request_id"]: entry for entry in gateway.requests()}
    assert len(sink.records) == len(served) == 8
    for record in sink.records:
        entry = served[record.request_id]
        read, written = entry["cached_tokens"], entry["cache_creation_tokens"]
        assert (read > 0) == (api != "embeddings") and (written > 0) == (api == "anthropic")  # as each API reports
        # By hand, from what the emulator billed: uncached input, cache reads, cache writes, output.
        expected = (
            (entry["input_tokens"] - read - written) * 3.0 + read * 0.3 + written * 3.75 + entry["output_tokens"] * 15.0
        ) / 1_000_000
        assert record.cost == pytest.approx(expected, rel=1e-12) and record.cost > 0
        assert record.currency == "EUR" and record.avoided_cost is None


def test_cache_prices_default_to_the_input_price_and_errors_bill_nothing(gateway: Any) -> None:
    gateway.configure(cached_tokens=0.5, fault_rates={"400": 0.5}, seed=3)
    sink = MemorySink()
    site = CallSite(endpoint=endpoint(gateway, price=Price(input_per_million=2.0, output_per_million=8.0)))
    run(Engine(sink=sink), site, [f"prompt number {i} " * 10 for i in range(20)])
    served = {entry["client_request_id"]: entry for entry in gateway.requests()}
    answered = [r for r in sink.records if r.status_code == 200]
    refused = [r for r in sink.records if r.status_code == 400]
    assert answered and refused
    for record in answered:
        entry = served[record.request_id]
        assert record.cost == pytest.approx((entry["input_tokens"] * 2.0 + entry["output_tokens"] * 8.0) / 1e6)
    assert all(record.cost == 0.0 and record.currency == "USD" for record in refused)


def test_an_endpoint_without_a_price_records_no_cost(gateway: Any) -> None:
    sink = MemorySink()
    run(Engine(sink=sink), CallSite(endpoint=endpoint(gateway)), ["a", "b"])
    assert [(r.cost, r.avoided_cost, r.currency) for r in sink.records] == [(None, None, None)] * 2
