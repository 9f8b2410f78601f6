"""The coordinator: one per Spark application, in the driver's Python process, reached by every Python worker.

It owns what the whole application shares: budget leases and learned paces (:mod:`.budgets`), the usage
journal on the driver (workers' records are appended to a :class:`~aiquery.usage.spool.SpoolWriter` in the
ledger's spool directory, which ingestion moves into Delta), the requests in flight and who sent them
(:mod:`.requests`), and live progress (:mod:`.progress`). It serves the protocol of :mod:`.protocol` on its
own event-loop thread; every frame is handled synchronously there, without a coroutine per frame, except the
answer store's lookups: those run off the loop (:mod:`aiquery.store.guarded`), and a sync that asks the store is
answered when the store answers or its deadline passes. The answer stores and who is sending which request now
are :mod:`.answer_waits`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from aiquery.config import Secret
from aiquery.coordinator.answer_waits import AnswerDesk, Consultation
from aiquery.coordinator.budgets import Budgets
from aiquery.coordinator.cap import CapSetting
from aiquery.coordinator.cap_book import CapBook
from aiquery.coordinator.handshake import PRE_AUTH_FRAME_BYTES, CoordinatorHandshake, Doorman, Refused
from aiquery.coordinator.journal_writes import write_or_explain
from aiquery.coordinator.progress import ProgressBook, QueryProgress, TaskCounts
from aiquery.coordinator.protocol import (
    PROTOCOL_VERSION,
    CoordinatorAddress,
    FrameReader,
    ProtocolError,
    encode_frame,
    new_secret,
)
from aiquery.coordinator.requests import InFlight
from aiquery.coordinator.task_kills import KilledTasks
from aiquery.engine.governor import add_sample
from aiquery.engine.loop import LoopThread
from aiquery.store.guarded import GuardedStore
from aiquery.usage.spool import SpoolWriter

__all__ = ["Coordinator"]

logger = logging.getLogger("aiquery.coordinator")

MAINTENANCE_S = 0.5
HANDSHAKE_TIMEOUT_S = 10.0


class Coordinator:
    """The driver-side service. Start it with :meth:`start`; stop it with :meth:`stop`.

    Args:
        bind_host: the address to listen on.
        advertised_host: the address workers connect to.
        port: the port, or 0 for an ephemeral one.
        tls: a server TLS context and its certificate's fingerprint, or None for plain TCP.
        application: the Spark application id.
        parallelism: the application's concurrent tasks (a cut-off worker's static share is 1/parallelism).
        same_machine: the workers run on this machine (a local master) and journal into its spool directories.
    """

    def __init__(
        self,
        *,
        bind_host: str,
        advertised_host: str,
        port: int = 0,
        tls: tuple[ssl.SSLContext, str] | None = None,
        application: str = "",
        parallelism: int = 1,
        same_machine: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.secret: Secret = new_secret()
        self.bind_host = bind_host
        self.advertised_host = advertised_host
        self.port = port
        self.application = application
        self.parallelism = parallelism
        self.same_machine = same_machine
        self._tls = tls
        self._clock = clock
        self.budgets = Budgets(clock)
        self.progress_book = ProgressBook(clock)
        self.in_flight = InFlight(clock)
        self.killed_tasks = KilledTasks()
        """Running tasks whose job failed: their begin records are refused (fed by the Spark listener)."""
        self.answers = AnswerDesk()
        self.caps = CapBook()
        """The application's spending cap and the sessions' (see :mod:`.cap`)."""
        self._samples: dict[str, dict[str, list[int]]] = {}
        """Estimate runs' row counts, as workers report them: run -> endpoint -> [seen, sent]."""
        self._journals: dict[str, SpoolWriter] = {}
        self._journals_lock = threading.Lock()
        self._loop = LoopThread(name="aiquery-coordinator")
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[_Connection] = set()
        self._doorman = Doorman()
        """Connections still in the handshake, per address: a stranger cannot hold every slot."""
        self._maintenance: asyncio.Task[None] | None = None
        self.refused = 0
        """Connections refused for a missing or wrong secret (for tests and logs)."""

    # ---- life cycle -----------------------------------------------------------------------------------------
    def start(self) -> CoordinatorAddress:
        """Listen and start the maintenance task; the address workers use (the secret included)."""
        self._loop.run(self._listen(), timeout=30)
        self._maintenance = self._loop.run(self._start_maintenance(), timeout=30)
        logger.info(
            "aiquery coordinator listening on %s:%d%s", self.bind_host, self.port, " (TLS)" if self._tls else ""
        )
        return self.address

    @property
    def address(self) -> CoordinatorAddress:
        return CoordinatorAddress(
            host=self.advertised_host,
            port=self.port,
            secret=self.secret,
            fingerprint=self._tls[1] if self._tls else None,
            application=self.application,
            parallelism=self.parallelism,
            same_machine=self.same_machine,
            driver_pid=os.getpid() if self.same_machine else 0,
        )

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self),
            host=self.bind_host,
            port=self.port,
            ssl=self._tls[0] if self._tls else None,
            reuse_address=True,
            backlog=1024,
            ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S if self._tls else None,
        )
        sockets = self._server.sockets
        self.port = int(sockets[0].getsockname()[1])

    async def _start_maintenance(self) -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(self._maintain())

    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(MAINTENANCE_S)
            try:
                self._close_lost()
            except Exception:  # keep maintaining; a failed round is retried in half a second
                logger.exception("coordinator maintenance failed")

    def stop_listening(self) -> None:
        """Close the listener and every connection (workers fall back and keep retrying). For failure drills."""

        async def close() -> None:
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()
                self._server = None
            for connection in list(self._connections):
                connection.abort()

        self._loop.run(close(), timeout=30)

    def resume_listening(self) -> None:
        """Listen again on the same port after :meth:`stop_listening`."""
        self._loop.run(self._listen(), timeout=30)

    def stop(self) -> None:
        """Stop listening, close the journals (requests still in flight are recorded as lost) and the loop."""
        if not self._loop.alive:
            return
        try:
            # Workers told the application is ending do not warn when the connection goes.
            self._loop.run(self._say_closing(), timeout=10)
            self.stop_listening()
            if self._maintenance is not None:
                self._loop.run(_cancelled(self._maintenance), timeout=10)
        except Exception:  # stopping must finish whatever state the loop is in
            logger.debug("coordinator listener did not close cleanly", exc_info=True)
        with self._journals_lock:
            for journal in self._journals.values():
                journal.close()
            self._journals.clear()
        self._loop.call(self.answers.close)
        self._loop.stop()

    async def _say_closing(self) -> None:
        for connection in list(self._connections):
            if connection.transport is not None and connection.worker is not None:
                connection.transport.write(encode_frame({"op": "closing"}))

    @property
    def running(self) -> bool:
        return self._loop.alive

    # ---- journals -------------------------------------------------------------------------------------------
    def add_journal(self, spool_dir: str) -> None:
        """Accept usage records for a ledger's spool directory (a driver-local folder)."""
        with self._journals_lock:
            if spool_dir not in self._journals:
                self._journals[spool_dir] = SpoolWriter(spool_dir)

    def add_store(self, key: str, opener: Callable[[], GuardedStore]) -> None:
        """Serve an answer store under ``key`` (the name query plans give it), opened now unless already served."""

        async def add() -> None:
            if self.answers.store(key) is None:
                self.answers.add_store(key, opener())

        self._loop.run(add(), timeout=60)

    def journal(self, spool_dir: str) -> SpoolWriter | None:
        with self._journals_lock:
            return self._journals.get(spool_dir)

    def rotate(self, spool_dir: str) -> None:
        """Publish every record ended so far into the spool directory, where ingestion reads it."""
        journal = self.journal(spool_dir)
        if journal is not None:
            journal.flush()

    # ---- requests and workers -------------------------------------------------------------------------------
    def task_failed(self, task_attempt_id: int) -> None:
        """Spark reports a task attempt that failed or was killed (thread-safe; from the listener)."""
        self.in_flight.task_failed(task_attempt_id)

    def _close_lost(self) -> None:
        for journal_key, request_ids in self.in_flight.lost().items():
            journal = self.journal(journal_key)
            if journal is not None:
                from aiquery.usage.recovery import LOST_WORKER_MESSAGE

                closed = journal.end_lost(request_ids, LOST_WORKER_MESSAGE)
                self.caps.lost(request_ids)
                logger.info("closed %d request(s) of lost workers as lost", closed)

    def settle(self, timeout: float, *, idle: bool = False) -> int:
        """Wait until no request is begun by a worker that is gone, and no worker holds records in a local journal.

        Args:
            timeout: seconds to wait at most.
            idle: wait also for the requests of live workers to end (or to be closed as lost once their worker
                dies): for a caller whose queries are over, such as a job whose statement was cancelled, whose
                workers still hold requests sent before the cancel.

        Returns:
            How many such requests (and workers holding local records) are left when it returns.
        """
        deadline = time.monotonic() + timeout
        while True:
            stranded = self.in_flight.stranded(live=idle)
            if not stranded or time.monotonic() >= deadline:
                return stranded
            time.sleep(0.1)

    # ---- the spending cap -----------------------------------------------------------------------------------
    def set_application_cap(self, setting: CapSetting) -> bool:
        """Cap every request of the application from now on (``aiquery run --max-cost``); an empty setting removes
        it, one equal to the cap in force changes nothing. Thread-safe. Returns whether the cap changed."""

        async def change() -> bool:
            return self.caps.set_application(setting)

        changed: bool = self._loop.run(change(), timeout=30)
        if changed:
            logger.info("aiquery: application spending cap %s", setting.describe() if setting else "removed")
        return changed

    def set_session_cap(self, owner: str, setting: CapSetting) -> bool:
        """Cap the requests of session ``owner`` from now on (an empty setting removes its cap); other sessions'
        caps and the application's stay. Thread-safe. Returns whether its cap changed."""

        async def change() -> bool:
            return self.caps.set_session(owner, setting)

        changed: bool = self._loop.run(change(), timeout=30)
        if changed:
            logger.info("aiquery: spending cap of session %s %s", owner, setting.describe() if setting else "removed")
        return changed

    def application_cap(self) -> CapSetting:
        """The application's cap (empty when it has none). Thread-safe."""

        async def read() -> CapSetting:
            cap = self.caps.application
            return cap.setting if cap is not None else CapSetting()

        setting: CapSetting = self._loop.run(read(), timeout=30)
        return setting

    def cap_state(self) -> dict[str, Any] | None:
        """Where the spending caps stand (see :meth:`CapBook.snapshot`; thread-safe), or None without a cap."""

        async def snapshot() -> dict[str, Any] | None:
            return self.caps.snapshot()

        state: dict[str, Any] | None = self._loop.run(snapshot(), timeout=30)
        return state

    def sample_counts(self, run: str) -> dict[str, tuple[int, int]]:
        """An estimate run's rows per endpoint: (seen, sent), as workers reported them (thread-safe)."""

        async def counts() -> dict[str, tuple[int, int]]:
            return {endpoint: (seen, sent) for endpoint, (seen, sent) in self._samples.get(run, {}).items()}

        found: dict[str, tuple[int, int]] = self._loop.run(counts(), timeout=30)
        return found

    # ---- progress -------------------------------------------------------------------------------------------
    def progress(self, tasks: Callable[[Iterable[int]], TaskCounts] | None = None) -> list[QueryProgress]:
        """Where every recent query stands."""
        return self.progress_book.snapshot(tasks)

    # ---- one frame ------------------------------------------------------------------------------------------
    def handle_sync(
        self, worker: str, meta: dict[str, Any], payload: bytes
    ) -> tuple[dict[str, Any], bytes | Coroutine[Any, Any, bytes]]:
        """Apply one worker's sync; the reply's metadata and payload (answers found in the store), or, when the sync
        asks the store, a coroutine that completes the metadata and gives the payload."""
        begun = meta.get("b")
        reply_stop: list[int] | None = None
        ended = meta.get("e")
        withdrawn = meta.get("x")
        begun_length = int(meta.get("bl", 0))
        ended_length = int(meta.get("el", len(payload) - begun_length))
        reply: dict[str, Any] = {}
        caps = self.caps
        spent = meta.get("sp")
        if caps:
            reply["cap"] = caps.generation
        if spent:
            caps.spent(spent)
        if withdrawn:
            caps.withdraw(withdrawn)
        if begun or ended or withdrawn:
            journal_key = meta.get("j")
            journal = self.journal(journal_key) if isinstance(journal_key, str) else None
            if journal is None or not isinstance(journal_key, str):
                raise ProtocolError(f"no usage journal {journal_key!r} on this driver")
            if withdrawn:  # nothing to write: taken even when the journal cannot be written
                self.in_flight.ended(worker, withdrawn)
                journal.withdraw(withdrawn)
            if ended:  # before the begins: a journal that cannot take these records takes no new begins either
                failure = self._end(worker, journal, ended, payload[begun_length : begun_length + ended_length], meta)
                if failure is not None:
                    # Not acknowledged: the worker keeps them in its local journal and delivers them again.
                    return {**reply, "error": failure, "halt": failure}, b""
            if begun:
                heads = payload[:begun_length].decode().split("\n")
                tasks = meta.get("t")
                currencies, owners, claims = meta.get("pc"), meta.get("co"), meta.get("pe")
                kept = list(range(len(begun)))
                # kept: where the begins still considered sit in the sync (the worker's waiters are in that order).
                task_list = tasks if isinstance(tasks, list) else [tasks] * len(begun)
                stopped = self.killed_tasks.killed(set(task_list))
                if stopped:
                    # A task being killed: its worker dies within seconds, and a request recorded now might never
                    # leave. Not journaled; the worker does not send them (reply "stop").
                    reply_stop = sorted(stopped)
                    kept = [i for i, task in enumerate(task_list) if task not in stopped]
                    begun = [begun[i] for i in kept]
                    heads = [heads[i] for i in kept]
                    tasks = [task_list[i] for i in kept]
                    currencies, owners, claims = (_pick(values, kept) for values in (currencies, owners, claims))
                if caps and begun:
                    begun, heads, tasks = _admit(caps, begun, heads, tasks, (currencies, owners, claims), reply, kept)
                if begun:
                    failure = write_or_explain(journal, lambda: journal.begin_lines(begun, heads))
                    if failure is None:
                        self.in_flight.begun(worker, journal_key, begun, tasks)
                    else:
                        reply["halt"] = failure  # not journaled: the worker does not send them
                        if caps:
                            caps.withdraw(begun)
        running = meta.get("rt")
        if isinstance(running, int) and self.killed_tasks.killed((running,)):
            # A worker that journals on this machine sends no begins to refuse: it is told with any sync.
            reply_stop = sorted({*(reply_stop or ()), running})
        self.in_flight.holding_local(worker, bool(meta.get("local")), bool(meta.get("dj")))
        samples = meta.get("est")
        if samples:
            for run, endpoints in samples.items():
                for endpoint, (seen, sent) in endpoints.items():
                    add_sample(self._samples, run, endpoint, int(seen), int(sent))
        rows = meta.get("rows")
        if rows:
            self.progress_book.add(rows, meta.get("stage") or {}, meta.get("desc") or {}, meta.get("cost"))
        reply["lease"] = self.budgets.sync(worker, meta.get("demand"), meta.get("seen"))
        if reply_stop:
            reply["stop"] = reply_stop
        consultation = self._answers(worker, meta, payload[begun_length + ended_length :])
        if consultation is None:
            return reply, b""
        return reply, self._consulted(consultation, reply)

    def _end(
        self, worker: str, journal: SpoolWriter, ended: list[str], lines: bytes, meta: dict[str, Any]
    ) -> str | None:
        """Journal a sync's end records, then count them ended (not before: a record whose write failed would be
        dropped as a duplicate when its worker delivers it again). None once done, else why it cannot be."""
        keep = self.in_flight.unrecorded(worker, ended)
        if keep is not None:  # closed as lost already, or delivered before (by this worker or a dead one's peer)
            parts = lines.split(b"\n")
            ended = [ended[i] for i in keep]
            lines = b"".join(parts[i] + b"\n" for i in keep)
        if not ended:
            return None
        failure = write_or_explain(journal, lambda: journal.end_lines(ended, lines))
        if failure is None:
            self.in_flight.ended(worker, ended, delivered=bool(meta.get("local")))
        return failure

    def _answers(self, worker: str, meta: dict[str, Any], answers: bytes) -> Consultation | None:
        """The answer store's part of a sync: answers to keep, claims to release, claims for lookups and waits."""
        store = meta.get("s")
        if not isinstance(store, str):
            return None
        desk = self.answers
        if answers:
            received = {}
            for line in answers.decode().split("\n"):
                key, _, text = line.partition("\t")
                if text:
                    received[key] = text
            desk.answered(worker, store, received)
        releases = meta.get("r")
        if releases:
            desk.release(worker, releases)
        lookups, waits = meta.get("l") or [], meta.get("w") or []
        if not lookups and not waits:
            return None
        return desk.claim(worker, store, lookups, waits)

    async def _consulted(self, consultation: Consultation, reply: dict[str, Any]) -> bytes:
        result = await self.answers.consult(consultation)
        if result.wait:
            reply["wait"] = result.wait
        if result.own:
            reply["own"] = result.own
        return b"".join(f"{key}\t{text}\n".encode() for key, text in result.found.items())

    def worker_connected(self, worker: str) -> None:
        self.in_flight.connected(worker)

    def worker_disconnected(self, worker: str, clean: bool) -> None:
        self.in_flight.disconnected(worker)
        self.answers.forget(worker)
        if clean:
            self.budgets.release(worker)


