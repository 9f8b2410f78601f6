"""The coordinator: one per Spark application, in the driver's Python process, reached by every Python worker.

It owns what the whole application shares: budget leases and learned paces (:mod:`.budgets`), the usage
journal on the driver (workers' records are appended to a :class:`~aiquery.usage.spool.SpoolWriter` in the
ledger's spool directory, which ingestion moves into Delta), the requests in flight and who sent them
(:mod:`.requests`), and live progress (:mod:`.progress`). It serves the protocol of :mod:`.protocol` on its
own event-loop thread; every frame is handled synchronously there, without a coroutine per frame, except the
answer store's lookups: those run off the loop (:mod:`aiquery.store.guarded`), and a sync that asks the store is
answered when the store answers or its deadline passes. The answer stores and who is sending which request now
are :mod:`.answer_waits`; a worker's connection is :mod:`.worker_connection`, and what its syncs do
:mod:`.sync_handling`. The spending caps are :mod:`.cap_book`'s, set here from any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, TypeVar

from aiquery.config import Secret
from aiquery.coordinator.answer_waits import AnswerDesk
from aiquery.coordinator.batch_results import BatchResults
from aiquery.coordinator.budgets import Budgets
from aiquery.coordinator.cap import CapSetting
from aiquery.coordinator.cap_book import CapBook
from aiquery.coordinator.collect_desk import CollectDesk, Collector
from aiquery.coordinator.handshake import Doorman
from aiquery.coordinator.progress import ProgressBook, QueryProgress, TaskCounts
from aiquery.coordinator.protocol import CoordinatorAddress, encode_frame, new_secret
from aiquery.coordinator.requests import InFlight
from aiquery.coordinator.sync_handling import SyncHandler
from aiquery.coordinator.task_kills import KilledTasks
from aiquery.coordinator.worker_connection import HANDSHAKE_TIMEOUT_S, WorkerConnection
from aiquery.engine.governor import CollectCounts
from aiquery.engine.loop import LoopThread
from aiquery.store.guarded import GuardedStore
from aiquery.usage.spool import SpoolWriter

__all__ = ["Coordinator"]

logger = logging.getLogger("aiquery.coordinator")

MAINTENANCE_S = 0.5
T = TypeVar("T")


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
        self.collect_desk = CollectDesk()
        """Batch mode's collect passes: their collectors and row counts."""
        self._journals: dict[str, SpoolWriter] = {}
        self._journals_lock = threading.Lock()
        self._loop = LoopThread(name="aiquery-coordinator")
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[WorkerConnection] = set()
        self.doorman = Doorman()
        """Connections still in the handshake, per address: a stranger cannot hold every slot."""
        self._maintenance: asyncio.Task[None] | None = None
        self.refused = 0
        """Connections refused for a missing or wrong secret (for tests and logs)."""
        self._syncs = SyncHandler(
            journal=self.journal,
            caps=self.caps,
            in_flight=self.in_flight,
            killed_tasks=self.killed_tasks,
            budgets=self.budgets,
            progress_book=self.progress_book,
            answers=self.answers,
            samples=self._samples,
            collect_desk=self.collect_desk,
        )

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
            lambda: WorkerConnection(self),
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
        changed = self._on_loop(lambda: self.caps.set_application(setting))
        if changed:
            logger.info("aiquery: application spending cap %s", setting.describe() if setting else "removed")
        return changed

    def set_session_cap(self, owner: str, setting: CapSetting) -> bool:
        """Cap the requests of session ``owner`` from now on (an empty setting removes its cap); other sessions'
        caps and the application's stay. Thread-safe. Returns whether its cap changed."""
        changed = self._on_loop(lambda: self.caps.set_session(owner, setting))
        if changed:
            logger.info("aiquery: spending cap of session %s %s", owner, setting.describe() if setting else "removed")
        return changed

    def application_cap(self) -> CapSetting:
        """The application's cap (empty when it has none). Thread-safe."""

        def read() -> CapSetting:
            cap = self.caps.application
            return cap.setting if cap is not None else CapSetting()

        return self._on_loop(read)

    def cap_state(self) -> dict[str, Any] | None:
        """Where the spending caps stand (see :meth:`CapBook.snapshot`; thread-safe), or None without a cap."""
        return self._on_loop(self.caps.snapshot)

    def sample_counts(self, run: str) -> dict[str, tuple[int, int]]:
        """An estimate run's rows per endpoint: (seen, sent), as workers reported them (thread-safe)."""
        return self._on_loop(
            lambda: {endpoint: (seen, sent) for endpoint, (seen, sent) in self._samples.get(run, {}).items()}
        )

    def set_collector(self, run: str, sink: Collector | None, *, raw: bool = False) -> None:
        """Hand batch run ``run``'s collected requests to ``sink`` (None: stop): ``sink(endpoint_name,
        [(fingerprint, request_json), ...])``, called on the coordinator's loop (keep it quick), maybe more than
        once for a fingerprint; ``raw``: each request as its JSON text rather than the dict (thread-safe)."""
        self._on_loop(lambda: self.collect_desk.set_collector(run, sink, raw=raw))

    def set_batch_results(self, source: BatchResults | None) -> None:
        """Ask ``source`` (batch mode's run: its answers and failed lines) for every answer-store miss from now on
        (None: stop); see :mod:`.batch_results` (thread-safe)."""

        def install() -> None:
            self.answers.batch_results = source

        self._on_loop(install)

    def collect_counts(self, run: str) -> dict[str, CollectCounts]:
        """Batch run ``run``'s collect-pass rows per endpoint, as workers reported them (thread-safe)."""
        return self._on_loop(lambda: self.collect_desk.counts(run))

    # ---- progress -------------------------------------------------------------------------------------------
    def progress(self, tasks: Callable[[Iterable[int]], TaskCounts] | None = None) -> list[QueryProgress]:
        """Where every recent query stands."""
        return self.progress_book.snapshot(tasks)

    # ---- workers and their syncs ----------------------------------------------------------------------------
    def handle_sync(
        self, worker: str, meta: dict[str, Any], payload: bytes
    ) -> tuple[dict[str, Any], bytes | Coroutine[Any, Any, bytes]]:
        """Apply one worker's sync (see :class:`~.sync_handling.SyncHandler`)."""
        return self._syncs.handle(worker, meta, payload)

    def worker_connected(self, worker: str) -> None:
        self.in_flight.connected(worker)

    def worker_disconnected(self, worker: str, clean: bool) -> None:
        self.in_flight.disconnected(worker)
        self.answers.forget(worker)
        if clean:
            self.budgets.release(worker)

    def connection_opened(self, connection: WorkerConnection) -> None:
        self._connections.add(connection)

    def connection_closed(self, connection: WorkerConnection) -> None:
        self._connections.discard(connection)

    def connection_refused(self) -> None:
        self.refused += 1

    def _on_loop(self, function: Callable[[], T]) -> T:
        """Call ``function`` on the coordinator's loop, where its books are kept, and return its result."""

        async def call() -> T:
            return function()

        return self._loop.run(call(), timeout=30)


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
