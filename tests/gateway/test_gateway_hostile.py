"""The hostile kinds: each answer's shape on every route, what the log bills, the hostile share, the flags."""

from __future__ import annotations

import gzip
import http.client
import io
import json
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from gateway_http import ALL_ROUTES, ANTHROPIC, CHAT, EMBEDDINGS, GEMINI, TEXT_ROUTES, answer_text, request_body

from aiquery.gateway.hostile import (
    DEEP_JSON_LEVELS,
    GZIP_BOMB_BYTES,
    HUGE_INTEGER,
    OVERSIZED_BYTES,
    deep_json_body,
    gzip_bomb,
    hostile_kind_for,
)
from aiquery.gateway.settings import DEFAULT_HOSTILE_SHARE, HOSTILE_KINDS

REPO = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024


def _open(gateway: Any, path: str, prompt: str, timeout: float = 10.0) -> tuple[Any, Any]:
    """The response to ``prompt`` on ``path``, its body unread (the caller reads what it can afford)."""
    parts = urlsplit(gateway.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {gateway.token}"}
    if path == ANTHROPIC:
        headers["anthropic-version"] = "2023-06-01"
    connection.request("POST", path, json.dumps(request_body(path, prompt)).encode(), headers)
    return connection, connection.getresponse()


def _fetch(gateway: Any, path: str, prompt: str, limit: int = 4 * MIB) -> tuple[Any, bytes]:
    connection, response = _open(gateway, path, prompt)
    try:
        return response, response.read(limit)
    finally:
        connection.close()


def _rss_bytes(pid: int) -> int:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) * 1024


@pytest.mark.parametrize("path", ALL_ROUTES)
def test_deep_json_is_valid_json_too_deep_to_decode_recursively(gateway: Any, path: str) -> None:
    response, body = _fetch(gateway, path, "hello [[fault:deep_json]]")
    assert response.status == 200 and response.getheader("Content-Type") == "application/json"
    opening = b'{"trace":' + b"[" * DEEP_JSON_LEVELS + b"]" * DEEP_JSON_LEVELS
    assert body.startswith(opening)
    with pytest.raises(RecursionError):
        json.loads(body)
    # Without the nested member the rest is the route's normal answer.
    rest = json.loads(b"{" + body[len(opening) + 1 :])
    assert rest.get("model") or rest["modelVersion"]


@pytest.mark.parametrize("path", TEXT_ROUTES)
def test_huge_numbers_put_every_token_count_past_a_float(gateway: Any, path: str) -> None:
    response, body = _fetch(gateway, path, "hello [[fault:huge_numbers]]")
    assert response.status == 200
    answer = json.loads(body)
    assert answer_text(path, answer)  # the answer itself is readable
    usage = answer.get("usage") or answer["usageMetadata"]
    counts = [value for key, value in usage.items() if "token" in key.lower() and isinstance(value, int)]
    assert counts and all(value == int(HUGE_INTEGER) for value in counts)
    with pytest.raises(OverflowError):
        float(counts[0])


def test_huge_numbers_in_embedding_vectors(gateway: Any) -> None:
    _, body = _fetch(gateway, EMBEDDINGS, "hello [[fault:huge_numbers]]")
    vector = json.loads(body)["data"][0]["embedding"]
    assert b"[1e400," in body
    assert vector[0] == float("inf") and vector[1] == int(HUGE_INTEGER)
    with pytest.raises(OverflowError):
        float(vector[1])
    assert all(isinstance(value, float) for value in vector[2:])


@pytest.mark.parametrize("path", [CHAT, EMBEDDINGS, GEMINI])
def test_gzip_bomb_is_two_megabytes_announcing_two_gibibytes(gateway: Any, path: str) -> None:
    started = time.monotonic()
    response, body = _fetch(gateway, path, "hello [[fault:gzip_bomb]]")
    assert response.status == 200 and response.getheader("Content-Encoding") == "gzip"
    assert len(body) == int(response.getheader("Content-Length")) < 3 * MIB
    inflated_size = struct.unpack("<I", body[-4:])[0]
    assert (inflated_size - GZIP_BOMB_BYTES) % 2**32 < 64 * 1024  # the padding plus the answer, modulo 2**32
    first = gzip.GzipFile(fileobj=io.BytesIO(body)).read(MIB)
    assert first == b" " * MIB
    assert time.monotonic() - started < 30  # built once per process, not per request


