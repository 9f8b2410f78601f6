"""The application's answer stores, which worker is sending which request right now, and who waits for it.

A worker admitting a chunk looks its fingerprints up. Each fingerprint nobody is sending is *claimed* by that
worker at once, then looked up in the store: the store's answers come back (their claims released), the rest
the worker sends. One another worker has claimed is to be *waited* for: identical requests in flight anywhere in
the application are sent once. Claiming before asking the store (which answers off the coordinator's loop, a
moment later) keeps two workers from both missing and both sending. The owner ships the answer as soon as it
has it (stored, kept in memory for the workers waiting on it, claim released: the waiters find it at their next sync),
or releases the claim when its call fails (errors are never stored: a waiter then claims it and sends it
itself). A worker that disconnects loses its claims at once, so its waiters take over.

Answers cross the driver as the text the workers encoded. One reply carries at most
:data:`REPLY_ANSWER_BYTES` of them, so it always fits one frame: answers found beyond that wait for the
worker's next sync, and an answer larger than that is never stored.

:class:`AnswerDesk` is the driver's side; :class:`AnswerWaits` a worker's, its calls waiting for another
worker's answer.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from aiquery.coordinator.batch_results import BatchResults, ask_batch_results
from aiquery.coordinator.protocol import MAX_PAYLOAD_BYTES
from aiquery.errors import BatchLineFailed
from aiquery.store.base import StoredAnswer
from aiquery.store.guarded import GuardedStore

__all__ = ["REPLY_ANSWER_BYTES", "AnswerDesk", "AnswerWaits", "Consultation"]

REPLY_ANSWER_BYTES = MAX_PAYLOAD_BYTES // 2
"""Bytes of answers one reply carries at most (half a frame: room for the framing and the rest of the reply)."""
RECENT_ANSWER_BYTES = 32 << 20
"""Answers just received that workers wait on, kept in memory for them (so that a failing store never makes a
waiter send the request again)."""
MAX_AWAITED = 100_000
"""Fingerprints remembered as waited on, at most (the oldest are forgotten first)."""


@dataclass(slots=True)
class Consultation:
    """One sync's questions to the store, claims already taken: what to look up, and for what."""

    worker: str
    store: GuardedStore | None
    asked: list[str] = field(default_factory=list)
    """Fingerprints claimed for the worker, to look up (a miss is the worker's to send)."""
    waiting: list[str] = field(default_factory=list)
    """Looked-up fingerprints another worker is sending: to wait for."""
    waited: set[str] = field(default_factory=set)
    """Those of ``asked`` the worker was waiting on (their owner gave up or answered): a miss is owned now."""


@dataclass(slots=True)
class StoreReply:
    """The store's part of a sync's reply."""

    found: dict[str, str]
    wait: list[str]
    own: list[str]


