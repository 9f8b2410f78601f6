"""Hostile answers end as that row's error: deep JSON, numbers past float range, a gzip bomb, a 512 MiB body, an
endless body. A small aiohttp server on loopback answers each prompt as the prompt asks; the other rows of the
same batch are answered, and every request has its usage record."""

from __future__ import annotations

import asyncio
import functools
import gzip
import json
import struct
import tracemalloc
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from aiquery.config import Endpoint
from aiquery.engine import CallSite, Engine
from aiquery.errors import CallError, ResponseError, ServerError
from aiquery.pricing import Price
from aiquery.usage.record import MemorySink

GOOD_ROWS = 5
BIG_BYTES = 512 << 20
BOMB_BYTES = 2 << 30
DEFAULT_BOUND = 16 << 20  # max_response_bytes' documented default
LONG_CONTENT_TYPE = "application/json; padding=" + "x" * 6000


@functools.cache
def gzip_bomb(inflated_mib: int = BOMB_BYTES >> 20) -> bytes:
    """A valid gzip body of ``inflated_mib`` MiB of zeros (about 2 MB for 2 GiB), built in half a second.

    After a full flush, a MiB of zeros compresses to the same bytes each time, so one is repeated; the trailer
    gets the CRC and size of the whole.
    """
    block = bytes(1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    head = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    repeated = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    end = compressor.flush()[:-8]
    crc = 0
    for _ in range(inflated_mib):
        crc = zlib.crc32(block, crc)
    trailer = struct.pack("<II", crc, (inflated_mib << 20) & 0xFFFFFFFF)
    return head + repeated * (inflated_mib - 1) + end + trailer


def test_the_bomb_is_what_it_claims() -> None:
    small = gzip_bomb(3)
    assert gzip.decompress(small) == bytes(3 << 20)
    assert len(gzip_bomb()) < 3_000_000


def chat_answer(prompt: str) -> dict[str, Any]:
    return {
        "choices": [{"message": {"role": "assistant", "content": f"answer to {prompt}"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    }


def embedding_answer(values: str) -> bytes:
    return b'{"data": [{"embedding": [0.1, 0.2, 0.3, ' + values.encode() + b']}], "usage": {"prompt_tokens": 2}}'


async def stream(request: web.Request, chunk: bytes, total: int | None, *, announce: bool) -> web.StreamResponse:
    """``chunk`` repeated up to ``total`` bytes (or forever), until the client hangs up; ``announce``: with a
    ``Content-Length``, else chunked."""
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    if announce:
        response.content_length = total
    await response.prepare(request)
    sent = 0
    try:
        while total is None or sent < total:
            await response.write(chunk)
            sent += len(chunk)
    except (ConnectionError, RuntimeError):
        pass  # the client stopped reading, as it should
    return response


class HostileServer:
    """Answers ``chat/completions`` and ``embeddings``; a prompt naming a hostile kind gets that answer."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        prompt = body["input"] if "input" in body else body["messages"][-1]["content"]
        self.requests[prompt] += 1
        kind = prompt.split(":")[0]
        if kind == "deep":
            return web.Response(body=b'{"choices": ' + b"[" * 200_000 + b"]" * 200_000 + b"}")
        if kind == "huge-float":
            return web.Response(body=embedding_answer("1e400"))
        if kind == "huge-int":
            return web.Response(body=embedding_answer("1" + "0" * 400))
        if kind == "nan":
            return web.Response(body=embedding_answer("NaN"))
        if kind == "huge-usage":
            answer = chat_answer(prompt)
            answer["usage"] = {"prompt_tokens": 10**400, "completion_tokens": 1e300}
            return web.Response(body=json.dumps(answer))
        if kind == "bomb":
            return web.Response(body=gzip_bomb(), headers={"Content-Encoding": "gzip"})
        if kind in ("big", "big-chunked"):
            return await stream(request, b" " * (1 << 16), BIG_BYTES, announce=kind == "big")
        if kind == "endless":
            return await stream(request, b"[1, 2, 3]," * 6554, None, announce=False)
        if kind == "error-big":  # a 503 whose body is a 256 MiB page
            response = web.StreamResponse(status=503, headers={"Content-Type": "text/html"})
            await response.prepare(request)
            try:
                await response.write(b"<title>overloaded, come back later</title>")
                for _ in range(4096):
                    await response.write(b"x" * (1 << 16))
            except (ConnectionError, RuntimeError):
                pass
            return response
        if kind in ("brotli", "brotli-503"):  # an encoding never asked for
            status = 503 if kind == "brotli-503" else 200
            return web.Response(status=status, body=b"\x1b\x03\x00", headers={"Content-Encoding": "br"})
        if kind in ("gzip", "deflate", "raw-deflate"):
            text = json.dumps(chat_answer(prompt)).encode()
            wbits = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS, "raw-deflate": -zlib.MAX_WBITS}[kind]
            packer = zlib.compressobj(6, zlib.DEFLATED, wbits)
            encoded = packer.compress(text) + packer.flush()
            return web.Response(body=encoded, headers={"Content-Encoding": kind.removeprefix("raw-")})
        if kind == "long-content-type":
            return web.Response(body=json.dumps(chat_answer(prompt)), headers={"Content-Type": LONG_CONTENT_TYPE})
        if "input" in body:
            return web.Response(body=embedding_answer("0.4"))
        return web.Response(body=json.dumps(chat_answer(prompt)))


async def serving(server: HostileServer, work: Callable[[], Awaitable[Any]]) -> Any:
    app = web.Application(client_max_size=1 << 20)
    app.router.add_post("/v1/chat/completions", server.handle)
    app.router.add_post("/v1/embeddings", server.handle)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    server.url = f"http://127.0.0.1:{port}/v1"
    try:
        return await work()
    finally:
        await runner.cleanup()


def endpoint(server: HostileServer, api: str, **options: Any) -> Endpoint:
    # A short timeout: no case here may wait for one (an endless body must stop at the bound, not the clock).
    settings: dict[str, Any] = {"timeout": 20.0, "deadline": 60.0, "max_retries": 2, **options}
    return Endpoint(name=f"hostile-{api}", api=api, model="m", base_url=server.url, **settings)


def run_rows(api: str, prompts: list[str], *, fail_fast: bool = False, **options: Any) -> tuple[Any, ...]:
    server = HostileServer()
    sink = MemorySink()

    async def work() -> list[Any]:
        engine = Engine(sink=sink)
        try:
            return await engine.run(CallSite(endpoint=endpoint(server, api, **options)), prompts, fail_fast=fail_fast)
        finally:
            await engine.aclose()

    outcomes = asyncio.run(serving(server, work))
    return outcomes, server, sink


HOSTILE = [
    ("chat", "deep", "nests arrays or objects more than 512 deep"),
    ("embeddings", "deep", "nests arrays or objects more than 512 deep"),
    ("embeddings", "huge-float", "embedding value out of float range at data[0].embedding[3]"),
    ("embeddings", "huge-int", "embedding value out of float range at data[0].embedding[3]"),
    ("embeddings", "nan", "embedding value not a number at data[0].embedding[3]"),
    ("chat", "bomb", "answer larger than max_response_bytes (16 MiB): reading stopped after"),
    ("embeddings", "bomb", "answer larger than max_response_bytes (16 MiB): reading stopped after"),
    ("chat", "big", "answer larger than max_response_bytes (16 MiB): the answer announces 512 MiB"),
    ("embeddings", "big-chunked", "answer larger than max_response_bytes (16 MiB): reading stopped after"),
    ("chat", "endless", "answer larger than max_response_bytes (16 MiB): reading stopped after"),
]


@pytest.mark.parametrize(("api", "kind", "message"), HOSTILE)
def test_a_hostile_answer_is_its_rows_error_and_the_others_are_answered(api: str, kind: str, message: str) -> None:
    prompts = [f"good:{i}" for i in range(GOOD_ROWS)] + [f"{kind}:1", f"{kind}:2"]
    outcomes, server, sink = run_rows(api, prompts)

    assert all(o.error is None and o.value for o in outcomes[:GOOD_ROWS])
    for outcome in outcomes[GOOD_ROWS:]:
        assert isinstance(outcome.error, ResponseError) and outcome.value is None
        assert message in outcome.error.message, outcome.error.message
        if "max_response_bytes" in message:
            assert f"; raise max_response_bytes in [endpoints.hostile-{api}] (at most 48 MiB)" in outcome.error.message
    # The same request would bring the same answer: not retried.
    assert server.requests[f"{kind}:1"] == server.requests[f"{kind}:2"] == 1
    # Every request has its usage record, the hostile ones with what is known of them.
    assert len(sink.records) == len(prompts) and not sink.in_flight
    hostile = [r for r in sink.records if r.error_message is not None]
    assert len(hostile) == 2
    for record in hostile:
        assert record.status_code == 200 and record.latency_ms is not None
        assert record.input_tokens is None and record.cost is None


@pytest.mark.parametrize(("api", "kind"), [("chat", "deep"), ("embeddings", "huge-int"), ("chat", "bomb")])
def test_under_fail_on_error_the_query_fails_with_the_rows_cause(api: str, kind: str) -> None:
    with pytest.raises(CallError) as raised:
        run_rows(api, ["good:1", f"{kind}:1"], fail_fast=True)
    assert isinstance(raised.value, ResponseError)
    assert f"hostile-{api}" in raised.value.describe()


def test_token_counts_past_any_real_count_are_unknown_not_an_overflow() -> None:
    price = Price(input_per_million=1.0, output_per_million=2.0)
    outcomes, _, sink = run_rows("chat", ["good:1", "huge-usage:1"], price=price)
    assert [o.error for o in outcomes] == [None, None]
    record = next(r for r in sink.records if r.request_hash and r.tokens_estimated)
    assert record.input_tokens is not None and record.input_tokens < 100 and record.cost is not None


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate"])
def test_compressed_answers_are_read(encoding: str) -> None:
    outcomes, _, _ = run_rows("chat", [f"{encoding}:1"])
    assert outcomes[0].value == f"answer to {encoding}:1"


def test_a_smaller_bound_applies_to_the_endpoint() -> None:
    outcomes, _, _ = run_rows("chat", ["good:1", "gzip:" + "x" * 2000], max_response_bytes=1024)
    assert outcomes[0].error is None
    assert outcomes[1].error is not None and "max_response_bytes (1,024 bytes)" in outcomes[1].error.message


def traced_peak(api: str, prompts: list[str], **options: Any) -> tuple[int, Any]:
    gzip_bomb()  # built before tracing: the server's copy is not the client's memory
    tracemalloc.start()
    try:
        outcomes, _, _ = run_rows(api, prompts, **options)
        return tracemalloc.get_traced_memory()[1], outcomes
    finally:
        tracemalloc.stop()


def test_reading_a_gzip_bomb_or_an_endless_body_stays_within_the_bound() -> None:
    # One at a time: the peak then holds one answer's bytes (the bound, one inflated piece, the final copy).
    for kind in ("bomb", "endless"):
        peak, outcomes = traced_peak("chat", [f"{kind}:1"])
        assert outcomes[0].error is not None
        assert peak < 3 * DEFAULT_BOUND, (kind, peak)


def test_an_error_answer_is_read_only_as_far_as_its_message() -> None:
    peak, outcomes = traced_peak("chat", ["error-big:1"], max_retries=0)
    assert isinstance(outcomes[0].error, ServerError)
    assert "overloaded, come back later" in outcomes[0].error.message
    assert peak < 8 << 20, peak


def test_an_encoding_not_asked_for_is_the_rows_error_unless_the_status_already_says_what_happened() -> None:
    outcomes, server, _ = run_rows("chat", ["brotli:1", "brotli-503:1"], max_retries=1)
    assert isinstance(outcomes[0].error, ResponseError) and "'br' was not asked for" in outcomes[0].error.message
    assert isinstance(outcomes[1].error, ServerError) and outcomes[1].error.status_code == 503
    assert server.requests["brotli:1"] == 1 and server.requests["brotli-503:1"] == 2  # a 503 is retried


def test_a_content_type_of_kilobytes_is_cut_for_the_ledger() -> None:
    outcomes, _, sink = run_rows("chat", ["long-content-type:1"])
    assert outcomes[0].error is None
    assert [r.response_content_type for r in sink.records] == [LONG_CONTENT_TYPE[:255]]
