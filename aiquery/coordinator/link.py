"""A worker's connection to the coordinator, and what travels on it.

:class:`Link` opens the connection (TLS checked against the query plan's fingerprint before any frame is read or
written, the secret proved both ways in the handshake of :mod:`.handshake`), numbers each request and matches
its reply, and gives up on a reply that does not come. :class:`Batch` is what the next sync carries and
:class:`Reply` what comes back; :class:`~.syncs.SyncChannel` decides when a batch goes and what to do when the
connection is lost. A worker sends its next sync (or next part of a local journal's delivery) once the last one is
answered, so a slow coordinator makes it wait rather than buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Collection
from typing import Any

from aiquery.coordinator.batch_results import failure_message
from aiquery.coordinator.cap import cap_error
from aiquery.coordinator.handshake import PRE_AUTH_FRAME_BYTES, Refused, WorkerHandshake
from aiquery.coordinator.journal_writes import not_recorded_error
from aiquery.coordinator.protocol import CoordinatorAddress, FrameReader, ProtocolError, encode_frame
from aiquery.coordinator.tls import certificate_fingerprint, client_context
from aiquery.store.base import StoredAnswer

__all__ = ["Batch", "Link", "Reply", "describe"]

CONNECT_TIMEOUT_S = 5.0
REPLY_TIMEOUT_S = 30.0


class Batch:
    """What the next sync carries, and the future its reply resolves.

    The future always gets a result, never an exception: when the sync cannot be delivered its records go to
    the local journal first, so a request waiting on its begin may be sent either way.
    """

    __slots__ = (
        "answers",
        "begin_heads",
        "begin_ids",
        "begin_waiters",
        "claims",
        "collected",
        "currencies",
        "direct_ends",
        "end_ids",
        "end_lines",
        "extra",
        "future",
        "lookups",
        "owners",
        "releases",
        "spend",
        "tasks",
        "wanted",
        "withdrawn",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.begin_ids: list[str] = []
        self.begin_heads: list[str] = []
        self.tasks: list[int | None] = []
        self.currencies: list[str | None] = []
        """The currency each begun request is priced in (None: no price), for the spending cap."""
        self.owners: list[str] = []
        """The cap owner each begun request names (its session's id; empty when its session has no cap)."""
        self.claims: list[list[Any] | None] = []
        """What each begun request counts against a cap should it end without a usage report (None: unknown)."""
        self.begin_waiters: list[asyncio.Future[None]] = []
        """One per begin: the request waiting to be sent (its own future, so that cancelling it touches no other)."""
        self.end_ids: list[str] = []
        self.end_lines: list[str] = []
        self.withdrawn: list[str] = []
        """Request ids begun and then not sent after all."""
        self.direct_ends: list[Any] = []
        """Records of requests begun in the worker's journal on the driver's disk, ended there once this sync
        (which carries their answers for the store) is acknowledged."""
        self.extra: dict[str, list[float]] = {}
        """Demand of chunks being admitted, not yet counted in their endpoint's active calls."""
        self.lookups: list[str] = []
        self.answers: list[str] = []
        """Answers for the store, as ``<fingerprint>\t<encoded answer>\n`` lines."""
        self.releases: list[str] = []
        self.spend: dict[str, Any] = {}
        """What requests ended since the last sync spent, as this sync reports it (reported again should the sync
        fail)."""
        self.collected: list[Any] = []
        """Batch mode's collected requests this sync carries (:class:`~.collect_queue.CollectedPart`)."""
        self.wanted = False
        self.future: asyncio.Future[Reply] = loop.create_future()

    def settle(self, reply: Reply) -> None:
        """Resolve the sync's future and let every request begun in it go (at once: no callback in between); those
        the spending cap refused get its error instead, and all of them the driver's journal could not record."""
        if not self.future.done():
            self.future.set_result(reply)
        refused = reply.refused()
        halted = reply.meta.get("halt")  # the driver's journal cannot record them: none is sent
        for index, waiter in enumerate(self.begin_waiters):
            if not waiter.done():
                message = refused.get(index) if refused else None
                if message is not None:
                    waiter.set_exception(cap_error(message))
                elif halted:
                    waiter.set_exception(not_recorded_error(str(halted)))
                else:
                    waiter.set_result(None)

    def __bool__(self) -> bool:
        return bool(
            self.wanted
            or self.begin_ids
            or self.end_ids
            or self.withdrawn
            or self.answers
            or self.releases
            or self.direct_ends
        )

    def encode(self, journal: str | None, store: str | None, waits: Collection[str]) -> tuple[dict[str, Any], bytes]:
        """The sync's metadata and payload: the records for the driver's ``journal``, and for the answer ``store``
        the lookups, answers and releases, and the fingerprints this worker ``waits`` for."""
        meta: dict[str, Any] = {"op": "sync"}
        payload = b""
        if journal is not None and (self.begin_ids or self.end_ids or self.withdrawn):
            meta["j"] = journal
            if self.begin_ids:
                meta["b"] = self.begin_ids
                meta["t"] = _compact(self.tasks)
                if any(self.currencies):
                    meta["pc"] = _compact(self.currencies)
                if any(self.owners):
                    meta["co"] = _compact(self.owners)
                if any(self.claims):
                    meta["pe"] = self.claims
            if self.end_ids:
                meta["e"] = self.end_ids
            if self.withdrawn:
                meta["x"] = self.withdrawn
        begun = "\n".join(self.begin_heads).encode()
        ended = "".join(self.end_lines).encode()
        meta["bl"], meta["el"] = len(begun), len(ended)
        payload = begun + ended + "".join(self.answers).encode()
        if store is not None and (self.lookups or self.answers or self.releases or waits):
            meta["s"] = store
            if self.lookups:
                meta["l"] = self.lookups
            if waits:
                meta["w"] = list(waits)
            if self.releases:
                meta["r"] = self.releases
        return meta, payload


def _compact(values: list[Any]) -> Any:
    """One value when all are the same, else the list."""
    return values[0] if values.count(values[0]) == len(values) else values


class Reply:
    """A sync's reply: its metadata and the answers the store had (parsed once, shared by every waiter)."""

    __slots__ = ("failed", "hits", "meta")

    def __init__(self, meta: dict[str, Any], payload: bytes = b"") -> None:
        self.meta = meta
        self.hits: dict[str, StoredAnswer] = {}
        self.failed: dict[str, str] = {}
        """Lines failed in a batch of batch mode's run, by fingerprint: their messages."""
        for line in payload.split(b"\n"):
            if line:
                key, _, encoded = line.partition(b"\t")
                try:
                    self.hits[key.decode()] = StoredAnswer.decode(encoded)
                except (ValueError, RecursionError):  # not an answer: a miss (the call sends its request)
                    message = failure_message(encoded)
                    if message is not None:
                        self.failed[key.decode()] = message

    def refused(self) -> dict[int, str] | None:
        """The begins the spending cap refused (by their index in the sync) and why, or None."""
        refused = self.meta.get("refused")
        if not refused:
            return None
        messages = refused["t"]
        return {index: messages[which] for index, which in zip(refused["i"], refused["m"], strict=True)}


class Link:
    """One connection to the coordinator at a time, and the requests waiting for their replies on it.

    Args:
        address: the coordinator's address and secret (from the query plan).
        worker_id: how this worker introduces itself.
        on_closing: called when the coordinator says the application is ending.
        on_closed: called with the reason when a connection that passed the handshake is lost.
    """

    def __init__(
        self,
        address: CoordinatorAddress,
        worker_id: str,
        on_closing: Callable[[], None],
        on_closed: Callable[[str], None],
    ) -> None:
        self.address = address
        self.worker_id = worker_id
        self._on_closing = on_closing
        self._on_closed = on_closed
        self.transport: asyncio.Transport | None = None
        self._replies: dict[int, tuple[asyncio.Future[Reply], OnReply | None]] = {}
        self._seq = 0

    async def open(self) -> None:
        """Connect and pass the handshake.

        Raises:
            OSError, asyncio.TimeoutError, ConnectionError, ProtocolError: the coordinator cannot be reached, is
                not the one in the query plan (its certificate or its proof of the secret), or refuses this worker.
        """
        loop = asyncio.get_running_loop()
        address = self.address
        hello: asyncio.Future[None] = loop.create_future()
        transport, _ = await asyncio.wait_for(
            loop.create_connection(
                lambda: _ClientProtocol(self, hello),
                address.host,
                address.port,
                ssl=client_context() if address.fingerprint else None,
                server_hostname="" if address.fingerprint else None,
            ),
            CONNECT_TIMEOUT_S,
        )
        try:
            await asyncio.wait_for(hello, CONNECT_TIMEOUT_S)
        except BaseException:
            transport.abort()
            raise
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(
        self, meta: dict[str, Any], payload: bytes = b"", on_reply: OnReply | None = None
    ) -> asyncio.Future[Reply]:
        """Send a request; the future of its reply. ``on_reply``, if given, is called with that future as soon as
        it is done, in the same step (a done-callback would run one turn of the loop later)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Reply] = loop.create_future()
        transport = self.transport
        if transport is None or transport.is_closing():
            future.set_exception(ConnectionError("not connected"))
            if on_reply is not None:
                on_reply(future)
            return future
        self._seq += 1
        meta["seq"] = self._seq
        self._replies[self._seq] = (future, on_reply)
        transport.write(encode_frame(meta, payload))
        handle = loop.call_later(REPLY_TIMEOUT_S, self._reply_timeout, self._seq)
        future.add_done_callback(lambda _: handle.cancel())
        return future

    async def close(self) -> None:
        """Say goodbye (waiting a few seconds at most for the reply), then close the connection."""
        with contextlib.suppress(ConnectionError, asyncio.TimeoutError):
            await asyncio.wait_for(self.send({"op": "bye"}), 5.0)
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
            self.transport = None

    def _reply_timeout(self, seq: int) -> None:
        entry = self._replies.pop(seq, None)
        if entry is not None and not entry[0].done():
            _resolve(entry, error=ConnectionError(f"no reply from the coordinator in {REPLY_TIMEOUT_S:g} s"))
            if self.transport is not None:
                self.transport.abort()

    def _received(self, meta: dict[str, Any], payload: bytes) -> None:
        if meta.get("op") == "closing":
            self._on_closing()
            return
        entry = self._replies.pop(meta.get("re", -1), None)
        if entry is not None and not entry[0].done():
            _resolve(entry, reply=Reply(meta, payload))

    def _connection_closed(self, reason: str) -> None:
        self.transport = None
        replies, self._replies = self._replies, {}
        for entry in replies.values():
            if not entry[0].done():
                _resolve(entry, error=ConnectionError(reason))
        self._on_closed(reason)


OnReply = Callable[["asyncio.Future[Reply]"], None]


def _resolve(
    entry: tuple[asyncio.Future[Reply], OnReply | None], reply: Reply | None = None, error: Exception | None = None
) -> None:
    future, on_reply = entry
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(reply)  # type: ignore[arg-type]
    if on_reply is not None:
        on_reply(future)


def describe(error: BaseException) -> str:
    if isinstance(error, asyncio.TimeoutError):
        return "timed out"
    text = str(error) or type(error).__name__
    return text


class _ClientProtocol(asyncio.Protocol):
    """The worker's end: the handshake, then every frame to the link.

    ``connection_made`` runs once TLS is established and before anything that came with the handshake is
    delivered, so the certificate is checked there: a peer showing another certificate never sees a frame.
    """

    def __init__(self, link: Link, hello: asyncio.Future[None]) -> None:
        self.link = link
        self.hello = hello
        self.handshake = WorkerHandshake(link.address.secret, link.worker_id)
        self.reader = FrameReader(PRE_AUTH_FRAME_BYTES, 0)
        self.transport: asyncio.Transport | None = None
        self.pinned = False
        self.ready = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        expected = self.link.address.fingerprint
        if expected and certificate_fingerprint(transport) != expected:
            self._refuse(ConnectionError("the coordinator's TLS certificate is not the one in the query plan"))
            return
        self.pinned = True
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if not self.pinned or self.transport is None:
            return
        try:
            for meta, payload in self.reader.feed(data):
                if self.ready:
                    self.link._received(meta, payload)
                elif not self._handshake(meta):
                    return
        except ProtocolError as error:
            self._refuse(error)

    def _handshake(self, meta: dict[str, Any]) -> bool:
        """Take one handshake frame; whether the connection goes on."""
        assert self.transport is not None
        try:
            if meta.get("op") == "challenge":
                self.transport.write(encode_frame(self.handshake.hello(meta)))
                return True
            self.handshake.welcome(meta)
        except Refused as refusal:
            address = self.link.address
            self._refuse(ConnectionError(f"coordinator at {address.host}:{address.port}: {refusal}"))
            return False
        self.ready = True
        self.reader.trust()
        if not self.hello.done():
            self.hello.set_result(None)
        return True

    def _refuse(self, error: Exception) -> None:
        self.pinned = False
        if self.transport is not None:
            self.transport.abort()
        if not self.hello.done():
            self.hello.set_exception(error)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.hello.done():
            self.hello.set_exception(ConnectionError(describe(exc) if exc else "connection closed"))
        if self.ready:
            self.link._connection_closed(describe(exc) if exc else "connection closed by the coordinator")
