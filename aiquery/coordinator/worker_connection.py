"""One worker's connection to the coordinator: the handshake, then frames handled in order, one reply each.

The coordinator (:class:`~aiquery.coordinator.server.Coordinator`) is the :class:`ConnectionHost`: it keeps the
connections, proves the secret (:mod:`.handshake`) and handles each sync (:mod:`.sync_handling`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Coroutine
from typing import Any, Protocol

from aiquery.config import Secret
from aiquery.coordinator.handshake import PRE_AUTH_FRAME_BYTES, CoordinatorHandshake, Doorman, Refused
from aiquery.coordinator.protocol import PROTOCOL_VERSION, FrameReader, ProtocolError, encode_frame

__all__ = ["HANDSHAKE_TIMEOUT_S", "ConnectionHost", "WorkerConnection"]

logger = logging.getLogger("aiquery.coordinator")

HANDSHAKE_TIMEOUT_S = 10.0


class ConnectionHost(Protocol):
    """What a connection needs of the service it belongs to."""

    secret: Secret
    doorman: Doorman
    """Connections still in the handshake, per address: a stranger cannot hold every slot."""

    def connection_opened(self, connection: WorkerConnection) -> None: ...

    def connection_closed(self, connection: WorkerConnection) -> None: ...

    def connection_refused(self) -> None:
        """A peer did not prove the secret."""
        ...

    def worker_connected(self, worker: str) -> None: ...

    def worker_disconnected(self, worker: str, clean: bool) -> None: ...

    def handle_sync(
        self, worker: str, meta: dict[str, Any], payload: bytes
    ) -> tuple[dict[str, Any], bytes | Coroutine[Any, Any, bytes]]: ...


class WorkerConnection(asyncio.Protocol):
    """One worker's connection: the handshake, then frames handled in order, one reply each.

    A worker that does not read its replies is not read either (its writes pause our reading), so the replies
    waiting for it stay within the transport's high-water mark.
    """

    def __init__(self, coordinator: ConnectionHost) -> None:
        self.coordinator = coordinator
        self.transport: asyncio.Transport | None = None
        self.reader = FrameReader(PRE_AUTH_FRAME_BYTES, 0)
        self.handshake = CoordinatorHandshake(coordinator.secret)
        self.worker: str | None = None
        self.clean = False
        self.peer: str | None = None
        """The peer's address while it counts among the doorman's connections in the handshake."""
        self._timeout: asyncio.TimerHandle | None = None
        self._consulting: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peername = transport.get_extra_info("peername")
        peer = str(peername[0]) if isinstance(peername, tuple) and peername else "?"
        if not self.coordinator.doorman.enter(peer):
            transport.abort()
            return
        self.peer = peer
        self.coordinator.connection_opened(self)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            _keepalive(sock)
        transport.write(encode_frame(self.handshake.challenge(PROTOCOL_VERSION)))
        self._timeout = asyncio.get_running_loop().call_later(HANDSHAKE_TIMEOUT_S, self._handshake_timeout)

    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def _left_handshake(self) -> None:
        if self.peer is not None:
            self.coordinator.doorman.leave(self.peer)
            self.peer = None
        if self._timeout is not None:
            self._timeout.cancel()

    def _handshake_timeout(self) -> None:
        if self.worker is None:
            self.abort()

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        if self.worker is None and self.peer is None:
            return  # refused or turned away, and closing: nothing more is read
        try:
            for meta, payload in self.reader.feed(data):
                if self.worker is None:
                    self._hello(meta)
                    if self.worker is None:
                        return
                    continue
                self._frame(self.worker, meta, payload)
        except ProtocolError as exc:
            if self.worker is None:  # a stranger's noise: one quiet line
                logger.debug("coordinator: closing a connection from %s in the handshake: %s", self.peer, exc)
            else:
                logger.warning("coordinator: closing a connection that broke the protocol: %s", exc)
            self.abort()

    def _frame(self, worker: str, meta: dict[str, Any], payload: bytes) -> None:
        """Handle one frame of a worker past the handshake, and reply to it (now, or once the store answered)."""
        transport = self.transport
        assert transport is not None
        op = meta.get("op")
        seq = meta.get("seq")
        if op == "sync":
            try:
                reply, answers = self.coordinator.handle_sync(worker, meta, payload)
            except ProtocolError as exc:
                reply, answers = {"error": str(exc)}, b""
            reply["re"] = seq
            if isinstance(answers, bytes):
                transport.write(encode_frame(reply, answers))
            else:
                self._reply_later(reply, answers)
        elif op == "bye":
            self.clean = True
            transport.write(encode_frame({"re": seq}))
        else:
            transport.write(encode_frame({"re": seq, "error": f"unknown op {op!r}"}))

    def _reply_later(self, reply: dict[str, Any], answers: Coroutine[Any, Any, bytes]) -> None:
        """Send a sync's reply once the store has answered (replies name their request: order does not matter)."""

        async def send() -> None:
            payload = await answers
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(encode_frame(reply, payload))

        task = asyncio.get_running_loop().create_task(send())
        self._consulting.add(task)
        task.add_done_callback(self._consulting.discard)

    def _hello(self, meta: dict[str, Any]) -> None:
        assert self.transport is not None
        try:
            worker, proof = self.handshake.hello(meta)
        except Refused as refusal:
            self.coordinator.connection_refused()
            logger.debug("coordinator: refused a connection from %s: %s", self.peer, refusal)
            # Say why, without echoing anything the peer sent, then close.
            self.transport.write(encode_frame({"error": f"refused: {refusal}"}))
            self.transport.close()
            self._left_handshake()
            return
        self.worker = worker
        self._left_handshake()
        self.reader.trust()
        self.coordinator.worker_connected(worker)
        self.transport.write(encode_frame({"re": 0, "ok": True, "pid": os.getpid(), "proof": proof}))

    def connection_lost(self, exc: Exception | None) -> None:
        self.coordinator.connection_closed(self)
        self._left_handshake()
        if self.worker is not None:
            self.coordinator.worker_disconnected(self.worker, self.clean)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def _keepalive(sock: socket.socket) -> None:
    # A worker whose machine vanished sends no FIN: keepalive probes find the dead connection in about 30 s.
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if hasattr(socket, "TCP_KEEPIDLE"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 15)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 5)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass
