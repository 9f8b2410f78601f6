"""The store as the coordinator uses it: never on the coordinator's event loop, never late, never fatal.

A store is a disk or a server, and either can hang: a SQLite file another process holds locked, a Redis server
that takes connections and never answers. The coordinator's loop serves every worker, so it must not wait on
one. :class:`GuardedStore` gives the store a thread of its own, which opens it, answers lookups and writes
answers; the loop hands it work and awaits lookups with a deadline (:data:`LOOKUP_DEADLINE_S`): an answer that
comes later is a miss, and the request is sent as if the store were empty. A :class:`~.breaker.CircuitBreaker`
stops asking a store that keeps failing or answering late.

Writes never block the caller: answers wait in memory (answered from there meanwhile), gathered for
:data:`GATHER_S` into one write, up to :data:`MAX_PENDING_BYTES`; past that they are dropped and counted (each
answer still reaches its row; only the saving is lost). Writes are tried even while the breaker is open (no
query waits for them, and late lookups on a loaded machine must not cost the answers); a write that works
closes the breaker.

A stored value that is not a stored answer (written by something else, or damaged) is a miss, and is deleted so
that the next answer replaces it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence

from aiquery.store.base import AnswerStore, StoredAnswer
from aiquery.store.breaker import CircuitBreaker

__all__ = ["LOOKUP_DEADLINE_S", "MAX_PENDING_BYTES", "GuardedStore"]

logger = logging.getLogger("aiquery.store")

LOOKUP_DEADLINE_S = 0.25
"""How long a lookup may take; a later answer is a miss (a sync waits for its lookup at most this long)."""
GATHER_S = 0.05
"""How long answers gather before they are written in one transaction (SQLite writes were 42 % of the driver's
busy time in the Spark throughput benchmark when each sync wrote its own)."""
MAX_PENDING_BYTES = 128 << 20
"""Answers waiting to be written, at most (more are dropped and counted rather than held)."""
WARM_UP_KEY = "aiquery-warm-up"
"""Looked up once when the store opens (never a fingerprint: those are hexadecimal)."""
OPEN_GRACE_S = 2.0
"""How long lookups asked while the store is being made (the redis package imported, the SQLite file opened) wait
for it. Measured under load: making it took longer than a lookup's deadline, every lookup of the first chunks was
a miss and a resumed job paid again for them. Waiting on the store itself (connecting, a lock) is not covered: a
Redis that never answers or a locked file costs a lookup its deadline, as before."""
CLOSE_TIMEOUT_S = 10.0
"""How long closing waits for the last writes; a store that hangs is left to its (daemon) thread."""

_Found = dict[str, str]


class GuardedStore:
    """An answer store behind a thread of its own, a deadline per lookup and a circuit breaker.

    Args:
        opener: makes the store (called on the store's thread: opening a locked file must not block anyone).
        where: how to name the store in logs (a path or a URL without credentials).
        deadline_s: how long a lookup may take.
    """

    def __init__(
        self,
        opener: Callable[[], AnswerStore],
        where: str,
        *,
        deadline_s: float = LOOKUP_DEADLINE_S,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.where = where
        self.deadline_s = deadline_s
        self.breaker = breaker or CircuitBreaker(where)
        self.dropped = 0
        """Answers not written: too many waiting, the write failed, or the store was failing at close."""
        self.discarded = 0
        """Stored values that were not stored answers (each a miss, deleted from the store)."""
        self._opener = opener
        self._store: AnswerStore | None = None
        self._open_error: Exception | None = None
        self._changed = threading.Condition()
        self._lookups: deque[tuple[Sequence[str], concurrent.futures.Future[_Found], float]] = deque()
        self._pending: dict[str, str] = {}
        self._pending_bytes = 0
        self._writing: dict[str, str] = {}
        self._discard: list[str] = []
        self._write_running = False
        self._urgent = 0
        self._closed = False
        self._busy_since: float | None = None
        """When the store's current call began (None while the thread is idle)."""
        self._making_until: float | None = time.monotonic() + OPEN_GRACE_S
        """While the store is being made: until when a lookup waits for that (None once made, or failed)."""
        self._made: concurrent.futures.Future[None] = concurrent.futures.Future()
        """Done once the store is made (or failed to be): lookups asked meanwhile wait for it."""
        self._thread = threading.Thread(target=self._serve, name="aiquery-answer-store", daemon=True)
        self._thread.start()

    @property
    def failures(self) -> int:
        """Failed or late lookups and writes so far."""
        return self.breaker.failures

    # ---- the caller's side ----------------------------------------------------------------------------------
    async def lookup(self, fingerprints: Sequence[str]) -> _Found:
        """The fresh answers among ``fingerprints``, from memory or the store; whatever the store has not
        answered by the deadline (after it is made, when asked while it is being made) is a miss. Never raises for
        the store's sake."""
        found, job, making = self._ask(fingerprints)
        if job is None:
            return found
        try:
            if making is not None:  # shielded: the event is shared by every lookup and must never be cancelled
                made = asyncio.shield(asyncio.wrap_future(self._made))
                await asyncio.wait_for(made, max(0.0, making - time.monotonic()))
            more = await asyncio.wait_for(asyncio.wrap_future(job), self.deadline_s)
        except asyncio.TimeoutError:  # not the built-in TimeoutError before Python 3.11
            job.cancel()
            self.breaker.failed("lookup", TimeoutError(f"no answer in {self.deadline_s:g} s"))
            return found
        except Exception as error:  # a broken store is a miss, never a failed query
            self.breaker.failed("lookup", error)
            return found
        self.breaker.succeeded()
        return {**more, **found}

    def get_many(self, fingerprints: Sequence[str]) -> _Found:
        """:meth:`lookup` for a caller without an event loop (blocks at most the deadline, after the store is
        made)."""
        found, job, making = self._ask(fingerprints)
        if job is None:
            return found
        try:
            if making is not None:
                self._made.result(max(0.0, making - time.monotonic()))
            more = job.result(self.deadline_s)
        except concurrent.futures.TimeoutError:
            job.cancel()
            self.breaker.failed("lookup", TimeoutError(f"no answer in {self.deadline_s:g} s"))
            return found
        except Exception as error:
            self.breaker.failed("lookup", error)
            return found
        self.breaker.succeeded()
        return {**more, **found}

    def _ask(
        self, fingerprints: Sequence[str]
    ) -> tuple[_Found, concurrent.futures.Future[_Found] | None, float | None]:
        """Answers waiting in memory, the store's job for the rest (None: not asked) and, while the store is being
        made, until when to wait for that first."""
        if not fingerprints:
            return {}, None, None
        with self._changed:
            found = {fp: text for fp in fingerprints if (text := self._pending.get(fp) or self._writing.get(fp))}
            rest = [fp for fp in fingerprints if fp not in found]
            if not rest or self._closed:
                return found, None, None
            busy_since, making = self._busy_since, self._making_until
        now = time.monotonic()
        if making is None and busy_since is not None and now - busy_since > self.deadline_s:
            # The thread is stuck in a call already late: this lookup could only be late too.
            self.breaker.failed("lookup", TimeoutError(f"the store has been busy for {now - busy_since:.1f} s"))
            return found, None, None
        if not self.breaker.allows():
            return found, None, None
        job: concurrent.futures.Future[_Found] = concurrent.futures.Future()
        with self._changed:
            self._lookups.append((rest, job, max(now, making or now) + self.deadline_s))
            self._changed.notify_all()
        return found, job, making

    def put_many(self, answers: Mapping[str, str]) -> None:
        """Hand answers over to be written (returns at once)."""
        if not answers:
            return
        size = sum(len(text) for text in answers.values())
        with self._changed:
            if self._closed or self._pending_bytes + size > MAX_PENDING_BYTES:
                self.dropped += len(answers)
                return
            idle = not self._pending
            self._pending.update(answers)
            self._pending_bytes += size
            if idle:  # the thread, gathering answers, wakes at its own time: no wake-up per call
                self._changed.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every answer handed over so far is written (or failed); False on timeout."""
        with self._changed:
            self._urgent += 1
            self._changed.notify_all()
            try:
                return self._changed.wait_for(
                    lambda: not self._pending and not self._discard and not self._write_running, timeout
                )
            finally:
                self._urgent -= 1

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Write what is waiting (unless the store is failing), then close the store."""
        with self._changed:
            self._closed = True
            if self.breaker.is_open:
                self.dropped += len(self._pending)
                self._pending.clear()
            self._changed.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.info("aiquery: the answer store at %s did not close in %g s; left behind", self.where, timeout)

    # ---- the store's thread ---------------------------------------------------------------------------------
    def _serve(self) -> None:
        self._busy_since = time.monotonic()
        try:
            self._store = self._opener()
            # Made (the redis package imported, the file opened): lookups asked meanwhile waited for it. What
            # follows waits on the store itself (a Redis that never answers, a file another process holds
            # locked), so it is an ordinary call: a lookup behind it that is already late is a miss.
            self._busy_since = time.monotonic()
            self._making_done()
            prepare = getattr(self._store, "prepare", None)
            if prepare is not None:
                prepare()
            # Connect now, before the first lookup: a cold connection (measured under load: a new application's
            # first Redis lookups) can take longer than a lookup may.
            self._store.get_many([WARM_UP_KEY])
        except Exception as error:  # e.g. an unwritable folder, the redis package missing, a server down
            self._open_error = error if self._store is None else None
            self.breaker.failed("open", error)
        self._making_done()
        self._busy_since = None
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._lookups or self._pending or self._discard or self._closed)
                lookup = self._lookups.popleft() if self._lookups else None
                if lookup is None and self._pending and not (self._closed or self._urgent or self._discard):
                    # Let answers gather: one write for all that arrive meanwhile (a lookup cuts it short).
                    self._changed.wait_for(lambda: self._closed or self._urgent or self._lookups, GATHER_S)
                    lookup = self._lookups.popleft() if self._lookups else None
                if lookup is None and not self._pending and not self._discard and self._closed:
                    break
                self._busy_since = time.monotonic()
            try:
                if lookup is not None:
                    self._look_up(*lookup)
                else:
                    self._write()
            finally:
                with self._changed:
                    self._busy_since = None
                    self._changed.notify_all()
        self._close_store()

    def _making_done(self) -> None:
        self._making_until = None
        if not self._made.done():
            self._made.set_result(None)

    def _opened(self) -> AnswerStore:
        if self._store is None:
            raise self._open_error or RuntimeError("the answer store is not open")
        return self._store

    def _look_up(self, fingerprints: Sequence[str], job: concurrent.futures.Future[_Found], deadline: float) -> None:
        if time.monotonic() > deadline or not job.set_running_or_notify_cancel():
            return  # its caller stopped waiting: asking now would only delay the next lookup
        try:
            raw = self._opened().get_many(fingerprints)
        except Exception as error:
            job.set_exception(error)
            return
        found = {fingerprint: text for fingerprint, text in raw.items() if _is_answer(text)}
        if len(found) < len(raw):
            with self._changed:
                self._discard.extend(fingerprint for fingerprint in raw if fingerprint not in found)
            self.discarded += len(raw) - len(found)
        job.set_result(found)

    def _write(self) -> None:
        with self._changed:
            self._writing, self._pending = self._pending, {}
            self._pending_bytes = 0
            batch = self._writing
            discard, self._discard = self._discard, []
            self._write_running = True
        try:
            store = self._opened()
            if discard:
                store.delete_many([fp for fp in discard if fp not in batch])
            if batch:
                store.put_many(batch)
        except Exception as error:  # the answer still reached its row; only the saving is lost
            self.dropped += len(batch)
            self.breaker.failed("write", error)
        else:
            self.breaker.succeeded()
        finally:
            with self._changed:
                self._writing = {}
                self._write_running = False

    def _close_store(self) -> None:
        if self._store is None:
            return
        try:
            self._store.close()
        except Exception:  # closing a broken store must not fail the session's shutdown
            logger.debug("answer store did not close cleanly", exc_info=True)


def _is_answer(text: str) -> bool:
    try:
        StoredAnswer.decode(text)
    except (ValueError, TypeError, RecursionError):
        return False
    return True
