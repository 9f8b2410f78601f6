"""Where a worker's usage records go: one strategy, chosen when its client is made (:func:`journaling_for`).

- :class:`NoJournal`: the usage ledger is off; nothing is recorded.
- :class:`AcknowledgedJournal`: the driver journals every record. A begin joins the next sync and its request is
  sent once the driver has journaled it; begins that arrive together go together (a group commit), so the
  driver sees a few syncs per worker per round trip, never one per row. An end joins the next sync. While the
  driver is out of reach, records go to the local journal (:class:`~.local_journal.LocalJournal`), and so do
  those of a sync whose reply never came; they are delivered once it can be reached again (the driver drops the
  copies it already had).
- :class:`SameMachineJournal`: the workers run on the driver's machine (a local master: the address says
  ``same_machine``). While no spending cap is in force, begin and end records skip the round trip: the worker
  journals them straight into the driver's usage spool directory (:func:`~aiquery.usage.spool.spool_writer`, one
  write per record before the request goes out), which is on that machine's disk. That is as safe as the
  driver's acknowledgement (losing the machine loses the driver too), and a request does not wait for a sync
  before it is sent. The driver's ingestion publishes a dead worker's journal (its requests in flight as lost); a
  live worker publishes its ended records every :data:`PUBLISH_S` and at the end of each task, and says with
  each sync whether it still holds any, and which task it runs (so the driver can tell it to stop when that task
  is being killed). Under a cap a begin needs the driver's check, so it journals as :class:`AcknowledgedJournal`
  does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any, TypeAlias

from aiquery.coordinator.cap import cap_error
from aiquery.coordinator.journal_writes import not_recorded_error, unwritable_message
from aiquery.coordinator.link import Batch, Reply
from aiquery.coordinator.local_journal import LocalJournal
from aiquery.coordinator.protocol import CoordinatorAddress
from aiquery.coordinator.syncs import SyncChannel
from aiquery.coordinator.worker_cap import WorkerCap
from aiquery.engine.governor import CapClaim, TaskInfo
from aiquery.usage.codec import RecordEncoder
from aiquery.usage.record import UsageRecord
from aiquery.usage.spool import SpoolWriter, spool_writer

__all__ = [
    "CUT_OFF_UNDER_CAP",
    "AcknowledgedJournal",
    "Journaling",
    "NoJournal",
    "SameMachineJournal",
    "failed_future",
    "journaling_for",
]

logger = logging.getLogger("aiquery.coordinator")

PUBLISH_S = 2.0
"""How often a worker on the driver's machine publishes its ended records to ingestion while requests run."""
CUT_OFF_UNDER_CAP = (
    "not sent: a spending cap is in force, and this worker cannot reach the driver's coordinator to check "
    "it; run again once the driver is reachable (rows already answered come from the answer store)."
)


Journaling: TypeAlias = "NoJournal | AcknowledgedJournal"
"""A worker's journal strategy (:class:`SameMachineJournal` is an :class:`AcknowledgedJournal`)."""


def failed_future(error: BaseException) -> asyncio.Future[Any]:
    """An awaitable for :meth:`~aiquery.engine.governor.Governor.begin` that raises ``error``."""
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    future.set_exception(error)
    return future


def journaling_for(
    address: CoordinatorAddress,
    journal: str | None,
    store: str | None,
    syncs: SyncChannel,
    cap: WorkerCap,
    clock: Callable[[], float],
) -> Journaling:
    """The strategy for a worker: none without a ``journal``, else by where the worker runs."""
    if journal is None:
        return NoJournal()
    if address.same_machine:
        return SameMachineJournal(journal, address.application, syncs, cap, clock, answers_stored=store is not None)
    return AcknowledgedJournal(journal, address.application, syncs, cap)


class NoJournal:
    """The usage ledger is off: requests go without records."""

    holding_local = False
    changed = False

    def begin(self, record: UsageRecord, claim: CapClaim | None) -> None:
        return None

    def end(self, record: UsageRecord) -> None:
        pass

    def withdraw(self, record: UsageRecord) -> None:
        pass

    def forget(self, request_ids: Iterable[str]) -> None:
        pass

    def describe(self, meta: dict[str, Any], task: TaskInfo | None) -> None:
        pass

    def acknowledged(self, batch: Batch, reply: Reply) -> None:
        pass

    def unacknowledged(self, batch: Batch, halted: Reply | None = None) -> None:
        batch.settle(Reply({}))  # it carries no record: nothing to keep, nothing refused

    def tick(self) -> None:
        pass

    async def flush(self) -> None:
        pass

    async def deliver(self) -> None:
        pass

    def close(self) -> None:
        pass