class _Connection(asyncio.Protocol):
    """One worker's connection: the handshake, then frames handled in order, one reply each.

    A worker that does not read its replies is not read either (its writes pause our reading), so the replies
    waiting for it stay within the transport's high-water mark.
    """

    def __init__(self, coordinator: Coordinator) -> None:
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
        if not self.coordinator._doorman.enter(peer):
            transport.abort()
            return
        self.peer = peer
        self.coordinator._connections.add(self)
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
            self.coordinator._doorman.leave(self.peer)
            self.peer = None
        if self._timeout is not None:
            self._timeout.cancel()

    def _handshake_timeout(self) -> None:
        if self.worker is None:
            self.abort()

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        if self.worker is None and self.peer is None:
            return  # refused or turned away, and closing: nothing more is read
        try:
            for meta, payload in self.reader.feed(data):
                if self.worker is None:
                    self._hello(meta)
                    if self.worker is None:
                        return
                    continue
                op = meta.get("op")
                seq = meta.get("seq")
                if op == "sync":
                    try:
                        reply, answers = self.coordinator.handle_sync(self.worker, meta, payload)
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
        except ProtocolError as exc:
            if self.worker is None:  # a stranger's noise: one quiet line
                logger.debug("coordinator: closing a connection from %s in the handshake: %s", self.peer, exc)
            else:
                logger.warning("coordinator: closing a connection that broke the protocol: %s", exc)
            self.abort()

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
            self.coordinator.refused += 1
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
        self.coordinator._connections.discard(self)
        self._left_handshake()
        if self.worker is not None:
            self.coordinator.worker_disconnected(self.worker, self.clean)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def _pick(values: Any, kept: list[int]) -> Any:
    """The kept begins' values of a per-begin list (a value shared by all stays as it is)."""
    return [values[i] for i in kept] if isinstance(values, list) else values


def _admit(
    caps: CapBook,
    begun: list[str],
    heads: list[str],
    tasks: Any,
    per_begin: tuple[Any, Any, Any],
    reply: dict[str, Any],
    positions: list[int],
) -> tuple[list[str], list[str], Any]:
    """The begins the caps let go (with their heads and tasks); the refused ones (by their ``positions`` in the
    sync) and why go into ``reply``. ``per_begin``: the begins' currencies, cap owners and claims."""
    refusals = caps.admit(begun, *per_begin)
    if not refusals:
        return begun, heads, tasks
    messages: list[str] = []
    which: list[int] = []
    for _, message in refusals:
        if message not in messages:
            messages.append(message)
        which.append(messages.index(message))
    refused = [index for index, _ in refusals]
    reply["refused"] = {"i": [positions[index] for index in refused], "m": which, "t": messages}
    gone = set(refused)
    keep = [index for index in range(len(begun)) if index not in gone]
    if isinstance(tasks, list):
        tasks = [tasks[index] for index in keep]
    return [begun[index] for index in keep], [heads[index] for index in keep], tasks


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


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
