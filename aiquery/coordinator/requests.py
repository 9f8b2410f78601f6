"""Requests in flight on the driver: who began them, and when one is known to be lost.

A worker's begin records reach the driver before its requests are sent; its end records follow. A request
begun and never ended belongs to a worker that is still working, cut off from the driver, or dead. It is
closed as lost (status NULL, "worker lost") only when both hold:

- the worker's connection is gone (a dead process's kernel closes its sockets; a vanished machine is found by
  TCP keepalive) and has not come back for :data:`GRACE_S`;
- Spark reports the request's task attempt failed or killed (an executor lost takes its running tasks with
  it). A worker merely cut off from the driver runs on, its tasks do not fail because of that, and it delivers
  its records when it reconnects; so a listener restart never closes a live worker's requests.

An end record that arrives for a request already closed as lost is dropped, and so is one delivered twice
(a worker resends what was unacknowledged when its connection broke; another worker on its machine delivers
what a dead one kept in its local journal): nothing is recorded twice. Requests count as ended only once their
records are journaled, so a record whose write failed is taken again when its worker redelivers it. Duplicates
are recognised for as long as the driver remembers their worker's last :data:`RECENT_PER_WORKER` ends (a
worker gone with nothing in flight is forgotten after :data:`FORGET_S`). A request closed as lost is remembered
until its late end record has come (then the window of recent ends drops any further copy), for
:data:`CLOSED_KEEP_S` at most, and :data:`MAX_CLOSED` of them at most: what a long application keeps stays
bounded.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["GRACE_S", "InFlight"]

GRACE_S = 2.0
"""How long a disconnected worker may take to come back before its failed tasks' requests are closed."""
RECENT_PER_WORKER = 4096
"""End records remembered per worker to drop duplicates (more than a worker ever has unacknowledged)."""
MAX_FAILED_TASKS = 100_000
FORGET_S = 600.0
"""A worker disconnected this long with nothing in flight is forgotten."""
CLOSED_KEEP_S = 3600.0
"""How long a request closed as lost waits for its end record (to drop it) before it is forgotten."""
MAX_CLOSED = 100_000
"""Requests closed as lost remembered at most; the oldest go first."""


@dataclass
class _Worker:
    open: dict[str, tuple[int | None, str]] = field(default_factory=dict)
    """request id -> (task attempt id, journal)."""
    connected: bool = True
    since: float = 0.0
    holding_local: bool = False
    """It reported records in its local journal, not delivered yet."""
    holding_direct: bool = False
    """It reported requests in flight, or records not yet published, in its journal in the driver's spool
    directory (a worker on the driver's machine)."""
    recent: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=RECENT_PER_WORKER))
    """Its last ended requests (their ids are in :attr:`InFlight._recent` while here)."""


