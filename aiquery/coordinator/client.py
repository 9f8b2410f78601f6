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

When the driver cannot be reached (a worker that starts first, a partition, a stopped listener) the client
falls back, logging one warning: budgets become a static 1/parallelism share, records go to a local journal
(:class:`~aiquery.usage.spool.SpoolWriter` in a folder of this machine), and the ticker keeps reconnecting.
Once connected again it delivers the local journal's records to the driver and deletes them. Records that were
in a sync whose reply never came are journaled locally too; the driver drops the copies it already had.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aiquery.config import Endpoint
from aiquery.coordinator.progress import COUNTERS
from aiquery.coordinator.protocol import (
    CoordinatorAddress,
    FrameReader,
    ProtocolError,
    encode_frame,
    prove,
)
from aiquery.coordinator.tls import certificate_fingerprint, client_context
from aiquery.engine.governor import Admission, EndpointLimits, LocalGovernor, TaskInfo, concurrency_for, limits_key
from aiquery.engine.limiter import LearnedRate, PacedBudget
from aiquery.store.base import StoredAnswer
from aiquery.usage.codec import RecordEncoder
from aiquery.usage.record import UsageRecord
from aiquery.usage.spool import SpoolWriter

__all__ = ["CoordinatorClient", "local_journal_dir"]

logger = logging.getLogger("aiquery.coordinator")

TICK_S = 0.25
CONNECT_TIMEOUT_S = 5.0
REPLY_TIMEOUT_S = 30.0
RECONNECT_MIN_S = 0.25
RECONNECT_MAX_S = 2.0
DELIVERY_BYTES = 4 << 20
"""Local journal records are delivered in syncs of at most this many bytes."""
FLUSH_TIMEOUT_S = 30.0
DELIVERY_INTERVAL_S = 2.0
"""While records wait in the local journal, how often the ticker tries to deliver them."""


def local_journal_dir(application: str) -> Path:
    """Where a worker keeps its records while the driver is out of reach: a folder of this machine."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in application) or "application"
    return Path(tempfile.gettempdir()) / f"aiquery-{os.getuid()}" / safe


class _Batch:
    """What the next sync carries, and the future its reply resolves.

    The future always gets a result, never an exception: when the sync cannot be delivered its records go to
    the local journal first, so a request waiting on its begin may be sent either way.
    """

    __slots__ = (
        "answers",
        "begin_heads",
        "begin_ids",
        "end_ids",
        "end_lines",
        "extra",
        "future",
        "lookups",
        "releases",
        "tasks",
        "wanted",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.begin_ids: list[str] = []
        self.begin_heads: list[str] = []
        self.tasks: list[int | None] = []
        self.end_ids: list[str] = []
        self.end_lines: list[str] = []
        self.extra: dict[str, list[float]] = {}
        """Demand of chunks being admitted, not yet counted in their endpoint's active calls."""
        self.lookups: list[str] = []
        self.answers: list[str] = []
        """Answers for the store, as ``<fingerprint>\t<encoded answer>\n`` lines."""
        self.releases: list[str] = []
        self.wanted = False
        self.future: asyncio.Future[_Reply] = loop.create_future()

    def __bool__(self) -> bool:
        return bool(self.wanted or self.begin_ids or self.end_ids or self.answers or self.releases)


class _Reply:
    """A sync's reply: its metadata and the answers the store had (parsed once, shared by every waiter)."""

    __slots__ = ("hits", "meta")

    def __init__(self, meta: dict[str, Any], payload: bytes = b"") -> None:
        self.meta = meta
        self.hits: dict[str, StoredAnswer] = {}
        for line in payload.split(b"\n"):
            if line:
                key, _, encoded = line.partition(b"\t")
                self.hits[key.decode()] = StoredAnswer.decode(encoded)