class AnswerDesk:
    """Stores by key (as plans name them) and the claims of in-flight requests. Used on the coordinator's loop."""

    def __init__(self) -> None:
        self._stores: dict[str, GuardedStore] = {}
        self._owner: dict[str, str] = {}
        self._owned: dict[str, set[str]] = {}
        self._recent: OrderedDict[str, str] = OrderedDict()
        self._recent_bytes = 0
        self._awaited: OrderedDict[str, None] = OrderedDict()
        """Fingerprints some worker was told to wait for: their answers are kept in memory when they come."""
        self.hits = 0
        self.lookups = 0
        self.too_large = 0
        """Answers not stored: larger than one reply may carry."""
        self.batch_results: BatchResults | None = None
        """Batch mode's run pass: the run's answers and failed lines, asked for every store miss while set."""

    def add_store(self, key: str, store: GuardedStore) -> None:
        """Serve ``store`` under ``key`` (a store already served under it stays)."""
        self._stores.setdefault(key, store)

    def store(self, key: str) -> GuardedStore | None:
        return self._stores.get(key)

    @property
    def failures(self) -> int:
        """Failed or late lookups and writes of every store."""
        return sum(store.failures for store in self._stores.values())

    def claim(self, worker: str, key: str, lookups: Sequence[str], waits: Sequence[str]) -> Consultation:
        """Claim what ``worker`` may send of its ``lookups`` and of the ``waits`` whose owner is done; the rest of
        its lookups it waits for. Waits still claimed by another worker are not asked about (their owner ships
        the answer or releases the claim)."""
        consultation = Consultation(worker, self._stores.get(key))
        for fingerprint in lookups:
            if self._claim(worker, fingerprint):
                consultation.asked.append(fingerprint)
            else:
                consultation.waiting.append(fingerprint)
                self._awaited[fingerprint] = None
                if len(self._awaited) > MAX_AWAITED:
                    self._awaited.popitem(last=False)
        for fingerprint in waits:
            if self._claim(worker, fingerprint):
                consultation.asked.append(fingerprint)
                consultation.waited.add(fingerprint)
        return consultation

    async def consult(self, consultation: Consultation) -> StoreReply:
        """Look the claimed fingerprints up (off the loop, within the store's deadline) and release the claims of
        those answered."""
        asked = consultation.asked
        found = {fp: text for fp in asked if (text := self._recent.get(fp)) is not None}
        rest = [fp for fp in asked if fp not in found]
        store = consultation.store
        if store is not None and rest:
            found.update(await store.lookup(rest))
            self.lookups += len(rest)
        source = self.batch_results
        if source is not None and (missing := [fp for fp in rest if fp not in found]):
            loop = asyncio.get_running_loop()
            found.update(await loop.run_in_executor(None, ask_batch_results, source, missing))
        carried, left = _within_budget(found)
        self.hits += len(carried)
        self.release(consultation.worker, found)  # answers left out are free for any worker to look up again
        reply = StoreReply(carried, list(consultation.waiting), [])
        for fingerprint in asked:
            if fingerprint in carried:
                continue
            if fingerprint in left:  # found but not carried: the worker waits for it (its next sync finds it)
                if fingerprint not in consultation.waited:
                    reply.wait.append(fingerprint)
            elif fingerprint in consultation.waited:
                reply.own.append(fingerprint)
        return reply

    def answered(self, worker: str, key: str, answers: dict[str, str]) -> None:
        """Store answers a worker got, and release their claims."""
        storable = {fp: text for fp, text in answers.items() if len(text) <= REPLY_ANSWER_BYTES}
        self.too_large += len(answers) - len(storable)
        for fingerprint, text in storable.items():
            if self._awaited.pop(fingerprint, 0) is None:
                self._remember(fingerprint, text)
        store = self._stores.get(key)
        if store is not None:
            store.put_many(storable)
        self.release(worker, answers)

    def release(self, worker: str, fingerprints: Iterable[str]) -> None:
        """Release claims ``worker`` holds (its calls ended)."""
        owned = self._owned.get(worker)
        for fingerprint in fingerprints:
            if self._owner.get(fingerprint) == worker:
                del self._owner[fingerprint]
                if owned is not None:
                    owned.discard(fingerprint)

    def forget(self, worker: str) -> None:
        """The worker is gone: its claims are free for the workers waiting on them."""
        for fingerprint in self._owned.pop(worker, set()):
            if self._owner.get(fingerprint) == worker:
                del self._owner[fingerprint]

    def close(self) -> None:
        for store in self._stores.values():
            store.close()
        self._stores.clear()

    def _remember(self, fingerprint: str, text: str) -> None:
        previous = self._recent.pop(fingerprint, None)
        if previous is not None:
            self._recent_bytes -= len(previous)
        self._recent[fingerprint] = text
        self._recent_bytes += len(text)
        while self._recent_bytes > RECENT_ANSWER_BYTES:
            _, oldest = self._recent.popitem(last=False)
            self._recent_bytes -= len(oldest)

    def _claim(self, worker: str, fingerprint: str) -> bool:
        owner = self._owner.get(fingerprint)
        if owner is None:
            self._owner[fingerprint] = worker
            self._owned.setdefault(worker, set()).add(fingerprint)
            return True
        return owner == worker


def _within_budget(found: dict[str, str]) -> tuple[dict[str, str], set[str]]:
    """The answers one reply carries, and those left for a later one. An answer no reply could carry (a value
    another application stored) is neither: a miss."""
    carried: dict[str, str] = {}
    left: set[str] = set()
    size = 0
    for fingerprint, text in found.items():
        line = len(fingerprint) + 2 + (len(text) if text.isascii() else len(text.encode()))
        if line > REPLY_ANSWER_BYTES:
            continue
        if size + line > REPLY_ANSWER_BYTES:
            left.add(fingerprint)
            continue
        carried[fingerprint] = text
        size += line
    return carried, left


class AnswerWaits:
    """A worker's calls that wait for another worker's request to be answered, by fingerprint. Used on the
    engine's event loop; each sync asks the driver about them."""

    def __init__(self) -> None:
        self._futures: dict[str, asyncio.Future[StoredAnswer | None]] = {}

    @property
    def fingerprints(self) -> Collection[str]:
        return self._futures.keys()

    def __bool__(self) -> bool:
        return bool(self._futures)

    def wait(self, fingerprint: str, connected: bool) -> asyncio.Future[StoredAnswer | None]:
        """The answer's future; None at once when cut off from the driver (no store to wait on: send it)."""
        future = self._futures.get(fingerprint)
        if future is None:
            future = self._futures[fingerprint] = asyncio.get_running_loop().create_future()
            if not connected:
                future.set_result(None)
                del self._futures[fingerprint]
        return future

    def resolve(self, hits: Mapping[str, StoredAnswer], owned: Iterable[str], failed: Mapping[str, str]) -> None:
        """A sync's reply: a waiting call gets its answer (``hits``), is told to send the request itself
        (``owned``: the worker sending it failed, or is gone), or learns that its line failed in a batch of batch
        mode's run (``failed``: :class:`~aiquery.errors.BatchLineFailed` with the line's message)."""
        mine = set(owned)
        for key in list(self._futures):
            answer = hits.get(key)
            message = failed.get(key) if failed else None
            if answer is not None or key in mine or message is not None:
                future = self._futures.pop(key)
                if future.done():
                    continue
                if message is not None and answer is None:
                    future.set_exception(BatchLineFailed(message, attempts=0))
                else:
                    future.set_result(answer)

    def release_all(self) -> None:
        """Cut off from the driver: every waiting call sends its own request."""
        futures, self._futures = self._futures, {}
        for future in futures.values():
            if not future.done():
                future.set_result(None)