class InFlight:
    """Begun and unfinished requests per worker. Thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._workers: dict[str, _Worker] = {}
        self._failed: set[int] = set()
        self._failed_order: collections.deque[int] = collections.deque()
        self._closed: dict[str, float] = {}
        """Requests closed as lost whose end record has not come -> when they were closed (oldest first)."""
        self._recent: set[str] = set()
        """Every worker's recently ended requests: duplicates are dropped whichever worker delivers them."""

    def _worker(self, worker: str) -> _Worker:
        state = self._workers.get(worker)
        if state is None:
            state = self._workers[worker] = _Worker(since=self._clock())
        return state

    def begun(self, worker: str, journal: str, request_ids: list[str], task: int | list[int | None] | None) -> None:
        """Requests a worker is about to send; ``task`` is their task attempt, or one per request."""
        with self._lock:
            open_requests = self._worker(worker).open
            if isinstance(task, list):
                for request_id, each in zip(request_ids, task, strict=True):
                    open_requests[request_id] = (each, journal)
                return
            entry = (task, journal)
            for request_id in request_ids:
                open_requests[request_id] = entry

    def unrecorded(self, worker: str, request_ids: list[str]) -> list[int] | None:
        """Which end records of a sync to journal: the indices of those the driver has not recorded, or None when
        that is all of them. A record is recorded already when it was ended by any worker (a dead worker's orphans
        arrive through another one), closed as lost, or repeated within the sync."""
        with self._lock:
            recent, closed = self._recent, self._closed
            keep: list[int] | None = None
            seen: set[str] = set()
            settled: list[str] = []
            for index, request_id in enumerate(request_ids):
                if request_id in recent or request_id in closed or request_id in seen:
                    if keep is None:
                        keep = list(range(index))
                    if request_id in closed:
                        settled.append(request_id)
                        seen.add(request_id)
                    continue
                seen.add(request_id)
                if keep is not None:
                    keep.append(index)
            if settled:
                self._settle(worker, settled)
            return keep

    def _settle(self, worker: str, request_ids: list[str]) -> None:
        # The late ends of requests closed as lost came, and are dropped: no longer kept as closed, but as recent
        # ends of the worker that delivered them, so a further copy is still dropped whoever delivers it.
        window = self._worker(worker).recent
        for request_id in request_ids:
            del self._closed[request_id]
            if len(window) == window.maxlen:
                self._recent.discard(window[0])
            window.append(request_id)
            self._recent.add(request_id)

    def ended(self, worker: str, request_ids: list[str], *, delivered: bool = False) -> None:
        """Mark requests ended, once their records are journaled (before, a failed write would lose them: the
        worker's redelivery would be taken for a duplicate). ``delivered``: from a local journal, which may hold
        the orphans of a dead worker on the same machine."""
        with self._lock:
            state = self._worker(worker)
            open_requests, window = state.open, state.recent
            for request_id in request_ids:
                if open_requests.pop(request_id, None) is None and delivered:
                    self._close_elsewhere(request_id)
                if request_id in self._recent:
                    continue
                if len(window) == window.maxlen:
                    self._recent.discard(window[0])
                window.append(request_id)
                self._recent.add(request_id)

    def _close_elsewhere(self, request_id: str) -> None:
        # Begun by another worker (a dead one whose orphaned records this one delivers): not open there any more,
        # or it would be closed as lost too.
        for state in self._workers.values():
            if state.open.pop(request_id, None) is not None:
                return

    def connected(self, worker: str) -> None:
        with self._lock:
            state = self._worker(worker)
            state.connected = True
            state.since = self._clock()

    def disconnected(self, worker: str) -> None:
        with self._lock:
            state = self._worker(worker)
            state.connected = False
            state.since = self._clock()

    def task_failed(self, task: int) -> None:
        with self._lock:
            if task in self._failed:
                return
            self._failed.add(task)
            self._failed_order.append(task)
            if len(self._failed_order) > MAX_FAILED_TASKS:
                self._failed.discard(self._failed_order.popleft())

    def lost(self) -> dict[str, list[str]]:
        """Requests to close as lost now, per journal; they are forgotten here (late end records are dropped)."""
        now = self._clock()
        found: dict[str, list[str]] = {}
        with self._lock:
            for name, state in list(self._workers.items()):
                if state.connected or now - state.since < GRACE_S:
                    continue
                if not state.open and now - state.since > FORGET_S:
                    del self._workers[name]  # long gone with nothing in flight: its duplicate window is moot
                    self._recent.difference_update(state.recent)
                    continue
                for request_id, (task, journal) in list(state.open.items()):
                    if task is not None and task in self._failed:
                        found.setdefault(journal, []).append(request_id)
                        del state.open[request_id]
                        self._closed[request_id] = now
            self._forget_closed(now)
        return found

    def _forget_closed(self, now: float) -> None:
        closed = self._closed
        while closed:
            oldest = next(iter(closed))
            if len(closed) <= MAX_CLOSED and now - closed[oldest] < CLOSED_KEEP_S:
                return
            del closed[oldest]

    def closed_count(self) -> int:
        """Requests closed as lost still waiting for their end record (bounded; for tests and logs)."""
        with self._lock:
            return len(self._closed)

    def holding_local(self, worker: str, holding: bool, direct: bool = False) -> None:
        """Whether a worker (as it says with each sync) holds records in its local journal, and whether it holds
        requests or unpublished records in its journal in the driver's spool directory."""
        state = self._workers.get(worker)
        if state is None or state.holding_local != holding or state.holding_direct != direct:
            with self._lock:
                state = self._worker(worker)
                state.holding_local = holding
                state.holding_direct = direct

    def stranded(self, live: bool = False) -> int:
        """Requests begun by workers that are not connected now, plus connected workers with undelivered local
        records. With ``live``, also the requests of connected workers, and those holding requests or records in
        a journal of their own in the driver's spool directory (a dead one's is recovered by ingestion)."""
        with self._lock:
            return sum(
                len(state.open)
                if not state.connected
                else int(state.holding_local) + (len(state.open) + int(state.holding_direct) if live else 0)
                for state in self._workers.values()
            )

    def open_count(self) -> int:
        """Requests begun and not ended, by any worker."""
        with self._lock:
            return sum(len(state.open) for state in self._workers.values())