def test_a_small_gzip_bomb_inflates_to_its_padding_and_the_answer() -> None:
    inflated = gzip.decompress(gzip_bomb(b'{"ok":true}', 3 * MIB))  # also checks the CRC and size trailer
    assert len(inflated) == 3 * MIB + 11 and json.loads(inflated) == {"ok": True}
    assert deep_json_body({"a": 1}, 2) == b'{"trace":[[]],"a":1}'


@pytest.mark.parametrize("path", [CHAT, EMBEDDINGS])
def test_endless_body_never_ends(gateway: Any, path: str) -> None:
    connection, response = _open(gateway, path, "hello [[fault:endless]]")
    try:
        assert response.status == 200 and response.getheader("Transfer-Encoding") == "chunked"
        received = 0
        while received < 32 * MIB:
            chunk = response.read1(MIB)
            assert chunk, "the endless body ended"
            received += len(chunk)
    finally:
        connection.close()


def test_oversized_body_announces_and_streams_512_mib(gateway: Any) -> None:
    connection, response = _open(gateway, CHAT, "hello [[fault:oversized]]")
    try:
        assert response.status == 200 and int(response.getheader("Content-Length")) == OVERSIZED_BYTES
        assert response.read(8 * MIB) == b" " * (8 * MIB)
    finally:
        connection.close()