class _Pace:
    """The learned pace as a worker sees it: one budget, at the coordinator's lease while there is one, at this
    worker's own learned pace otherwise (before the first lease, or cut off from the driver).

    One budget object whatever sets its rate, so that requests already queued on it follow a new rate at once.
    """

    def __init__(self, client: CoordinatorClient, clock: Callable[[], float]) -> None:
        self._client = client
        self.local = LearnedRate(clock=clock)
        self.lease: float | None = None
        self._paced = PacedBudget(1.0, burst=1.0, clock=clock, fixed=False)
        self._active = False
        self.answered = 0
        self.limited = 0

    @property
    def budget(self) -> PacedBudget | None:
        return self._paced if self._active else None

    def follow(self) -> None:
        """Set the budget's rate from the lease, else from this worker's own pace (see the class docstring)."""
        rate = self.lease if self._client.connected and self.lease is not None else None
        if rate is None and self.local.budget is not None:
            # Until the coordinator has a pace to lease, this worker's own: a burst of 429s stops it at once,
            # without waiting for the round trip.
            rate = self.local.budget.rate
        self._active = rate is not None
        if rate is not None and rate != self._paced.rate:
            self._paced.set_rate(rate)

    def on_success(self) -> None:
        self.answered += 1
        self.local.on_success()
        if self.lease is None:
            self.follow()

    def on_rate_limited(self) -> None:
        self.limited += 1
        self.local.on_rate_limited()
        if self.lease is None:
            self.follow()