class AcknowledgedJournal:
    """Records journaled by the driver, or kept in the local journal while it is out of reach. Used on the engine's
    event loop."""

    def __init__(self, journal: str, application: str, syncs: SyncChannel, cap: WorkerCap) -> None:
        self.journal = journal
        self._syncs = syncs
        self._cap = cap
        self.local = LocalJournal(application)
        self._encoder = RecordEncoder()
        self._heads: dict[str, str] = {}
        """The encoded heads of begun records, until they end (an end record repeats its head)."""
        self._delivering: asyncio.Future[bool] | None = None

    @property
    def holding_local(self) -> bool:
        """Records wait in the local journal for their delivery."""
        return self.local.holding

    @property
    def changed(self) -> bool:
        """What the last sync said about this worker's journal on the driver's disk is no longer true."""
        return False

    def begin(self, record: UsageRecord, claim: CapClaim | None) -> asyncio.Future[Any] | None:
        """Journal a request's begin; see :meth:`~aiquery.engine.governor.Governor.begin`."""
        syncs = self._syncs
        if not syncs.connected:
            if self._cap.capped:
                return failed_future(cap_error(CUT_OFF_UNDER_CAP))
            self.local.begin(record)
            return None
        batch = syncs.next_batch()
        head = self._heads[record.request_id] = self._encoder.head(record)
        batch.begin_ids.append(record.request_id)
        batch.begin_heads.append(head)
        batch.tasks.append(record.task_attempt_id)
        batch.currencies.append(record.currency)
        batch.owners.append(self._cap.owner)
        batch.claims.append(claim.wire() if claim is not None and self._cap.capped else None)
        syncs.schedule()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        batch.begin_waiters.append(waiter)
        return waiter

    def end(self, record: UsageRecord) -> None:
        self._cap.ended(record)
        head = self._heads.pop(record.request_id, None)
        if not self._ended_on_this_machine(record, head):
            self._end_acknowledged(record, head)

    def _ended_on_this_machine(self, record: UsageRecord, head: str | None) -> bool:
        """Whether the record was ended without the driver (see :class:`SameMachineJournal`)."""
        return False

    def _end_acknowledged(self, record: UsageRecord, head: str | None) -> None:
        if self.local.began(record.request_id) or not self._syncs.connected:
            self.local.end(record)
            return
        batch = self._syncs.next_batch()
        batch.end_ids.append(record.request_id)
        batch.end_lines.append((head or self._encoder.head(record)) + self._encoder.tail(record))

    def withdraw(self, record: UsageRecord) -> None:
        request_id = record.request_id
        self._heads.pop(request_id, None)
        if self.local.began(request_id):
            self.local.withdraw(request_id)
        elif self._syncs.connected:
            self._syncs.next_batch().withdrawn.append(request_id)
        # Otherwise its begin is on the driver, which cannot be told now: closed as lost only if its task fails.

    def forget(self, request_ids: Iterable[str]) -> None:
        """Begins the driver refused, or of a task being killed: their requests are not sent."""
        for request_id in request_ids:
            self._heads.pop(request_id, None)

    def describe(self, meta: dict[str, Any], task: TaskInfo | None) -> None:
        """Add what the driver must know about this worker's journals to a sync's metadata."""
        if self.local.holding:
            meta["local"] = 1  # records wait in the local journal: the driver's flush waits for their delivery

    def acknowledged(self, batch: Batch, reply: Reply) -> None:
        refused = reply.refused()
        if refused:
            self.forget(batch.begin_ids[index] for index in refused)  # never journaled: their requests are not sent
        if "halt" in reply.meta:  # none journaled: none is sent
            self.forget(batch.begin_ids)

    def unacknowledged(self, batch: Batch, halted: Reply | None = None) -> None:
        """Keep a batch the driver did not acknowledge, then release its waiters (with the driver's ``halted``
        reply: its journal cannot be written, and the batch's requests are not sent)."""
        self.local.keep(batch)
        if halted is not None and batch.begin_ids:
            self._withdraw_locally(batch.begin_ids)
            batch.settle(halted)
            return
        if self._cap.capped and batch.begin_ids:
            # Under a cap nothing is sent unchecked. The driver may have journaled these begins before the reply
            # was lost: their withdrawal, delivered with the local journal, closes them without a record.
            self._withdraw_locally(batch.begin_ids)
            refused = list(range(len(batch.begin_ids)))
            batch.settle(Reply({"refused": {"i": refused, "m": [0] * len(refused), "t": [CUT_OFF_UNDER_CAP]}}))
            return
        batch.settle(Reply({}))

    def _withdraw_locally(self, request_ids: list[str]) -> None:
        for request_id in request_ids:
            self._heads.pop(request_id, None)
            self.local.withdraw(request_id)

    def tick(self) -> None:
        """The ticker's round: nothing to do here (a journal on the driver's disk writes what waits and publishes
        what is due)."""

    async def flush(self) -> None:
        """Make every ended record durable where the ledger finds it."""
        # A worker whose task is over may be gone (its executor lost, its process ended) before the ticker's
        # next delivery, and its local journal with it: deliver now.
        self.local.flush()
        if self._syncs.connected and self.local.holding:
            await self.deliver()

    async def deliver(self) -> None:
        """Send what the local journal holds to the driver, file by file, deleting each once acknowledged."""
        syncs = self._syncs
        if not syncs.connected:
            return
        if self._delivering is not None and not self._delivering.done():
            await asyncio.shield(self._delivering)  # one delivery at a time: a file is sent once
            return
        self._delivering = asyncio.ensure_future(self.local.deliver(self.journal, syncs.link.send))
        if await asyncio.shield(self._delivering):
            syncs.want_sync()  # tell the driver nothing waits here any more

    def close(self) -> None:
        self.local.close()


