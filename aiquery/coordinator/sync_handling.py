"""One worker's sync, as the coordinator applies it: records to journal, spend to count, reports, answers.

A sync (see :mod:`.protocol`) is applied in steps, each on the coordinator's loop without waiting:

0. batch mode's collected requests go to their run's collector (:mod:`.collect_desk`); when it fails, nothing
   else of the sync is applied, and the reply says why;
1. the spending caps take what ended requests spent and the begins withdrawn (:mod:`.cap_book`);
2. its records go into the driver's journal: withdrawals, then ends (a journal that cannot take them takes no
   new begins either: the sync is refused and the worker keeps them), then begins, less those of tasks being
   killed (:mod:`.task_kills`) and those the caps refuse;
3. a worker that journals on this machine is told to stop when its running task is being killed;
4. its reports are taken: whether it holds records, estimate samples, progress; its lease is renewed
   (:mod:`.budgets`);
5. the answer store's part: answers to keep, claims to release, lookups and waits (:mod:`.answer_waits`). The
   store answers off the loop, so a sync that asks it is answered once it has.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from aiquery.coordinator.answer_waits import AnswerDesk, Consultation
from aiquery.coordinator.budgets import Budgets
from aiquery.coordinator.cap_book import CapBook
from aiquery.coordinator.collect_desk import CollectDesk
from aiquery.coordinator.journal_writes import write_or_explain
from aiquery.coordinator.progress import ProgressBook
from aiquery.coordinator.protocol import ProtocolError
from aiquery.coordinator.requests import InFlight
from aiquery.coordinator.task_kills import KilledTasks
from aiquery.engine.governor import add_sample
from aiquery.usage.spool import SpoolWriter

__all__ = ["SyncHandler"]

SyncReply = tuple[dict[str, Any], "bytes | Coroutine[Any, Any, bytes]"]


@dataclass(slots=True)
class _Begins:
    """A sync's begin records, and what it says of each (a value shared by all may stand for the list)."""

    ids: list[str]
    heads: list[str]
    tasks: Any
    per_begin: tuple[Any, Any, Any]
    """Their currencies, cap owners and claims."""
    positions: list[int]
    """Where each sits in the sync (the worker's waiters are in that order)."""