@pytest.mark.parametrize("kind", ["endless", "oversized"])
def test_a_client_that_stops_reading_costs_the_emulator_no_memory(gateway: Any, kind: str) -> None:
    assert gateway.pid is not None
    before = _rss_bytes(gateway.pid)
    connection, response = _open(gateway, CHAT, f"hello [[fault:{kind}]]")
    try:
        response.read(MIB)
        time.sleep(1.0)  # not reading: without backpressure the emulator would buffer hundreds of MiB
        assert _rss_bytes(gateway.pid) - before < 48 * MIB
        assert gateway.stats()["in_flight"] == 1
    finally:
        connection.close()
    deadline = time.monotonic() + 5
    while gateway.stats()["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gateway.stats()["in_flight"] == 0  # the stream stops when the client goes away


def test_trickle_sends_one_byte_per_interval(gateway: Any) -> None:
    gateway.configure(trickle_ms=40)
    connection, response = _open(gateway, CHAT, "hello [[fault:trickle]]")
    try:
        started = time.monotonic()
        assert response.read(6) == b'{"id":'
        assert time.monotonic() - started >= 0.15
    finally:
        connection.close()
    gateway.configure(trickle_ms=1)
    _, body = _fetch(gateway, CHAT, "hi [[fault:trickle]]")
    assert answer_text(CHAT, json.loads(body))  # all of it arrives, in the end


@pytest.mark.parametrize("path", [CHAT, EMBEDDINGS])
def test_wrong_content_types(gateway: Any, path: str) -> None:
    response, body = _fetch(gateway, path, "hello [[fault:html]]")
    assert response.status == 200 and response.getheader("Content-Type").startswith("text/html")
    assert body.startswith(b"<!DOCTYPE html>")
    response, body = _fetch(gateway, path, "hello [[fault:not_json]]")
    assert response.status == 200 and response.getheader("Content-Type") == "application/json"
    with pytest.raises(ValueError):
        json.loads(body)


def test_the_log_bills_what_a_hostile_answer_generated(gateway: Any) -> None:
    gateway.configure(script=["deep_json", "html", "ok"])
    for _ in range(3):
        _fetch(gateway, CHAT, "Summarize the billing row [[tokens:40]]")
    hostile, html, ok = gateway.requests()
    assert (hostile["status"], hostile["outcome"], html["outcome"], ok["outcome"]) == (200, "deep_json", "html", "ok")
    # The client can read no count from a hostile answer, but the provider billed the generation.
    assert hostile["input_tokens"] == hostile["output_tokens"] == 0
    billed = (hostile["billed_input_tokens"], hostile["billed_output_tokens"])
    assert billed == (ok["billed_input_tokens"], ok["billed_output_tokens"]) == (ok["input_tokens"], 40)
    tokens = gateway.stats()["tokens"]
    assert tokens["billed_output"] == 120 and tokens["output"] == 40
    gateway.configure(script=["truncated"])
    response, body = _fetch(gateway, CHAT, "Summarize the billing row [[tokens:40]]")
    assert len(body) < int(response.getheader("Content-Length"))
    truncated = gateway.requests()[-1]
    assert (truncated["output_tokens"], truncated["billed_output_tokens"]) == (0, 40)


def test_hostile_share_picks_by_request_the_same_way_every_time(gateway: Any) -> None:
    kinds = ["deep_json", "huge_numbers", "html", "not_json"]
    gateway.configure(hostile_share=0.25, hostile_kinds=kinds)
    prompts = [f"Classify row {number}" for number in range(160)]
    for prompt in prompts + prompts[:40]:
        _fetch(gateway, CHAT, prompt)
    outcomes = [entry["outcome"] for entry in gateway.requests()]
    assert outcomes[160:] == outcomes[:40]  # the same request meets the same answer
    hostile = [outcome for outcome in outcomes[:160] if outcome != "ok"]
    assert 20 <= len(hostile) <= 60 and set(hostile) == set(kinds)
    expected = [
        hostile_kind_for(json.dumps(request_body(CHAT, prompt)).encode(), 0.25, tuple(kinds)) or "ok"
        for prompt in prompts
    ]
    assert outcomes[:160] == expected


def test_directives_and_scripts_come_before_the_hostile_share(gateway: Any) -> None:
    gateway.configure(hostile_share=1.0, hostile_kinds=["html", "not_json"], script=["503"])
    assert _fetch(gateway, CHAT, "scripted")[0].status == 503
    response, body = _fetch(gateway, CHAT, "plain [[fault:ok]]")
    assert response.status == 200 and answer_text(CHAT, json.loads(body))
    _fetch(gateway, CHAT, "anything else")
    assert [entry["outcome"] for entry in gateway.requests()][:2] == ["503", "ok"]
    assert gateway.requests()[2]["outcome"] in ("html", "not_json")


def test_hostile_settings_are_checked(gateway: Any) -> None:
    with pytest.raises(ValueError, match="hostile_share"):
        gateway.configure(hostile_share=1.5)
    with pytest.raises(ValueError, match="hostile_kinds"):
        gateway.configure(hostile_kinds=["deep_json", "slow"])
    with pytest.raises(ValueError, match="trickle_ms"):
        gateway.configure(trickle_ms=0)


@pytest.mark.parametrize(
    ("flags", "share", "kinds"),
    [
        (["--hostile"], DEFAULT_HOSTILE_SHARE, list(HOSTILE_KINDS)),
        (["--hostile", "--hostile-share", "0.5", "--hostile-kinds", "html,gzip_bomb"], 0.5, ["html", "gzip_bomb"]),
    ],
)
def test_gateway_command_hostile_flags(flags: list[str], share: float, kinds: list[str]) -> None:
    command = [sys.executable, "-m", "aiquery.cli", "gateway", "--no-auth", *flags]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=REPO)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().decode().strip()
        connection = http.client.HTTPConnection(urlsplit(url).hostname, urlsplit(url).port, timeout=10)
        connection.request("GET", "/_emulator/config")
        config = json.loads(connection.getresponse().read())
        connection.close()
        assert (config["hostile_share"], config["hostile_kinds"]) == (share, kinds)
    finally:
        process.terminate()
        process.wait(10)
