"""A worker's collected requests (batch mode's collect pass) on their way to the driver, a bounded part per sync.

Each chunk's store misses become lines ``<fingerprint>\t<request as JSON>`` and its row counts one entry; they
wait here until a sync carries them, and the chunk waits on a future that is done once the driver
acknowledged that sync. One sync carries at most :data:`COLLECT_SYNC_BYTES` of lines (a single larger request
alone), so a task with many chunks in flight never builds a frame past the protocol's limit; what is left goes
with the next sync, which the reply asks for at once.

Delivery is all or nothing for a task: when the driver cannot be reached, or refuses a sync, every future still
waiting fails with :class:`~aiquery.errors.BatchCollectionLost`, and so does the task (a request dropped silently
would never be batched, and its row would be paid live later, or not at all).

On the wire the lines follow the sync's other payload, their length in ``cl``; ``cc`` describes them part by part,
in order: ``[[run, endpoint, rows, hits, misses, skipped, bytes of lines], ...]`` (a chunk's counts in its first
part, zeros in the others).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiquery.engine.governor import CollectCounts
from aiquery.errors import BatchCollectionLost

__all__ = ["COLLECT_SYNC_BYTES", "CollectQueue", "CollectedPart"]

COLLECT_SYNC_BYTES = 4 << 20
"""Bytes of collected requests one sync carries at most (unless one request alone is larger)."""


@dataclass(slots=True)
class CollectedPart:
    """Some of one chunk's collected lines (and, in its first part, the chunk's counts), and who waits for them."""

    lines: bytes
    counts: list[Any]
    """``[run, endpoint, rows, hits, misses, skipped]``."""
    future: asyncio.Future[None]


@dataclass(slots=True)
class CollectQueue:
    """Collected parts not yet acknowledged. Used on the worker's engine loop."""

    waiting: deque[CollectedPart] = field(default_factory=deque)

    def __bool__(self) -> bool:
        return bool(self.waiting)

    def add(
        self, run: str, endpoint: str, counts: CollectCounts, requests: Sequence[tuple[str, str]]
    ) -> list[asyncio.Future[None]]:
        """Queue one chunk's counts and requests (fingerprint, request as JSON text); the futures of its parts."""
        loop = asyncio.get_running_loop()
        parts: list[CollectedPart] = []
        lines: list[bytes] = []
        size = 0
        for fingerprint, request in requests:
            line = f"{fingerprint}\t{request}\n".encode()
            if lines and size + len(line) > COLLECT_SYNC_BYTES:
                parts.append(CollectedPart(b"".join(lines), [run, endpoint, 0, 0, 0, 0], loop.create_future()))
                lines, size = [], 0
            lines.append(line)
            size += len(line)
        if lines or not parts:
            parts.append(CollectedPart(b"".join(lines), [run, endpoint, 0, 0, 0, 0], loop.create_future()))
        parts[0].counts = [run, endpoint, *counts.wire()]
        self.waiting.extend(parts)
        return [part.future for part in parts]

    def take(self) -> list[CollectedPart]:
        """The parts the next sync carries: at most :data:`COLLECT_SYNC_BYTES` of lines (at least one part)."""
        taken: list[CollectedPart] = []
        size = 0
        while self.waiting and (not taken or size + len(self.waiting[0].lines) <= COLLECT_SYNC_BYTES):
            part = self.waiting.popleft()
            taken.append(part)
            size += len(part.lines)
        return taken

    @staticmethod
    def encode(parts: Sequence[CollectedPart], meta: dict[str, Any]) -> bytes:
        """The parts' payload, their length and counts put in ``meta``."""
        payload = b"".join(part.lines for part in parts)
        meta["cl"] = len(payload)
        meta["cc"] = [[*part.counts, len(part.lines)] for part in parts]
        return payload

    @staticmethod
    def delivered(parts: Sequence[CollectedPart]) -> None:
        for part in parts:
            if not part.future.done():
                part.future.set_result(None)

    def lost(self, parts: Sequence[CollectedPart], reason: str) -> None:
        """``parts`` (a sync's) and every part still waiting cannot be delivered: their chunks fail."""
        everything = [*parts, *self.waiting]
        self.waiting.clear()
        for part in everything:
            if not part.future.done():
                part.future.set_exception(
                    BatchCollectionLost(
                        f"batch collect: requests collected for a provider batch could not be handed to the "
                        f"driver ({reason}); the task fails rather than lose them"
                    )
                )