@dataclass(slots=True, kw_only=True)
class SyncHandler:
    """Applies workers' syncs to the coordinator's books. Used on the coordinator's loop."""

    journal: Callable[[str], SpoolWriter | None]
    """The driver's journal for a spool directory, or None when it has none."""
    caps: CapBook
    in_flight: InFlight
    killed_tasks: KilledTasks
    budgets: Budgets
    progress_book: ProgressBook
    answers: AnswerDesk
    samples: dict[str, dict[str, list[int]]]
    """Estimate runs' row counts, as workers report them: run -> endpoint -> [seen, sent]."""
    collect_desk: CollectDesk

    def handle(self, worker: str, meta: dict[str, Any], payload: bytes) -> SyncReply:
        """Apply one worker's sync; the reply's metadata and payload (answers found in the store), or, when the sync
        asks the store, a coroutine that completes the metadata and gives the payload."""
        collected = int(meta.get("cl", 0))
        if collected or meta.get("cc"):  # the parts' counts and lines (see .collect_queue)
            failure = self.collect_desk.receive(meta.get("cc"), payload[len(payload) - collected :])
            if failure is not None:
                return {"error": failure}, b""
            payload = payload[: len(payload) - collected]
        begun_length = int(meta.get("bl", 0))
        ended_length = int(meta.get("el", len(payload) - begun_length))
        reply: dict[str, Any] = {}
        self._count_spend(meta, reply)
        failure = self._journal_records(worker, meta, payload[:begun_length + ended_length], begun_length, reply)
        if failure is not None:
            # Not acknowledged: the worker keeps them in its local journal and delivers them again.
            return {**reply, "error": failure, "halt": failure}, b""
        self._stop_running_task(meta, reply)
        self._take_reports(worker, meta)
        reply["lease"] = self.budgets.sync(worker, meta.get("demand"), meta.get("seen"))
        consultation = self._answers(worker, meta, payload[begun_length + ended_length :])
        if consultation is None:
            return reply, b""
        return reply, self._consulted(consultation, reply)

    def _count_spend(self, meta: dict[str, Any], reply: dict[str, Any]) -> None:
        caps = self.caps
        if caps:
            reply["cap"] = caps.generation
        spent, withdrawn = meta.get("sp"), meta.get("x")
        if spent:
            caps.spent(spent)
        if withdrawn:
            caps.withdraw(withdrawn)

    # ---- records --------------------------------------------------------------------------------------------
    def _journal_records(
        self, worker: str, meta: dict[str, Any], records: bytes, begun_length: int, reply: dict[str, Any]
    ) -> str | None:
        """Journal the sync's withdrawals, ends and begins; why its ends cannot be written, else None."""
        begun, ended, withdrawn = meta.get("b"), meta.get("e"), meta.get("x")
        if not (begun or ended or withdrawn):
            return None
        journal_key = meta.get("j")
        journal = self.journal(journal_key) if isinstance(journal_key, str) else None
        if journal is None or not isinstance(journal_key, str):
            raise ProtocolError(f"no usage journal {journal_key!r} on this driver")
        if withdrawn:  # nothing to write: taken even when the journal cannot be written
            self.in_flight.ended(worker, withdrawn)
            journal.withdraw(withdrawn)
        if ended:  # before the begins: a journal that cannot take these records takes no new begins either
            failure = self._end(worker, journal, ended, records[begun_length:], meta)
            if failure is not None:
                return failure
        if begun:
            begins = _Begins(
                begun,
                records[:begun_length].decode().split("\n"),
                meta.get("t"),
                (meta.get("pc"), meta.get("co"), meta.get("pe")),
                list(range(len(begun))),
            )
            self._begin(worker, journal_key, journal, begins, reply)
        return None

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

    def _begin(
        self, worker: str, journal_key: str, journal: SpoolWriter, begins: _Begins, reply: dict[str, Any]
    ) -> None:
        """Journal the begins neither a task kill nor a cap refuses; say which were refused, and why."""
        self._drop_killed(begins, reply)
        caps = self.caps
        if caps and begins.ids:
            _admit(caps, begins, reply)
        ids, heads = begins.ids, begins.heads
        if not ids:
            return
        failure = write_or_explain(journal, lambda: journal.begin_lines(ids, heads))
        if failure is None:
            self.in_flight.begun(worker, journal_key, ids, begins.tasks)
        else:
            reply["halt"] = failure  # not journaled: the worker does not send them
            if caps:
                caps.withdraw(ids)

    def _drop_killed(self, begins: _Begins, reply: dict[str, Any]) -> None:
        """Drop the begins of tasks being killed. Their worker dies within seconds, and a request recorded now
        might never leave: not journaled, and the worker does not send them (reply ``stop``)."""
        tasks = begins.tasks
        task_list = tasks if isinstance(tasks, list) else [tasks] * len(begins.ids)
        stopped = self.killed_tasks.killed(set(task_list))
        if not stopped:
            return
        reply["stop"] = sorted(stopped)
        kept = [i for i, task in enumerate(task_list) if task not in stopped]
        begins.ids = [begins.ids[i] for i in kept]
        begins.heads = [begins.heads[i] for i in kept]
        begins.tasks = [task_list[i] for i in kept]
        currencies, owners, claims = (_pick(values, kept) for values in begins.per_begin)
        begins.per_begin = (currencies, owners, claims)
        begins.positions = kept

    def _stop_running_task(self, meta: dict[str, Any], reply: dict[str, Any]) -> None:
        # A worker that journals on this machine sends no begins to refuse: it is told with any sync.
        running = meta.get("rt")
        if isinstance(running, int) and self.killed_tasks.killed((running,)):
            reply["stop"] = sorted({*reply.get("stop", ()), running})

    # ---- reports --------------------------------------------------------------------------------------------
    def _take_reports(self, worker: str, meta: dict[str, Any]) -> None:
        self.in_flight.holding_local(worker, bool(meta.get("local")), bool(meta.get("dj")))
        samples = meta.get("est")
        if samples:
            for run, endpoints in samples.items():
                for endpoint, (seen, sent) in endpoints.items():
                    add_sample(self.samples, run, endpoint, int(seen), int(sent))
        rows = meta.get("rows")
        if rows:
            self.progress_book.add(rows, meta.get("stage") or {}, meta.get("desc") or {}, meta.get("cost"))

    # ---- the answer store -----------------------------------------------------------------------------------
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


def _pick(values: Any, kept: list[int]) -> Any:
    """The kept begins' values of a per-begin list (a value shared by all stays as it is)."""
    return [values[i] for i in kept] if isinstance(values, list) else values


def _admit(caps: CapBook, begins: _Begins, reply: dict[str, Any]) -> None:
    """Keep the begins the caps let go; the refused ones (by their positions in the sync) and why go into
    ``reply``."""
    refusals = caps.admit(begins.ids, *begins.per_begin)
    if not refusals:
        return
    messages: list[str] = []
    which: list[int] = []
    for _, message in refusals:
        if message not in messages:
            messages.append(message)
        which.append(messages.index(message))
    refused = [index for index, _ in refusals]
    reply["refused"] = {"i": [begins.positions[index] for index in refused], "m": which, "t": messages}
    gone = set(refused)
    keep = [index for index in range(len(begins.ids)) if index not in gone]
    if isinstance(begins.tasks, list):
        begins.tasks = [begins.tasks[index] for index in keep]
    begins.ids = [begins.ids[index] for index in keep]
    begins.heads = [begins.heads[index] for index in keep]
