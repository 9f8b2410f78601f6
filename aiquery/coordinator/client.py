"""The worker's side of the coordinator: a :class:`~aiquery.engine.governor.Governor` that asks the driver.

Everything travels in *syncs* (see :mod:`.protocol` and :mod:`.syncs`), one in flight at a time; whatever piles
up meanwhile joins the next one:

- :meth:`CoordinatorClient.admit` (once per chunk of rows) sends the chunk's demand and waits for the lease;
- :meth:`CoordinatorClient.begin` hands the request's record to the journal strategy (:mod:`.journaling`),
  which says when the request may be sent;
- :meth:`CoordinatorClient.end` hands it the complete record; ends join the next sync, which a ticker sends at
  least every quarter second while there is anything to report (it also renews the leases);
- answers and 429s per endpoint feed the application's learned pace, and row and request counts feed progress.

When the driver cannot be reached (a worker that starts first, a partition, a stopped listener) the client
falls back, logging one warning: budgets become a static 1/parallelism share, records go to a local journal
(:mod:`.local_journal`), and the ticker keeps reconnecting; once connected again it delivers the local journal's
records to the driver. A worker on the driver's machine that is cut off checks whether the driver's process is
gone (:mod:`.driver_watch`), and then sends nothing more.

The client is a composition of one part per job: the syncs and the connection (:class:`~.syncs.SyncChannel`),
the journal strategy, the budgets (:mod:`.shares`), the calls waiting for another worker's answer
(:class:`~.answer_waits.AnswerWaits`), the spending caps as the worker sees them (:mod:`.worker_cap`), the
driver's liveness, and the progress counts (:class:`~aiquery.coordinator.progress.ProgressReport`). It decides
what goes into a sync and what its reply means.
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
from aiquery.coordinator.answer_waits import AnswerWaits
from aiquery.coordinator.collect_queue import CollectQueue
from aiquery.coordinator.driver_watch import DriverWatch
from aiquery.coordinator.journaling import failed_future, journaling_for
from aiquery.coordinator.link import Batch, Reply
from aiquery.coordinator.progress import ProgressReport
from aiquery.coordinator.protocol import CoordinatorAddress
from aiquery.coordinator.shares import EndpointShare, EndpointShares
from aiquery.coordinator.syncs import SyncChannel
from aiquery.coordinator.worker_cap import WorkerCap
from aiquery.engine.governor import (
    Admission,
    CapClaim,
    CollectCounts,
    EndpointLimits,
    SendingStopped,
    TaskInfo,
    add_sample,
)
from aiquery.errors import BatchCollectionLost
from aiquery.store.base import StoredAnswer
from aiquery.usage.record import UsageRecord

__all__ = ["CoordinatorClient"]

logger = logging.getLogger("aiquery.coordinator")

TICK_S = 0.25
FLUSH_TIMEOUT_S = 30.0
DELIVERY_INTERVAL_S = 2.0
"""While records wait in the local journal, how often the ticker tries to deliver them."""


class CoordinatorClient:
    """A Governor that shares budgets, the learned pace, usage records and progress through the driver.

    Args:
        address: the coordinator's address and secret (from the query plan).
        journal: the driver's journal for this query's usage records (its ledger's spool directory), or None
            when the usage ledger is off.
        store: the answer store's key on the driver, or None when the store is off.
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
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._clock = clock
        self.syncs = SyncChannel(
            address, self.worker_id, clock, compose=self._compose, replied=self._replied, cut_off=self._cut_off
        )
        self.cap = WorkerCap()
        self.journaling = journaling_for(address, journal, store, self.syncs, self.cap, clock)
        self.waits = AnswerWaits()
        self.driver = DriverWatch(address.driver_pid, lambda: self.syncs.connected)
        self._endpoints = EndpointShares(self.syncs, clock)
        self._progress = ProgressReport()
        self._stopped_tasks: set[int] = set()
        """Tasks the driver said are being killed: nothing more is sent for them."""
        self._samples: dict[str, dict[str, list[int]]] = {}
        """Estimate runs' row counts not reported yet (run -> endpoint -> [seen, sent])."""
        self.collecting = CollectQueue()
        """Batch mode's collected requests waiting for a sync to carry them to the driver."""
        self._ticker: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self.syncs.connected

    @property
    def fallbacks(self) -> int:
        """How many times this worker lost its coordinator (for tests and logs)."""
        return self.syncs.fallbacks

    @property
    def driver_gone(self) -> bool:
        """The driver's process ended (workers on its machine only): no request is sent any more."""
        return self.driver.gone

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
        if not self.syncs.connected and not self.syncs.may_reconnect():
            return None  # cut off: the static share applies until the ticker reconnects
        return asyncio.ensure_future(self._admit(entry, calls, tokens, lookups))

    async def _admit(
        self, entry: EndpointShare, calls: int, tokens: float, lookups: Sequence[str] | None
    ) -> Admission | None:
        if not self.syncs.connected and not await self.syncs.connect():
            return None
        batch = self.syncs.next_batch()
        batch.wanted = True
        extra = batch.extra.setdefault(entry.key, [0.0, 0.0])
        extra[0] += calls
        extra[1] += tokens
        if lookups and self.store is not None:
            batch.lookups.extend(lookups)
        self.syncs.schedule()
        reply = await asyncio.shield(batch.future)
        if not lookups or not reply.meta:
            return None
        mine = set(lookups)
        hits = {key: answer for key, answer in reply.hits.items() if key in mine}
        failed = {key: message for key, message in reply.failed.items() if key in mine} if reply.failed else {}
        return Admission(hits, {key for key in reply.meta.get("wait", ()) if key in mine}, failed)

    def await_answer(self, fingerprint: str) -> asyncio.Future[StoredAnswer | None]:
        return self.waits.wait(fingerprint, self.syncs.connected)

    def settled(self, fingerprint: str, answer: StoredAnswer | None) -> None:
        if self.store is None or not self.syncs.connected:
            return  # cut off from the driver: no store to tell (another worker may send the same request)
        batch = self.syncs.next_batch()
        if answer is not None:
            # Shipped with the next sync (a begin's, or the ticker's within a quarter second), not at the end of
            # the task: a worker lost now loses little. Not a sync of its own: a sync per answer doubles them.
            batch.answers.append(f"{fingerprint}\t{answer.encode()}\n")
        else:
            batch.releases.append(fingerprint)
        if self.address.same_machine:
            self.syncs.schedule()  # no begin brings a sync soon: the answer would wait for the ticker

    def begin(self, record: UsageRecord, claim: CapClaim | None = None) -> asyncio.Future[Any] | None:
        if self.driver.gone or record.task_attempt_id in self._stopped_tasks:
            return failed_future(SendingStopped())
        return self.journaling.begin(record, claim)

    def end(self, record: UsageRecord) -> None:
        self._progress.count_request(record)
        self.journaling.end(record)

    def withdraw(self, record: UsageRecord) -> None:
        self.journaling.withdraw(record)

    def rows_done(self, answered: int, failed: int) -> None:
        self._progress.rows_done(answered, failed)

    def sampled(self, run: str, endpoint: str, seen: int, sent: int) -> None:
        add_sample(self._samples, run, endpoint, seen, sent)

    def collect(
        self, run: str, endpoint: str, counts: CollectCounts, requests: list[tuple[str, str]]
    ) -> asyncio.Future[None]:
        self._start_ticker()
        return asyncio.ensure_future(self._collect(run, endpoint, counts, requests))

    async def _collect(self, run: str, endpoint: str, counts: CollectCounts, requests: list[tuple[str, str]]) -> None:
        if not self.syncs.connected and not (self.syncs.may_reconnect() and await self.syncs.connect()):
            raise BatchCollectionLost(
                f"batch collect run {run!r}: the driver's coordinator cannot be reached to hand it the requests "
                f"collected for endpoint '{endpoint}'; the task fails rather than lose them"
            )
        futures = self.collecting.add(run, endpoint, counts, requests)
        self.syncs.want_sync()
        await asyncio.gather(*futures)

    def start_task(self, task: TaskInfo | None, capped: bool = False, cap_owner: str = "") -> None:
        self._progress.task = task
        self.cap.start_task(capped, cap_owner)
        if task is None or task.task_attempt_id not in self._stopped_tasks:
            self._stopped_tasks.clear()  # a killed task's worker is gone before it runs another

    async def flush(self) -> None:
        """Deliver every record ended so far (to the driver, or to the local journal when cut off), and what the
        local journal holds from a time cut off when connected now."""
        if self.syncs.connected:
            batch = self.syncs.want_sync()
            # On a timeout the reply timeout has moved the records to the local journal.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(batch.future), FLUSH_TIMEOUT_S)
        await self.journaling.flush()

    async def aclose(self) -> None:
        await self.flush()
        if self._ticker is not None:
            self._ticker.cancel()
        await self.syncs.close()
        self.journaling.close()

    # ---- what a sync says, and what its reply means ---------------------------------------------------------
    def _compose(self, batch: Batch) -> tuple[dict[str, Any], bytes]:
        meta, payload = batch.encode(self.journal, self.store, self.waits.fingerprints)
        demand, seen = self._endpoints.report(batch.extra)
        self.journaling.describe(meta, self._progress.task)
        if demand:
            meta["demand"] = demand
        if seen:
            meta["seen"] = seen
        meta.update(self._progress.take())
        batch.spend = self.cap.take()
        if batch.spend:
            meta["sp"] = batch.spend
        if self._samples:
            meta["est"], self._samples = self._samples, {}
        if self.collecting:
            batch.collected = self.collecting.take()
            payload += self.collecting.encode(batch.collected, meta)
        return meta, payload

    def _replied(self, batch: Batch, reply: Reply | None) -> None:
        if reply is None or "error" in reply.meta:
            self.cap.restore(batch.spend)
            if batch.collected or self.collecting:
                why = "the connection was lost" if reply is None else f"it refused a sync: {reply.meta['error']}"
                self.collecting.lost(batch.collected, why)
        if reply is None:
            return  # the channel gives the connection up
        if "error" in reply.meta:
            # The driver refused the records (it has no such journal, or cannot write it): keep them here rather
            # than lose them; delivered again later.
            logger.warning("aiquery coordinator refused a sync: %s", reply.meta["error"])
            self.journaling.unacknowledged(batch, reply if "halt" in reply.meta else None)
            return
        self._endpoints.apply(reply.meta.get("lease") or {})
        self.journaling.acknowledged(batch, reply)
        if batch.collected:
            self.collecting.delivered(batch.collected)
        if self.collecting:
            self.syncs.want_sync()  # the rest of what was collected, at once
        self.waits.resolve(reply.hits, reply.meta.get("own", ()), reply.failed)
        self.cap.capped = "cap" in reply.meta  # the driver knows best whether a cap is in force now
        stop = reply.meta.get("stop")
        if stop:
            self._stop(batch, stop)
        batch.settle(reply)

    def _stop(self, batch: Batch, tasks: list[int]) -> None:
        """The driver refused the begins of tasks being killed: those requests are not sent, nor any later one."""
        stopped = set(tasks)
        self._stopped_tasks.update(stopped)
        for request_id, task, waiter in zip(batch.begin_ids, batch.tasks, batch.begin_waiters, strict=True):
            if task in stopped:
                self.journaling.forget((request_id,))
                if not waiter.done():
                    waiter.set_exception(SendingStopped())

    def _cut_off(self, unacknowledged: list[Batch]) -> None:
        """Fall back: static shares, the local journal for what was unacknowledged, no answers to wait for."""
        self._endpoints.static()
        for batch in unacknowledged:
            if not batch.future.done():
                self.journaling.unacknowledged(batch)
        self.waits.release_all()
        self.collecting.lost([], "cut off from the driver's coordinator")
        self.driver.start()

    # ---- the ticker: leases, late ends, reconnection, delivery ----------------------------------------------
    def _start_ticker(self) -> None:
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        last_delivery = 0.0
        while True:
            await asyncio.sleep(TICK_S)
            try:
                last_delivery = await self._tick_once(last_delivery)
            except Exception:  # the ticker must survive anything; it is how the worker finds its driver again
                logger.debug("coordinator ticker round failed", exc_info=True)

    async def _tick_once(self, last_delivery: float) -> float:
        """One round of the ticker; when the local journal was last delivered."""
        self.journaling.tick()
        syncs = self.syncs
        if not syncs.connected:
            if syncs.may_reconnect() and await syncs.connect():
                last_delivery = self._clock()
                await self.journaling.deliver()
            return last_delivery
        if (
            self._endpoints.busy
            or self.journaling.changed
            or self._progress
            or self.waits
            or self._samples
            or self.collecting
            or syncs.batch
        ):
            syncs.want_sync()
        if self.journaling.holding_local and self._clock() - last_delivery >= DELIVERY_INTERVAL_S:
            last_delivery = self._clock()
            await self.journaling.deliver()
        return last_delivery
