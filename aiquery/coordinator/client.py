"""The worker's side of the coordinator: a :class:`~aiquery.engine.governor.Governor` that asks the driver.

Everything travels in *syncs* (see :mod:`.protocol`), one in flight at a time; whatever piles up meanwhile joins
the next one:

- :meth:`CoordinatorClient.admit` (once per chunk of rows) sends the chunk's demand and waits for the lease;
- :meth:`CoordinatorClient.begin` queues the request's record head and returns the future of the sync that
  carries it: the engine sends the request once the driver has journaled it. Begins that arrive together go
  together (a group commit), so the driver sees a few syncs per worker per round trip, never one per row;
- :meth:`CoordinatorClient.end` queues the complete record; ends join the next sync, which a ticker sends at
  least every quarter second while there is anything to report (it also renews the leases);
- answers and 429s per endpoint feed the application's learned pace, and row and request counts feed progress.

When the workers run on the driver's machine (a local master: the address says ``same_machine``) and no
spending cap is in force, begin and end records skip the round trip: the worker journals them straight into the
driver's usage spool directory (:func:`~aiquery.usage.spool.spool_writer`, one write per record before the
request goes out, as round 1 did), which is on that machine's disk. That is as safe as the driver's
acknowledgement (losing the machine loses the driver too) and a request no longer waits for a sync before it
is sent. The driver's ingestion publishes a dead worker's journal (its requests in flight as lost); a live worker
publishes its ended records every :data:`PUBLISH_S` and at the end of each task, and says with each sync whether
it still holds any, and which task it runs (so the driver can tell it to stop when that task is being killed).
There a lost connection is checked against the driver's process: once the driver is gone the worker sends
nothing more, since no one is left to take the answers or store them (the Python workers live in a process
group of their own and outlive a killed driver by tens of milliseconds: measured, 79-108 requests sent after a
job's process group was killed, all of them paid again by the next run).

When the driver cannot be reached (a worker that starts first, a partition, a stopped listener) the client
falls back, logging one warning: budgets become a static 1/parallelism share, records go to a local journal
(:class:`~aiquery.usage.spool.SpoolWriter` in a folder of this machine), and the ticker keeps reconnecting.
Once connected again it delivers the local journal's records to the driver and deletes them. Records that were
in a sync whose reply never came are journaled locally too; the driver drops the copies it already had.

The client schedules the syncs, decides what goes into them and when it falls back; its parts are the budgets
(:mod:`.shares`), the connection and what travels on it (:mod:`.link`), the local journal (:mod:`.local_journal`)
and the progress counts (:class:`~aiquery.coordinator.progress.ProgressReport`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from aiquery.config import Endpoint
from aiquery.coordinator.cap import cap_error
from aiquery.coordinator.journal_writes import not_recorded_error, unwritable_message
from aiquery.coordinator.link import Batch, Link, Reply, describe
from aiquery.coordinator.local_journal import LocalJournal, local_journal_dir
from aiquery.coordinator.progress import ProgressReport
from aiquery.coordinator.protocol import CoordinatorAddress, ProtocolError
from aiquery.coordinator.shares import EndpointShare, EndpointShares
from aiquery.engine.governor import Admission, CapClaim, EndpointLimits, SendingStopped, TaskInfo, add_sample
from aiquery.liveness import process_gone
from aiquery.store.base import StoredAnswer
from aiquery.usage.codec import RecordEncoder
from aiquery.usage.record import UsageRecord
from aiquery.usage.spool import SpoolWriter, spool_writer

__all__ = ["CoordinatorClient", "local_journal_dir"]

logger = logging.getLogger("aiquery.coordinator")

TICK_S = 0.25
RECONNECT_MIN_S = 0.25
RECONNECT_MAX_S = 2.0
FLUSH_TIMEOUT_S = 30.0
CUT_OFF_UNDER_CAP = (
    "not sent: a spending cap is in force, and this worker cannot reach the driver's coordinator to check "
    "it; run again once the driver is reachable (rows already answered come from the answer store)."
)
DELIVERY_INTERVAL_S = 2.0
"""While records wait in the local journal, how often the ticker tries to deliver them."""
PUBLISH_S = 2.0
"""How often a worker on the driver's machine publishes its ended records to ingestion while requests run."""