class SameMachineJournal(AcknowledgedJournal):
    """Records written straight into the driver's spool directory while no cap is in force (see the module)."""

    def __init__(
        self,
        journal: str,
        application: str,
        syncs: SyncChannel,
        cap: WorkerCap,
        clock: Callable[[], float],
        *,
        answers_stored: bool,
    ) -> None:
        super().__init__(journal, application, syncs, cap)
        self._clock = clock
        self._answers_stored = answers_stored
        self._direct: SpoolWriter | None = None
        """This process's journal in the driver's spool directory, opened at its first record."""
        self._published = 0.0
        self._reported = False
        self._unwritten: list[UsageRecord] = []
        """Ended records the journal could not take yet (a full disk)."""

    @property
    def changed(self) -> bool:
        return self._direct is not None and self._direct.holding != self._reported

    def begin(self, record: UsageRecord, claim: CapClaim | None) -> asyncio.Future[Any] | None:
        if self._cap.capped:
            return super().begin(record, claim)
        try:
            self._direct_journal().begin(record)  # on the driver's disk before it leaves: no round trip
        except OSError as error:  # not recorded: not sent
            return failed_future(not_recorded_error(unwritable_message(self._direct_journal().journal_dir, error)))
        return None

    def _ended_on_this_machine(self, record: UsageRecord, head: str | None) -> bool:
        request_id = record.request_id
        direct = self._direct
        if direct is not None and direct.began(request_id):
            if self._answers_stored and self._syncs.connected:
                # Ended once the sync that takes its answer to the store is acknowledged: a worker killed before
                # that leaves it begun (closed as lost, its retry sends it again), never answered and not stored.
                self._syncs.next_batch().direct_ends.append(record)
            else:
                self._end_direct([record])
            return True
        if head is None and not self._cap.capped and not self.local.began(request_id) and self._syncs.connected:
            self._end_direct([record])  # a record with no begin (an answer from the store)
            return True
        return False

    def withdraw(self, record: UsageRecord) -> None:
        direct = self._direct
        if direct is not None and direct.began(record.request_id):
            self._heads.pop(record.request_id, None)
            direct.withdraw([record.request_id])
        else:
            super().withdraw(record)

    def describe(self, meta: dict[str, Any], task: TaskInfo | None) -> None:
        super().describe(meta, task)
        direct = self._direct
        if direct is None:
            return
        self._reported = direct.holding
        if self._reported:
            meta["dj"] = 1  # requests or records in this worker's journal on the driver's disk
        if task is not None and task.task_attempt_id is not None:
            meta["rt"] = task.task_attempt_id  # its begins skip the driver, which stops it through this

    def acknowledged(self, batch: Batch, reply: Reply) -> None:
        if batch.direct_ends:
            self._end_direct(batch.direct_ends)
        super().acknowledged(batch, reply)

    def unacknowledged(self, batch: Batch, halted: Reply | None = None) -> None:
        if batch.direct_ends:
            self._end_direct(batch.direct_ends)  # the driver's disk: no delivery needed
        super().unacknowledged(batch, halted)

    def tick(self) -> None:
        self._end_unwritten()
        direct = self._direct
        if (
            direct is not None
            and direct.unpublished
            and (not direct.in_flight or self._clock() - self._published >= PUBLISH_S)
        ):
            self._publish()

    async def flush(self) -> None:
        self._end_unwritten()
        self._publish()
        await super().flush()

    def _direct_journal(self) -> SpoolWriter:
        direct = self._direct
        if direct is None:
            direct = self._direct = spool_writer(self.journal)
        return direct

    def _end_direct(self, records: list[UsageRecord]) -> None:
        """End records in the journal on the driver's disk; those it cannot write (a full disk) stay in flight
        there and are written again at the next tick."""
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
        """Publish the ended records of the journal on the driver's disk to ingestion."""
        direct = self._direct
        if direct is not None and direct.unpublished:
            direct.flush()
            self._published = self._clock()
