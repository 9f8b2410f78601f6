"""The HTTP server's protocol handling, the command and the process handle."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from gateway_http import CHAT, request_body, send

from aiquery.gateway import main, start_gateway

REPO = Path(__file__).resolve().parents[2]


def _raw_exchange(url: str, payload: bytes, expect_responses: int, timeout: float = 5.0) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as connection:
        connection.sendall(payload)
        received = b""
        while received.count(b"HTTP/1.1 ") < expect_responses or not received.endswith(b"}"):
            chunk = connection.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


def _request(body: dict[str, Any], token: str, extra: str = "") -> bytes:
    data = json.dumps(body).encode()
    head = f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
    head += f"Content-Length: {len(data)}\r\n{extra}\r\n"
    return head.encode() + data


def test_keep_alive_serves_many_requests_on_one_connection(gateway: Any) -> None:
    host, port = gateway.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    sockets = set()
    for index in range(3):
        connection.request(
            "POST",
            CHAT,
            body=json.dumps(request_body(CHAT, f"r{index}")),
            headers={"Authorization": f"Bearer {gateway.token}"},
        )
        response = connection.getresponse()
        assert response.status == 200
        response.read()
        sockets.add(id(connection.sock))
    connection.close()
    assert len(sockets) == 1


def test_pipelined_requests_are_answered_in_order(gateway: Any) -> None:
    slow = _request(request_body(CHAT, "first [[latency_ms:150]]"), gateway.token)
    fast = _request(request_body(CHAT, "second"), gateway.token)
    received = _raw_exchange(gateway.url, slow + fast, 2)
    assert received.count(b"HTTP/1.1 200 OK") == 2
    assert received.index(b"first") < received.index(b"second")


def test_expect_100_continue(gateway: Any) -> None:
    received = _raw_exchange(
        gateway.url, _request(request_body(CHAT, "x"), gateway.token, "Expect: 100-continue\r\n"), 2
    )
    assert received.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK")


def test_chunked_uploads_are_refused(gateway: Any) -> None:
    payload = f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".encode()
    assert _raw_exchange(gateway.url, payload, 1).startswith(b"HTTP/1.1 501 ")


def test_garbage_is_a_400_and_closes(gateway: Any) -> None:
    assert _raw_exchange(gateway.url, b"NONSENSE\r\n\r\n", 1).startswith(b"HTTP/1.1 400 ")


def test_http_1_0_closes_after_the_answer(gateway: Any) -> None:
    data = json.dumps(request_body(CHAT, "x")).encode()
    head = f"POST {CHAT} HTTP/1.0\r\nAuthorization: Bearer {gateway.token}\r\n"
    head += f"Content-Length: {len(data)}\r\n\r\n"
    received = _raw_exchange(gateway.url, head.encode() + data, 1)
    assert b"Connection: close" in received


def test_only_loopback_hosts() -> None:
    with pytest.raises(ValueError, match="loopback"):
        start_gateway(host="0.0.0.0")


def test_invalid_settings_fail_before_starting() -> None:
    with pytest.raises(ValueError, match="latency_ms"):
        start_gateway(latency_ms="fast")


def test_ipv6_loopback_in_process() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        gateway = start_gateway(host="::1", in_process=True)
    except RuntimeError:
        pytest.skip("IPv6 loopback is not configured")
    with gateway:
        assert gateway.url.startswith("http://[::1]:")
        assert send(gateway.url, CHAT, request_body(CHAT, "x"), token=gateway.token).status == 200


def test_command_rejects_bad_config() -> None:
    with pytest.raises(SystemExit) as raised:
        main(["--config", '{"fault_rates": {"503": 2}}'])
    assert raised.value.code == 2


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_command_prints_its_url_and_stops_cleanly_on_signals(signum: int) -> None:
    command = [sys.executable, "-m", "aiquery.gateway", "--no-auth", "--latency-ms", "1", "--seed", "3"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=REPO)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().decode().strip()
        assert url.startswith("http://127.0.0.1:")
        assert send(url, CHAT, request_body(CHAT, "x")).status == 200
        process.send_signal(signum)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_command_stops_when_its_parent_goes_away() -> None:
    command = [sys.executable, "-m", "aiquery.gateway", "--watch-stdin"]
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=REPO
    )
    try:
        assert process.stdout is not None and process.stdin is not None
        assert process.stdout.readline().startswith(b"http://")
        process.stdin.close()
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_handle_close_stops_the_process() -> None:
    gateway = start_gateway()
    assert gateway.pid is not None
    gateway.close()
    gateway.close()  # idempotent
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            send(gateway.url, CHAT, request_body(CHAT, "x"), token=gateway.token, timeout=1)
        except OSError:
            return
        time.sleep(0.05)
    raise AssertionError("the gateway still answers after close()")