class _Endpoint:
    """One endpoint's limits in this worker and what the client reports about it."""

    def __init__(self, endpoint: Endpoint, share: float, client: CoordinatorClient, clock: Callable[[], float]) -> None:
        self.key = _key(endpoint)
        self.endpoint = endpoint
        self.share = share
        self._clock = clock
        requests = PacedBudget(1.0, clock=clock, fixed=False) if endpoint.requests_per_minute else None
        tokens = PacedBudget(1.0, clock=clock, fixed=False) if endpoint.tokens_per_minute else None
        self.pace = _Pace(client, clock) if requests is None else None
        self.limits = EndpointLimits(concurrency_for(endpoint, clock), requests, tokens, self.pace)
        self.reported_idle = True
        self.static()

    def static(self) -> None:
        """Budgets for a worker cut off from the driver: its static share (and its own learned pace)."""
        if self.pace is not None:
            self.pace.follow()
        endpoint, limits = self.endpoint, self.limits
        if limits.requests is not None and endpoint.requests_per_minute:
            limits.requests.set_rate(endpoint.requests_per_minute * self.share / 60.0)
        if limits.tokens is not None and endpoint.tokens_per_minute:
            limits.tokens.set_rate(endpoint.tokens_per_minute * self.share / 60.0)

    def apply(self, lease: list[float | None]) -> None:
        requests, tokens = lease
        limits = self.limits
        if limits.requests is not None and requests is not None:
            limits.requests.set_rate(requests)
        if limits.tokens is not None and tokens is not None:
            limits.tokens.set_rate(tokens)
        if self.pace is not None:
            self.pace.lease = requests
            self.pace.follow()

    def demand(self, extra: list[float] | None) -> list[float | None]:
        limits, endpoint = self.limits, self.endpoint
        calls, tokens = extra or (0.0, 0.0)
        return [
            limits.active_calls + calls,
            limits.active_tokens + tokens,
            endpoint.requests_per_minute,
            endpoint.tokens_per_minute,
        ]

    def seen(self) -> list[int] | None:
        pace = self.pace
        if pace is None or not (pace.answered or pace.limited):
            return None
        counts = [pace.answered, pace.limited]
        pace.answered = pace.limited = 0
        return counts


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
        self._endpoints: dict[str, _Endpoint] = {}
        self._encoder = RecordEncoder()
        self._task: TaskInfo | None = None
        self._rows: dict[str, list[int]] = {}
        self._transport: asyncio.Transport | None = None
        self._replies: dict[int, asyncio.Future[_Reply]] = {}
        self._seq = 0
        self._batch: _Batch | None = None
        self._sending: _Batch | None = None
        self._flush_scheduled = False
        self.connected = False
        self._warned = False
        self._reported_loss = False
        self._next_attempt = 0.0
        self._backoff = RECONNECT_MIN_S
        self._connecting: asyncio.Task[bool] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._local: LocalGovernor | None = None
        self._local_writer: SpoolWriter | None = None
        self._local_begun: set[str] = set()
        self.fallbacks = 0
        """How many times this worker lost its coordinator (for tests and logs)."""

    # ---- Governor -------------------------------------------------------------------------------------------
    def limits(self, endpoint: Endpoint, share: float) -> EndpointLimits:
        entry = self._endpoint(endpoint, share)
        entry.limits.concurrency.maximum = endpoint.max_concurrency
        return entry.limits

    def _endpoint(self, endpoint: Endpoint, share: float) -> _Endpoint:
        key = _key(endpoint)
        entry = self._endpoints.get(key)
        if entry is None:
            entry = self._endpoints[key] = _Endpoint(endpoint, share, self, self._clock)
        return entry

    def admit(
        self, endpoint: Endpoint, calls: int, tokens: float, lookups: Sequence[str] | None
    ) -> asyncio.Future[Admission | None] | None:
        self._start_ticker()
        entry = self._endpoints[_key(endpoint)]
        entry.reported_idle = False
        if not self.connected and self._clock() < self._next_attempt:
            return None  # cut off: the static share applies until the ticker reconnects
        return asyncio.ensure_future(self._admit(entry, calls, tokens, lookups))

    async def _admit(
        self, entry: _Endpoint, calls: int, tokens: float, lookups: Sequence[str] | None
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
            # Shipped as it arrives, not at the end of the task: a worker lost now does not lose the answer.
            batch.answers.append(f"{fingerprint}\t{answer.encode()}\n")
            self._schedule_flush()
        else:
            batch.releases.append(fingerprint)

    def begin(self, record: UsageRecord) -> asyncio.Future[Any] | None:
        if self.journal is None:
            return None
        if not self.connected:
            self._local_journal().begin(record)
            self._local_begun.add(record.request_id)
            return None
        batch = self._next_batch()
        batch.begin_ids.append(record.request_id)
        batch.begin_heads.append(self._encoder.head(record))
        batch.tasks.append(record.task_attempt_id)
        self._schedule_flush()
        return batch.future

    def end(self, record: UsageRecord) -> None:
        self._count_request(record)
        if self.journal is None:
            return
        request_id = record.request_id
        if request_id in self._local_begun or not self.connected:
            self._local_begun.discard(request_id)
            self._local_journal().end(record)
            return
        batch = self._next_batch()
        batch.end_ids.append(request_id)
        batch.end_lines.append(self._encoder.line(record))

    def rows_done(self, answered: int, failed: int) -> None:
        counts = self._query_counts()
        counts[0] += answered
        counts[1] += failed

    def start_task(self, task: TaskInfo | None) -> None:
        self._task = task

    async def flush(self) -> None:
        """Deliver every record ended so far (to the driver, or to the local journal when cut off)."""
        if self.connected:
            batch = self._next_batch()
            batch.wanted = True
            self._schedule_flush()
            # On a timeout the reply timeout has moved the records to the local journal.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(batch.future), FLUSH_TIMEOUT_S)
        if self._local_writer is not None:
            self._local_writer.flush()

    async def aclose(self) -> None:
        await self.flush()
        if self._ticker is not None:
            self._ticker.cancel()
        if self._transport is not None:
            self._warned = True  # closing on purpose: nothing to warn about
            self.connected = False
            with contextlib.suppress(ConnectionError, asyncio.TimeoutError):
                await asyncio.wait_for(self._send({"op": "bye"}), 5.0)
            if self._transport is not None:
                self._transport.close()
        if self._local_writer is not None:
            self._local_writer.close()

    # ---- counters -------------------------------------------------------------------------------------------
    def _query_counts(self) -> list[int]:
        task = self._task
        query = task.query if task is not None and task.query else "unnamed"
        counts = self._rows.get(query)
        if counts is None:
            counts = self._rows[query] = [0] * len(COUNTERS)
        return counts

    def _count_request(self, record: UsageRecord) -> None:
        counts = self._query_counts()
        if record.cache_hit:
            counts[6] += 1
            return
        counts[2] += 1
        status = record.status_code
        if status is None or not 200 <= status < 300:
            counts[3] += 1
            if status == 429:
                counts[4] += 1
        if record.total_tokens:
            counts[5] += record.total_tokens

    # ---- syncs ----------------------------------------------------------------------------------------------
    def _next_batch(self) -> _Batch:
        batch = self._batch
        if batch is None:
            batch = self._batch = _Batch(asyncio.get_running_loop())
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
        meta: dict[str, Any] = {"op": "sync"}
        payload = b""
        if self.journal is not None and (batch.begin_ids or batch.end_ids):
            meta["j"] = self.journal
            if batch.begin_ids:
                meta["b"] = batch.begin_ids
                tasks = batch.tasks
                meta["t"] = tasks[0] if tasks.count(tasks[0]) == len(tasks) else tasks
            if batch.end_ids:
                meta["e"] = batch.end_ids
        begun = "\n".join(batch.begin_heads).encode()
        ended = "".join(batch.end_lines).encode()
        meta["bl"], meta["el"] = len(begun), len(ended)
        payload = begun + ended + "".join(batch.answers).encode()
        if self.store is not None and (batch.lookups or batch.answers or batch.releases or self._waits):
            meta["s"] = self.store
            if batch.lookups:
                meta["l"] = batch.lookups
            if self._waits:
                meta["w"] = list(self._waits)
            if batch.releases:
                meta["r"] = batch.releases
        demand: dict[str, list[float | None]] = {}
        seen: dict[str, list[int]] = {}
        for entry in self._endpoints.values():
            extra = batch.extra.get(entry.key)
            busy = entry.limits.active_calls > 0 or extra is not None
            if busy or not entry.reported_idle:
                demand[entry.key] = entry.demand(extra)
                entry.reported_idle = not busy
            counts = entry.seen()
            if counts is not None:
                seen[entry.key] = counts
        if self._local_writer is not None:
            meta["local"] = 1  # records wait in the local journal: the driver's flush waits for their delivery
        if demand:
            meta["demand"] = demand
        if seen:
            meta["seen"] = seen
        if self._rows:
            meta["rows"] = self._rows
            task = self._task
            if task is not None and task.query:
                meta["stage"] = {task.query: task.stage_id}
                if task.description:
                    meta["desc"] = {task.query: task.description}
            self._rows = {}
        future = self._send(meta, payload)
        future.add_done_callback(lambda done: self._synced(batch, done))

    def _synced(self, batch: _Batch, done: asyncio.Future[_Reply]) -> None:
        if self._sending is batch:
            self._sending = None
        if done.cancelled() or done.exception() is not None:
            if not batch.future.done():
                error = done.exception() if not done.cancelled() else None
                self._lose_connection(_describe(error) if error else "sync cancelled", batch)
            return
        reply = done.result()
        if "error" in reply.meta:
            # The driver refused the records (it has no such journal): keep them here rather than lose them.
            logger.warning("aiquery coordinator refused a sync: %s", reply.meta["error"])
            self._journal_locally(batch)
            return
        for key, lease in (reply.meta.get("lease") or {}).items():
            entry = self._endpoints.get(key)
            if entry is not None:
                entry.apply(lease)
        self._answer_waits(reply)
        if not batch.future.done():
            batch.future.set_result(reply)
        if self._batch:
            self._schedule_flush()

    def _answer_waits(self, reply: _Reply) -> None:
        # A call waiting for another worker's request gets its answer, or is told to send it itself (that worker
        # failed, or is gone).
        owned = set(reply.meta.get("own", ()))
        for key in list(self._waits):
            answer = reply.hits.get(key)
            if answer is not None or key in owned:
                future = self._waits.pop(key)
                if not future.done():
                    future.set_result(answer)

    def _send(self, meta: dict[str, Any], payload: bytes = b"") -> asyncio.Future[_Reply]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_Reply] = loop.create_future()
        transport = self._transport
        if transport is None or transport.is_closing():
            future.set_exception(ConnectionError("not connected"))
            return future
        self._seq += 1
        meta["seq"] = self._seq
        self._replies[self._seq] = future
        transport.write(encode_frame(meta, payload))
        handle = loop.call_later(REPLY_TIMEOUT_S, self._reply_timeout, self._seq)
        future.add_done_callback(lambda _: handle.cancel())
        return future

    def _reply_timeout(self, seq: int) -> None:
        future = self._replies.pop(seq, None)
        if future is not None and not future.done():
            future.set_exception(ConnectionError(f"no reply from the coordinator in {REPLY_TIMEOUT_S:g} s"))
            if self._transport is not None:
                self._transport.abort()

    # ---- connection -----------------------------------------------------------------------------------------
    async def _connect(self) -> bool:
        if self.connected:
            return True
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.ensure_future(self._open())
        return await asyncio.shield(self._connecting)

    async def _open(self) -> bool:
        loop = asyncio.get_running_loop()
        address = self.address
        hello: asyncio.Future[dict[str, Any]] = loop.create_future()
        try:
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
            if address.fingerprint and certificate_fingerprint(transport) != address.fingerprint:
                transport.abort()
                raise ConnectionError("the coordinator's TLS certificate is not the one in the query plan")
            reply = await asyncio.wait_for(hello, CONNECT_TIMEOUT_S)
            if not reply.get("ok"):
                transport.abort()
                raise ConnectionError(str(reply.get("error", "refused")))
        except (OSError, asyncio.TimeoutError, ConnectionError, ProtocolError) as error:
            self._lose_connection(f"cannot connect: {_describe(error)}", None)
            return False
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self.connected = True
        self._backoff = RECONNECT_MIN_S
        if self._reported_loss:
            logger.info("aiquery: reconnected to the coordinator at %s:%d", address.host, address.port)
        self._reported_loss = False
        self._warned = False
        return True

    def _received(self, meta: dict[str, Any], payload: bytes) -> None:
        if meta.get("op") == "closing":
            self._warned = True  # the application is ending: losing the connection now is no news
            return
        future = self._replies.pop(meta.get("re", -1), None)
        if future is not None and not future.done():
            future.set_result(_Reply(meta, payload))

    def _connection_closed(self, reason: str) -> None:
        self._transport = None
        replies, self._replies = self._replies, {}
        for future in replies.values():
            if not future.done():
                future.set_exception(ConnectionError(reason))
        if self.connected:
            self._lose_connection(reason, None)

    def _lose_connection(self, reason: str, batch: _Batch | None) -> None:
        """Fall back: static shares, local journal for what was unacknowledged and what comes next."""
        was_connected = self.connected
        self.connected = False
        if self._transport is not None:
            self._transport.abort()
            self._transport = None
        self._next_attempt = self._clock() + self._backoff
        self._backoff = min(RECONNECT_MAX_S, self._backoff * 2)
        for entry in self._endpoints.values():
            entry.static()
        for pending in (batch, self._sending, self._batch):
            if pending is not None and not pending.future.done():
                self._journal_locally(pending)
        waits, self._waits = self._waits, {}
        for future in waits.values():
            if not future.done():
                future.set_result(None)  # no store to wait on: send it
        self._sending = None
        self._batch = None
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

    def _journal_locally(self, batch: _Batch) -> None:
        """Put a batch the driver did not acknowledge into the local journal, then release its waiters."""
        if self.journal is not None and (batch.begin_ids or batch.end_ids):
            writer = self._local_journal()
            if batch.begin_ids:
                writer.begin_lines(batch.begin_ids, batch.begin_heads)
                self._local_begun.update(batch.begin_ids)
            if batch.end_ids:
                writer.end_lines(batch.end_ids, "".join(batch.end_lines).encode())
        if not batch.future.done():
            batch.future.set_result(_Reply({}))

    def _local_journal(self) -> SpoolWriter:
        if self._local_writer is None:
            self._local_writer = SpoolWriter(local_journal_dir(self.address.application))
        return self._local_writer

    # ---- the ticker: leases, late ends, reconnection, delivery ----------------------------------------------
    def _start_ticker(self) -> None:
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        last_delivery = 0.0
        while True:
            await asyncio.sleep(TICK_S)
            try:
                if not self.connected:
                    if self._clock() >= self._next_attempt and await self._connect():
                        last_delivery = self._clock()
                        await self._deliver_local()
                    continue
                busy = any(e.limits.active_calls or not e.reported_idle for e in self._endpoints.values())
                batch = self._batch
                if busy or self._rows or self._waits or (batch is not None and batch):
                    self._next_batch().wanted = True
                    self._schedule_flush()
                if self._local_writer is not None and self._clock() - last_delivery >= DELIVERY_INTERVAL_S:
                    last_delivery = self._clock()
                    await self._deliver_local()
            except Exception:  # the ticker must survive anything; it is how the worker finds its driver again
                logger.debug("coordinator ticker round failed", exc_info=True)

    async def _deliver_local(self) -> None:
        """Send what the local journal holds to the driver, file by file, deleting each once acknowledged."""
        writer = self._local_writer
        if writer is None or not self.connected or self.journal is None:
            return
        from aiquery.usage.recovery import recover_orphans

        writer.flush()
        spool = writer.spool_dir
        recover_orphans(spool, wait=False)
        for path in sorted(spool.glob("usage-*.json")):
            data = path.read_bytes()
            lines = data.splitlines(keepends=True)
            for start in range(0, len(lines), 2000):
                part = lines[start : start + 2000]
                ids = [_request_id(line) for line in part]
                meta = {"op": "sync", "j": self.journal, "bl": 0, "el": sum(map(len, part)), "e": ids, "local": 1}
                reply = await self._send(meta, b"".join(part))
                if "error" in reply.meta:
                    logger.warning("aiquery coordinator refused delivered records: %s", reply.meta["error"])
                    return
            path.unlink()
        if not writer.in_flight and not any(spool.glob("usage-*.json")):
            writer.close()
            self._local_writer = None
            self._next_batch().wanted = True  # tell the driver nothing waits here any more
            self._schedule_flush()


