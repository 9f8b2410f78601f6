"""The coordinator's handshake against strangers: impostors, a relay in the middle, floods and malformed frames.

A real Coordinator in this process (its own loop thread), workers' links opened on the test's own loop, and
plain sockets or asyncio servers as the hostile peers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from coordinator_helpers import started_coordinator

from aiquery.config import Secret
from aiquery.coordinator.handshake import MAX_UNAUTHENTICATED_PER_ADDRESS, Doorman
from aiquery.coordinator.link import Link
from aiquery.coordinator.protocol import HEADER, CoordinatorAddress, FrameReader, ProtocolError, encode_frame
from aiquery.coordinator.server import Coordinator
from aiquery.coordinator.tls import client_context, server_context


@pytest.fixture
def coordinator(tmp_path: Path) -> Iterator[Coordinator]:
    yield from started_coordinator(tmp_path)


def link_to(address: CoordinatorAddress, worker: str = "w-test") -> Link:
    return Link(address, worker, lambda: None, lambda reason: None)


def challenged(port: int) -> tuple[socket.socket, dict[str, Any]]:
    """A plain socket connected to the coordinator, and the challenge it was sent."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    reader = FrameReader()
    frames: list[dict[str, Any]] = []
    while not frames:
        data = sock.recv(65536)
        assert data, "closed before the challenge"
        frames += [meta for meta, _ in reader.feed(data)]
    assert frames[0]["op"] == "challenge"
    return sock, frames[0]