class CoordinatorClient:
    """A Governor that shares budgets, the learned pace, usage records and progress through the driver.

    Args:
        address: the coordinator's address and secret (from the query plan).
        journal: the driver's journal for this query's usage records (its ledger's spool directory), or None
            when the usage ledger is off.
        clock: monotonic seconds.
    """

    def __init__(
        self,
        address: CoordinatorAddress,
        journal: str | None,
        store: str | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.address = address
        self.journal = journal
        self.store = store
        self._waits: dict[str, asyncio.Future[StoredAnswer | None]] = {}
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._clock = clock
        self._endpoints = EndpointShares(self, clock)
        self._encoder = RecordEncoder()
        self._heads: dict[str, str] = {}
        """The encoded heads of begun records, until they end (an end record repeats its head)."""
        self._stopped_tasks: set[int] = set()
        """Tasks the driver said are being killed: nothing more is sent for them."""
        self._progress = ProgressReport()
        self._link = Link(address, self.worker_id, self._closing, self._connection_closed)
        self._batch: Batch | None = None
        self._sending: Batch | None = None
        self._flush_scheduled = False
        self.connected = False
        self._warned = False
        self._reported_loss = False
        self._next_attempt = 0.0
        self._backoff = RECONNECT_MIN_S
        self._connecting: asyncio.Task[bool] | None = None
        self._watching: asyncio.Task[None] | None = None
        self.driver_gone = False
        """The driver's process ended (workers on its machine only): no request is sent any more."""
        self._ticker: asyncio.Task[None] | None = None
        self._delivering: asyncio.Future[bool] | None = None
        self._local_journal = LocalJournal(address.application)
        self._direct: SpoolWriter | None = None
        """This process's journal in the driver's spool directory (workers on the driver's machine only)."""
        self._published = 0.0
        self._reported_direct = False
        self._unwritten: list[UsageRecord] = []
        """Ended records its journal on the driver's disk could not take yet (a full disk)."""
        self.fallbacks = 0
        """How many times this worker lost its coordinator (for tests and logs)."""
        self._samples: dict[str, dict[str, list[int]]] = {}
        """Estimate runs' row counts not reported yet (run -> endpoint -> [seen, sent])."""
        self._spend: dict[str, Any] = {}
        """What requests ended since the last sync spent, for the caps: ``{request_id: [currency, cost, tokens,
        output_tokens]}``, 0 for a request that ended without a usage report (see :meth:`CapBook.spent`)."""
        self._cap_owner = ""
        """The session whose cap counts the current task's requests (empty: none)."""
        self.capped = False
        """A spending cap is in force (the query plan says so, or the driver did): while cut off from
        the driver this worker sends nothing, since it cannot check the cap."""

    # ---- Governor -------------------------------------------------------------------------------------------
    def limits(self, endpoint: Endpoint, share: float) -> EndpointLimits:
        entry = self._endpoints.get(endpoint, share)
        entry.limits.concurrency.maximum = endpoint.max_concurrency
        return entry.limits

    def admit(
        self, endpoint: Endpoint, calls: int, tokens: float, lookups: Sequence[str] | None
    ) -> asyncio.Future[Admission | None] | None:
        self._start_ticker()
        entry = self._endpoints[endpoint]
        entry.reported_idle = False
        if not self.connected and self._clock() < self._next_attempt:
            return None  # cut off: the static share applies until the ticker reconnects
        return asyncio.ensure_future(self._admit(entry, calls, tokens, lookups))

    async def _admit(
        self, entry: EndpointShare, calls: int, tokens: float, lookups: Sequence[str] | None
    ) -> Admission | None:
        if not self.connected and not await self._connect():
            return None
        batch = self._next_batch()
        batch.wanted = True
        extra = batch.extra.setdefault(entry.key, [0.0, 0.0])
        extra[0] += calls
        extra[1] += tokens
        if lookups and self.store is not None:
            batch.lookups.extend(lookups)
        self._schedule_flush()
        reply = await asyncio.shield(batch.future)
        if not lookups or not reply.meta:
            return None
        mine = set(lookups)
        hits = {key: answer for key, answer in reply.hits.items() if key in mine}
        return Admission(hits, {key for key in reply.meta.get("wait", ()) if key in mine})

    def await_answer(self, fingerprint: str) -> asyncio.Future[StoredAnswer | None]:
        future = self._waits.get(fingerprint)
        if future is None:
            future = self._waits[fingerprint] = asyncio.get_running_loop().create_future()
            if not self.connected:
                future.set_result(None)
                del self._waits[fingerprint]
        return future

    def settled(self, fingerprint: str, answer: StoredAnswer | None) -> None:
        if self.store is None or not self.connected:
            return  # cut off from the driver: no store to tell (another worker may send the same request)
        batch = self._next_batch()
        if answer is not None:
            # Shipped with the next sync (a begin's, or the ticker's within a quarter second), not at the end of
            # the task: a worker lost now loses little. Not a sync of its own: a sync per answer doubled them.
            batch.answers.append(f"{fingerprint}\t{answer.encode()}\n")
        else:
            batch.releases.append(fingerprint)
        if self.address.same_machine:
            self._schedule_flush()  # no begin brings a sync soon: the answer would wait for the ticker

    def begin(self, record: UsageRecord, claim: CapClaim | None = None) -> asyncio.Future[Any] | None:
        if self.driver_gone or record.task_attempt_id in self._stopped_tasks:
            stopped: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            stopped.set_exception(SendingStopped())
            return stopped
        if self.journal is None:
            return None
        if self.address.same_machine and not self.capped:
            try:
                self._direct_journal().begin(record)  # on the driver's disk before it leaves: no round trip
            except OSError as error:  # not recorded: not sent
                halted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                halted.set_exception(not_recorded_error(unwritable_message(self._direct_journal().journal_dir, error)))
                return halted
            return None
        if not self.connected:
            if self.capped:
                refused: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                refused.set_exception(cap_error(CUT_OFF_UNDER_CAP))
                return refused
            self._local_journal.begin(record)
            return None
        batch = self._next_batch()
        head = self._heads[record.request_id] = self._encoder.head(record)
        batch.begin_ids.append(record.request_id)
        batch.begin_heads.append(head)
        batch.tasks.append(record.task_attempt_id)
        batch.currencies.append(record.currency)
        batch.owners.append(self._cap_owner)
        batch.claims.append(claim.wire() if claim is not None and self.capped else None)
        self._schedule_flush()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        batch.begin_waiters.append(waiter)
        return waiter

    def end(self, record: UsageRecord) -> None:
        self._progress.count_request(record)
        if self.journal is None:
            return
        if self.capped and not record.cache_hit:
            self._spend[record.request_id] = _spend_entry(record)
        request_id = record.request_id
        head = self._heads.pop(request_id, None)
        direct = self._direct
        if direct is not None and direct.began(request_id):
            if self.store is not None and self.connected:
                # Ended once the sync that takes its answer to the store is acknowledged: a worker killed before
                # that leaves it begun (closed as lost, its retry sends it again), never answered and not stored.
                self._next_batch().direct_ends.append(record)
            else:
                self._end_direct([record])
            return
        if self._local_journal.began(request_id) or not self.connected:
            self._local_journal.end(record)
            return
        if head is None and self.address.same_machine and not self.capped:
            self._end_direct([record])  # a record with no begin (an answer from the store)
            return
        batch = self._next_batch()
        batch.end_ids.append(request_id)
        batch.end_lines.append((head or self._encoder.head(record)) + self._encoder.tail(record))

    def withdraw(self, record: UsageRecord) -> None:
        if self.journal is None:
            return
        request_id = record.request_id
        self._heads.pop(request_id, None)
        direct = self._direct
        if direct is not None and direct.began(request_id):
            direct.withdraw([request_id])
        elif self._local_journal.began(request_id):
            self._local_journal.withdraw(request_id)
        elif self.connected:
            self._next_batch().withdrawn.append(request_id)
        # Otherwise its begin is on the driver, which cannot be told now: closed as lost only if its task fails.

    def rows_done(self, answered: int, failed: int) -> None:
        self._progress.rows_done(answered, failed)

    def sampled(self, run: str, endpoint: str, seen: int, sent: int) -> None:
        add_sample(self._samples, run, endpoint, seen, sent)

    def start_task(self, task: TaskInfo | None, capped: bool = False, cap_owner: str = "") -> None:
        self._progress.task = task
        self.capped = self.capped or capped
        self._cap_owner = cap_owner
        if task is None or task.task_attempt_id not in self._stopped_tasks:
            self._stopped_tasks.clear()  # a killed task's worker is gone before it runs another

    async def flush(self) -> None:
        """Deliver every record ended so far (to the driver, or to the local journal when cut off).

        Records the local journal holds from a time cut off are delivered too, when connected: a worker whose
        task is over may be gone (its executor lost, its process ended) before the ticker's next delivery, and
        its local journal with it (measured: 6 requests of a listener-stop phase missing from the ledger after
        the next query's executor was killed).
        """
        if self.connected:
            batch = self._next_batch()
            batch.wanted = True
            self._schedule_flush()
            # On a timeout the reply timeout has moved the records to the local journal.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(batch.future), FLUSH_TIMEOUT_S)
        self._end_unwritten()
        self._publish()
        self._local_journal.flush()
        if self.connected and self._local_journal.holding:
            await self._deliver_local()

    async def aclose(self) -> None:
        await self.flush()
        if self._ticker is not None:
            self._ticker.cancel()
        if self._link.transport is not None:
            self._warned = True  # closing on purpose: nothing to warn about
            self.connected = False
            await self._link.close()
        self._local_journal.close()

    # ---- syncs ----------------------------------------------------------------------------------------------
    def _direct_journal(self) -> SpoolWriter:
        direct = self._direct
        if direct is None:
            assert self.journal is not None  # begin and end return early without a journal
            direct = self._direct = spool_writer(self.journal)
        return direct

    def _end_direct(self, records: list[UsageRecord]) -> None:
        """End records in this worker's journal on the driver's disk; those it cannot write (a full disk) stay in
        flight there and are written again at the next tick."""
        try:
            self._direct_journal().end_many(records)
        except OSError as error:
            if not self._unwritten:
                logger.warning("aiquery: usage records wait in memory until their journal can be written: %s", error)
            self._unwritten.extend(records)

    def _end_unwritten(self) -> None:
        if self._unwritten:
            with contextlib.suppress(OSError):
                self._direct_journal().end_many(self._unwritten)
                self._unwritten = []

    def _publish(self) -> None:
        """Publish the ended records of this worker's journal in the driver's spool directory to ingestion."""
        direct = self._direct
        if direct is not None and direct.unpublished:
            direct.flush()
            self._published = self._clock()

    def _next_batch(self) -> Batch:
        batch = self._batch
        if batch is None:
            batch = self._batch = Batch(asyncio.get_running_loop())
        return batch

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled and self._sending is None:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        batch = self._batch
        if self._sending is not None or batch is None or not batch or not self.connected:
            return
        self._batch = None
        self._sending = batch
        meta, payload = batch.encode(self.journal, self.store, self._waits)
        demand, seen = self._endpoints.report(batch.extra)
        if self._local_journal.holding:
            meta["local"] = 1  # records wait in the local journal: the driver's flush waits for their delivery
        direct = self._direct
        if direct is not None:
            self._reported_direct = direct.holding
            if self._reported_direct:
                meta["dj"] = 1  # requests or records in this worker's journal on the driver's disk
            task = self._progress.task
            if task is not None and task.task_attempt_id is not None:
                meta["rt"] = task.task_attempt_id  # its begins skip the driver, which stops it through this
        if demand:
            meta["demand"] = demand
        if seen:
            meta["seen"] = seen
        meta.update(self._progress.take())
        spend, self._spend = self._spend, {}
        if spend:
            meta["sp"] = spend
        if self._samples:
            meta["est"], self._samples = self._samples, {}
        self._link.send(meta, payload, lambda done: self._synced(batch, done, spend))

    def _synced(self, batch: Batch, done: asyncio.Future[Reply], spend: dict[str, Any]) -> None:
        if self._sending is batch:
            self._sending = None
        if done.cancelled() or done.exception() is not None or "error" in done.result().meta:
            # Reported again with the next sync (the driver counts a request once, should it have seen it).
            self._spend = {**spend, **self._spend}
        if done.cancelled() or done.exception() is not None:
            if not batch.future.done():
                error = done.exception() if not done.cancelled() else None
                self._lose_connection(describe(error) if error else "sync cancelled", batch)
            return
        reply = done.result()
        if "error" in reply.meta:
            # The driver refused the records (it has no such journal, or cannot write it): keep them here rather
            # than lose them; delivered again later.
            logger.warning("aiquery coordinator refused a sync: %s", reply.meta["error"])
            self._journal_locally(batch, reply if "halt" in reply.meta else None)
            return
        self._endpoints.apply(reply.meta.get("lease") or {})
        if batch.direct_ends:
            self._end_direct(batch.direct_ends)
        self._answer_waits(reply)
        self.capped = "cap" in reply.meta  # the driver knows best whether a cap is in force now
        refused = reply.refused()
        if refused:
            for index in refused:  # never journaled: their requests are not sent
                self._heads.pop(batch.begin_ids[index], None)
        if "halt" in reply.meta:  # none journaled: none is sent
            for request_id in batch.begin_ids:
                self._heads.pop(request_id, None)
        stop = reply.meta.get("stop")
        if stop:
            self._stop(batch, stop)
        batch.settle(reply)
        if self._batch:
            self._schedule_flush()

    def _stop(self, batch: Batch, tasks: list[int]) -> None:
        """The driver refused the begins of tasks being killed: those requests are not sent, nor any later one."""
        stopped = set(tasks)
        self._stopped_tasks.update(stopped)
        for request_id, task, waiter in zip(batch.begin_ids, batch.tasks, batch.begin_waiters, strict=True):
            if task in stopped:
                self._heads.pop(request_id, None)
                if not waiter.done():
                    waiter.set_exception(SendingStopped())

    def _answer_waits(self, reply: Reply) -> None:
        # A call waiting for another worker's request gets its answer, or is told to send it itself (that worker
        # failed, or is gone).
        owned = set(reply.meta.get("own", ()))
        for key in list(self._waits):
            answer = reply.hits.get(key)
            if answer is not None or key in owned:
                future = self._waits.pop(key)
                if not future.done():
                    future.set_result(answer)

    # ---- connection -----------------------------------------------------------------------------------------
    async def _connect(self) -> bool:
        if self.connected:
            return True
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.ensure_future(self._open())
        return await asyncio.shield(self._connecting)

    async def _open(self) -> bool:
        address = self.address
        try:
            await self._link.open()
        except (OSError, asyncio.TimeoutError, ConnectionError, ProtocolError) as error:
            self._lose_connection(f"cannot connect: {describe(error)}", None)
            return False
        self.connected = True
        self._backoff = RECONNECT_MIN_S
        if self._reported_loss:
            logger.info("aiquery: reconnected to the coordinator at %s:%d", address.host, address.port)
        self._reported_loss = False
        self._warned = False
        return True

    def _closing(self) -> None:
        self._warned = True  # the application is ending: losing the connection now is no news

    def _connection_closed(self, reason: str) -> None:
        if self.connected:
            self._lose_connection(reason, None)

    def _lose_connection(self, reason: str, batch: Batch | None) -> None:
        """Fall back: static shares, local journal for what was unacknowledged and what comes next."""
        was_connected = self.connected
        self.connected = False
        self._link.abort()
        self._next_attempt = self._clock() + self._backoff
        self._backoff = min(RECONNECT_MAX_S, self._backoff * 2)
        self._endpoints.static()
        for pending in (batch, self._sending, self._batch):
            if pending is not None and not pending.future.done():
                self._journal_locally(pending)
        waits, self._waits = self._waits, {}
        for future in waits.values():
            if not future.done():
                future.set_result(None)  # no store to wait on: send it
        self._sending = None
        self._batch = None
        if self.address.driver_pid and (self._watching is None or self._watching.done()):
            self._watching = asyncio.get_running_loop().create_task(self._watch_driver())
        if not self._warned:
            self._warned = True
            self.fallbacks += 1
            self._reported_loss = True
            logger.warning(
                "aiquery: %s the coordinator at %s:%d (%s); this worker uses a static 1/%d share of any budget and "
                "journals usage in %s until it can deliver it",
                "lost" if was_connected else "cannot reach",
                self.address.host,
                self.address.port,
                reason,
                max(1, self.address.parallelism),
                local_journal_dir(self.address.application),
            )

    async def _watch_driver(self) -> None:
        """While cut off on the driver's machine, check whether the driver's process is gone: at once, then ever
        less often (its sockets close a moment before the kernel reports it exiting)."""
        delay = 0.002
        while not self.connected:
            if process_gone(self.address.driver_pid):
                self.driver_gone = True
                logger.warning(
                    "aiquery: the driver (process %d) is gone; this worker sends no more requests",
                    self.address.driver_pid,
                )
                return
            await asyncio.sleep(delay)
            delay = min(TICK_S, delay * 2)

    def _journal_locally(self, batch: Batch, halted: Reply | None = None) -> None:
        """Put a batch the driver did not acknowledge into the local journal, then release its waiters (with the
        driver's ``halted`` reply: its journal cannot be written, and the batch's requests are not sent)."""
        if batch.direct_ends:
            self._end_direct(batch.direct_ends)  # the driver's disk: no delivery needed
        if self.journal is not None:
            self._local_journal.keep(batch)
        if halted is not None and batch.begin_ids:
            for request_id in batch.begin_ids:
                self._heads.pop(request_id, None)
                if self.journal is not None:
                    self._local_journal.withdraw(request_id)
            batch.settle(halted)
            return
        if self.capped and batch.begin_ids:
            # Under a cap nothing is sent unchecked. The driver may have journaled these begins before the reply
            # was lost: their withdrawal, delivered with the local journal, closes them without a record.
            for request_id in batch.begin_ids:
                self._heads.pop(request_id, None)
                if self.journal is not None:
                    self._local_journal.withdraw(request_id)
            refused = list(range(len(batch.begin_ids)))
            batch.settle(Reply({"refused": {"i": refused, "m": [0] * len(refused), "t": [CUT_OFF_UNDER_CAP]}}))
            return
        batch.settle(Reply({}))

    # ---- the ticker: leases, late ends, reconnection, delivery ----------------------------------------------
    def _start_ticker(self) -> None:
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        last_delivery = 0.0
        while True:
            await asyncio.sleep(TICK_S)
            try:
                self._end_unwritten()
                direct = self._direct
                if (
                    direct is not None
                    and direct.unpublished
                    and (not direct.in_flight or self._clock() - self._published >= PUBLISH_S)
                ):
                    self._publish()
                if not self.connected:
                    if self._clock() >= self._next_attempt and await self._connect():
                        last_delivery = self._clock()
                        await self._deliver_local()
                    continue
                busy = self._endpoints.busy or (direct is not None and direct.holding != self._reported_direct)
                batch = self._batch
                if busy or self._progress or self._waits or self._samples or (batch is not None and batch):
                    self._next_batch().wanted = True
                    self._schedule_flush()
                if self._local_journal.holding and self._clock() - last_delivery >= DELIVERY_INTERVAL_S:
                    last_delivery = self._clock()
                    await self._deliver_local()
            except Exception:  # the ticker must survive anything; it is how the worker finds its driver again
                logger.debug("coordinator ticker round failed", exc_info=True)

    async def _deliver_local(self) -> None:
        """Send what the local journal holds to the driver, file by file, deleting each once acknowledged."""
        if not self.connected or self.journal is None:
            return
        if self._delivering is not None and not self._delivering.done():
            await asyncio.shield(self._delivering)  # one delivery at a time: a file is sent once
            return
        self._delivering = asyncio.ensure_future(self._local_journal.deliver(self.journal, self._link.send))
        if await asyncio.shield(self._delivering):
            self._next_batch().wanted = True  # tell the driver nothing waits here any more
            self._schedule_flush()


def _spend_entry(record: UsageRecord) -> list[Any] | int:
    """What an ended request spent, for the caps; 0 when it ended without a usage report (no response, or a 2xx
    whose body could not be read): it may have been billed all the same, so the driver counts it pessimistically.
    An error status bills nothing and is reported as such."""
    status = record.status_code
    if status is None or (200 <= status < 300 and record.total_tokens is None):
        return 0
    return [record.currency or "", record.cost or 0.0, record.total_tokens or 0, record.output_tokens or 0]