def _key(endpoint: Endpoint) -> str:
    # The coordinator keeps one budget per endpoint and configuration: two queries with the same share it.
    return "\x00".join(str(part) for part in limits_key(endpoint))


def _request_id(line: bytes) -> str:
    return str(json.loads(line)["request_id"])


def _describe(error: BaseException) -> str:
    if isinstance(error, asyncio.TimeoutError):
        return "timed out"
    text = str(error) or type(error).__name__
    return text


class _ClientProtocol(asyncio.Protocol):
    def __init__(self, client: CoordinatorClient, hello: asyncio.Future[dict[str, Any]]) -> None:
        self.client = client
        self.hello = hello
        self.reader = FrameReader()
        self.transport: asyncio.Transport | None = None
        self.ready = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        try:
            for meta, payload in self.reader.feed(data):
                if not self.ready:
                    self._handshake(meta)
                else:
                    self.client._received(meta, payload)
        except ProtocolError as error:
            self.transport.abort()
            if not self.hello.done():
                self.hello.set_exception(error)

    def _handshake(self, meta: dict[str, Any]) -> None:
        assert self.transport is not None
        if meta.get("op") == "challenge":
            nonce = bytes.fromhex(str(meta.get("nonce", "")))
            proof = prove(self.client.address.secret, nonce)
            self.transport.write(encode_frame({"op": "hello", "proof": proof, "worker": self.client.worker_id}))
            return
        self.ready = bool(meta.get("ok"))
        if not self.hello.done():
            self.hello.set_result(meta)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.hello.done():
            self.hello.set_exception(ConnectionError(_describe(exc) if exc else "connection closed"))
        if self.ready:
            self.client._connection_closed(_describe(exc) if exc else "connection closed by the coordinator")