def closed(sock: socket.socket, within: float = 3.0) -> bool:
    """Whether the peer closes ``sock`` within ``within`` seconds (anything it sends first is skipped)."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return True


@pytest.mark.parametrize("reflect", [False, True], ids=["bare-ok", "reflected-proof"])
def test_a_worker_refuses_a_peer_that_does_not_prove_the_secret(reflect: bool) -> None:
    """A stranger on the coordinator's port that says ok (or echoes the worker's own proof) learns nothing more."""
    after_hello = bytearray()

    class Impostor(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self.transport = transport
            self.reader = FrameReader()
            self.hello: dict[str, Any] | None = None
            transport.write(encode_frame({"op": "challenge", "nonce": secrets.token_hex(32), "version": 2}))

        def data_received(self, data: bytes) -> None:
            if self.hello is not None:
                after_hello.extend(data)
                return
            for meta, _ in self.reader.feed(data):
                self.hello = meta
                welcome = {"re": 0, "ok": True, "pid": 1}
                if reflect:
                    welcome["proof"] = meta.get("proof")
                self.transport.write(encode_frame(welcome))

    async def attempt() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Impostor, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        link = link_to(CoordinatorAddress(host="127.0.0.1", port=port, secret=Secret("the application's")))
        try:
            with pytest.raises(ConnectionError, match="did not prove the application's secret"):
                await link.open()
            assert link.transport is None
            # What a worker would send next (a sync) cannot go out: the link is not connected.
            with pytest.raises(ConnectionError, match="not connected"):
                await link.send({"op": "sync"})
            await asyncio.sleep(0.2)
        finally:
            link.abort()
            server.close()
            await server.wait_closed()

    asyncio.run(attempt())
    assert bytes(after_hello) == b""


def test_a_worker_refuses_a_huge_frame_from_a_peer_not_yet_proven() -> None:
    class Flood(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            transport.write(HEADER.pack(1 << 20, 64 << 20) + b"\x00" * 65536)

    async def attempt() -> float:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Flood, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        link = link_to(CoordinatorAddress(host="127.0.0.1", port=port, secret=Secret("the application's")))
        started = time.monotonic()
        try:
            with pytest.raises(ProtocolError, match="too large"):
                await link.open()
            return time.monotonic() - started
        finally:
            link.abort()
            server.close()
            await server.wait_closed()

    assert asyncio.run(attempt()) < 1.0  # refused on the header, not after waiting for the frame


def test_a_relay_with_its_own_certificate_gets_no_byte_from_the_worker(tmp_path: Path) -> None:
    """A relay in the middle terminates TLS with its own certificate and forwards the real coordinator's challenge
    at once, in the same packet as its handshake's last message: the worker checks the pin first and answers
    nothing, so the relay never holds a proof to join with."""
    coordinator = Coordinator(bind_host="127.0.0.1", advertised_host="127.0.0.1", tls=server_context())
    coordinator.start()
    from_worker = bytearray()
    from_coordinator = bytearray()

    async def attack() -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(
            "127.0.0.1", coordinator.port, ssl=client_context(), server_hostname=""
        )
        head = await upstream_reader.readexactly(HEADER.size)
        challenge = head + await upstream_reader.readexactly(HEADER.unpack(head)[0])

        async def pump(transport: asyncio.Transport) -> None:
            while data := await upstream_reader.read(65536):
                from_coordinator.extend(data)
                transport.write(data)

        class Relay(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                assert isinstance(transport, asyncio.Transport)
                # Written before the handshake's last flight is flushed: both reach the worker together.
                transport.write(challenge)
                self.pump = asyncio.ensure_future(pump(transport))

            def data_received(self, data: bytes) -> None:
                from_worker.extend(data)
                upstream_writer.write(data)

        relay_context, _ = server_context()
        # TLS 1.2: the server finishes the handshake last, so its first data can share a packet with it.
        relay_context.maximum_version = ssl.TLSVersion.TLSv1_2
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Relay, "127.0.0.1", 0, ssl=relay_context)
        port = server.sockets[0].getsockname()[1]
        link = link_to(dataclasses.replace(coordinator.address, port=port))
        try:
            with pytest.raises(ConnectionError, match="certificate is not the one in the query plan"):
                await link.open()
            await asyncio.sleep(0.5)
        finally:
            link.abort()
            upstream_writer.close()
            server.close()
            await server.wait_closed()

    try:
        asyncio.run(attack())
    finally:
        coordinator.stop()
    assert bytes(from_worker) == b""
    assert b'"ok"' not in from_coordinator


def test_a_huge_frame_before_the_handshake_is_refused_on_its_header(coordinator: Coordinator) -> None:
    sock, _ = challenged(coordinator.port)
    with sock:
        # 1 MiB of metadata and 64 MiB of payload: the largest frame an authenticated worker may send.
        sock.sendall(HEADER.pack(1 << 20, 64 << 20) + b"\x00" * 4096)
        started = time.monotonic()
        assert closed(sock), "the coordinator waited for the rest of a 65 MiB frame from a stranger"
        assert time.monotonic() - started < 2.0
    # Metadata past a few KiB is refused too, even as JSON.
    sock, _ = challenged(coordinator.port)
    with sock:
        sock.sendall(encode_frame({"op": "hello", "padding": "x" * 8192}))
        assert closed(sock)


def test_a_malformed_proof_is_refused_quietly(coordinator: Coordinator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    before = coordinator.refused
    for proof in ("é" * 64, ["not", "text"], "\ud800" * 64):
        sock, _ = challenged(coordinator.port)
        with sock:
            hello = {"op": "hello", "worker": "w", "nonce": secrets.token_hex(32), "proof": proof}
            sock.sendall(encode_frame(hello))
            reader = FrameReader()
            replies = [meta for meta, _ in reader.feed(sock.recv(65536))]
            assert replies and replies[0]["error"].startswith("refused"), replies
            assert closed(sock)
    assert coordinator.refused == before + 3
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not loud, [r.getMessage() for r in loud]
    refusals = [r for r in caplog.records if r.name == "aiquery.coordinator" and "refused" in r.getMessage()]
    assert len(refusals) == 3 and all(r.exc_info is None for r in refusals)


def test_connections_in_the_handshake_are_limited_per_address(coordinator: Coordinator) -> None:
    strangers = [challenged(coordinator.port)[0] for _ in range(MAX_UNAUTHENTICATED_PER_ADDRESS)]
    try:
        one_more = socket.create_connection(("127.0.0.1", coordinator.port), timeout=5)
        with one_more:
            assert closed(one_more), "a connection past the limit was let into the handshake"
        for sock in strangers[:4]:
            sock.close()
        # A worker gets in again once some leave.
        deadline = time.monotonic() + 5
        while True:
            try:
                asyncio.run(_connects(coordinator.address))
                break
            except ConnectionError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
    finally:
        for sock in strangers:
            sock.close()


async def _connects(address: CoordinatorAddress) -> None:
    link = link_to(address)
    try:
        await link.open()
    finally:
        link.abort()


def test_a_worker_that_does_not_read_its_replies_is_not_read_either(coordinator: Coordinator) -> None:
    """Requests whose replies pile up unread pause the coordinator's reading, so its write buffer stays bounded."""
    requests = 8000
    op = "x" * 4000  # an unknown op: its reply names it, so each reply is as large as its request

    async def flood() -> None:
        link = link_to(coordinator.address)
        await link.open()
        assert link.transport is not None
        link.transport.pause_reading()
        try:
            for seq in range(requests):
                link.transport.write(encode_frame({"op": op, "seq": seq}))
            await asyncio.sleep(2.0)
        finally:
            link.abort()

    async def buffered() -> int:
        return max(c.transport.get_write_buffer_size() for c in coordinator._connections if c.transport)

    async def watch() -> int:
        peak = 0
        task = asyncio.ensure_future(flood())
        while not task.done():
            await asyncio.sleep(0.1)
            peak = max(peak, coordinator._loop.run(buffered(), timeout=10) if coordinator._connections else 0)
        await task
        return peak

    peak = asyncio.run(watch())
    assert peak < 2 << 20, f"the coordinator buffered {peak / 2**20:.1f} MiB of replies for a worker not reading"


def test_the_doorman_counts_per_address_and_in_all() -> None:
    doorman = Doorman(per_address=2, total=3)
    assert doorman.enter("a") and doorman.enter("a") and not doorman.enter("a")
    assert doorman.enter("b") and not doorman.enter("c")
    doorman.leave("a")
    assert doorman.enter("c") and doorman.waiting == {"a": 1, "b": 1, "c": 1}

