"""A worker's syncs with the driver: the batch being filled, the one in flight, and the connection they travel on.

Everything travels in *syncs* (see :mod:`.protocol`), one in flight at a time; whatever piles up meanwhile joins
the next one, so a slow coordinator makes a worker wait rather than buffer. :class:`SyncChannel` keeps the two
batches, sends the next once the last is answered, and keeps the connection (:class:`~.link.Link`): it connects
on demand and, when the connection is lost or cannot be made, falls back (one warning) and lets the next attempt
wait a backoff that grows from :data:`RECONNECT_MIN_S` to :data:`RECONNECT_MAX_S`.

What a sync carries and what its reply or a loss means belong to the client
(:class:`~aiquery.coordinator.client.CoordinatorClient`), which the channel calls back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiquery.coordinator.link import Batch, Link, Reply, describe
from aiquery.coordinator.local_journal import local_journal_dir
from aiquery.coordinator.protocol import CoordinatorAddress, ProtocolError

__all__ = ["RECONNECT_MAX_S", "RECONNECT_MIN_S", "SyncChannel"]

logger = logging.getLogger("aiquery.coordinator")

RECONNECT_MIN_S = 0.25
RECONNECT_MAX_S = 2.0

Compose = Callable[[Batch], tuple[dict, bytes]]
"""Turns a batch into the sync's metadata and payload, just before it is sent."""
Replied = Callable[[Batch, "Reply | None"], None]
"""Takes a sync's reply (None: none came, and the connection is being given up)."""
CutOff = Callable[[list[Batch]], None]
"""Takes the batches left unacknowledged when the connection is lost or cannot be made."""


class SyncChannel:
    """The worker's syncs and its connection to the coordinator. Used on the engine's event loop.

    Args:
        address: the coordinator's address and secret (from the query plan).
        worker_id: how this worker introduces itself.
        clock: monotonic seconds.
        compose: see :data:`Compose`.
        replied: see :data:`Replied`.
        cut_off: see :data:`CutOff`.
    """

    def __init__(
        self,
        address: CoordinatorAddress,
        worker_id: str,
        clock: Callable[[], float],
        *,
        compose: Compose,
        replied: Replied,
        cut_off: CutOff,
    ) -> None:
        self.address = address
        self._clock = clock
        self._compose = compose
        self._replied = replied
        self._cut_off = cut_off
        self.link = Link(address, worker_id, self._closing, self._connection_closed)
        self.batch: Batch | None = None
        """What the next sync carries."""
        self.sending: Batch | None = None
        """The sync in flight, until its reply comes."""
        self._flush_scheduled = False
        self.connected = False
        self._warned = False
        self._reported_loss = False
        self._next_attempt = 0.0
        self._backoff = RECONNECT_MIN_S
        self._connecting: asyncio.Task[bool] | None = None
        self.fallbacks = 0
        """How many times this worker lost its coordinator (for tests and logs)."""

    @property
    def pending(self) -> bool:
        """Whether a sync waits to be sent or for its reply."""
        return bool(self.batch) or bool(self.sending)

    def may_reconnect(self) -> bool:
        """Whether the backoff since the last failed attempt has passed."""
        return self._clock() >= self._next_attempt

    def next_batch(self) -> Batch:
        batch = self.batch
        if batch is None:
            batch = self.batch = Batch(asyncio.get_running_loop())
        return batch

    def want_sync(self) -> Batch:
        """Send a sync soon even if it carries no record (to renew leases, report progress, ask for answers)."""
        batch = self.next_batch()
        batch.wanted = True
        self.schedule()
        return batch

    def schedule(self) -> None:
        """Send the next batch in this turn of the loop, unless a sync is in flight (its reply sends it)."""
        if not self._flush_scheduled and self.sending is None:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        batch = self.batch
        if self.sending is not None or batch is None or not batch or not self.connected:
            return
        self.batch = None
        self.sending = batch
        meta, payload = self._compose(batch)
        self.link.send(meta, payload, lambda done: self._synced(batch, done))

    def _synced(self, batch: Batch, done: asyncio.Future[Reply]) -> None:
        if self.sending is batch:
            self.sending = None
        if done.cancelled() or done.exception() is not None:
            self._replied(batch, None)
            if not batch.future.done():
                error = done.exception() if not done.cancelled() else None
                self.lose(describe(error) if error else "sync cancelled", batch)
            return
        reply = done.result()
        self._replied(batch, reply)
        if "error" not in reply.meta and self.batch:
            self.schedule()

    # ---- the connection -------------------------------------------------------------------------------------
    async def connect(self) -> bool:
        """Connect unless connected (one attempt at a time); whether connected now."""
        if self.connected:
            return True
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.ensure_future(self._open())
        return await asyncio.shield(self._connecting)

    async def _open(self) -> bool:
        address = self.address
        try:
            await self.link.open()
        except (OSError, asyncio.TimeoutError, ConnectionError, ProtocolError) as error:
            self.lose(f"cannot connect: {describe(error)}", None)
            return False
        self.connected = True
        self._backoff = RECONNECT_MIN_S
        if self._reported_loss:
            logger.info("aiquery: reconnected to the coordinator at %s:%d", address.host, address.port)
        self._reported_loss = False
        self._warned = False
        return True

    async def close(self) -> None:
        """Say goodbye and close the connection, if there is one."""
        if self.link.transport is not None:
            self._warned = True  # closing on purpose: nothing to warn about
            self.connected = False
            await self.link.close()

    def _closing(self) -> None:
        self._warned = True  # the application is ending: losing the connection now is no news

    def _connection_closed(self, reason: str) -> None:
        if self.connected:
            self.lose(reason, None)

    def lose(self, reason: str, batch: Batch | None) -> None:
        """Fall back: the client journals what was unacknowledged locally; the next attempt waits a backoff."""
        was_connected = self.connected
        self.connected = False
        self.link.abort()
        self._next_attempt = self._clock() + self._backoff
        self._backoff = min(RECONNECT_MAX_S, self._backoff * 2)
        self._cut_off([pending for pending in (batch, self.sending, self.batch) if pending is not None])
        self.sending = None
        self.batch = None
        if not self._warned:
            self._warn(reason, was_connected)

    def _warn(self, reason: str, was_connected: bool) -> None:
        self._warned = True
        self.fallbacks += 1
        self._reported_loss = True
        address = self.address
        logger.warning(
            "aiquery: %s the coordinator at %s:%d (%s); this worker uses a static 1/%d share of any budget and "
            "journals usage in %s until it can deliver it",
            "lost" if was_connected else "cannot reach",
            address.host,
            address.port,
            reason,
            max(1, address.parallelism),
            local_journal_dir(address.application),
        )
