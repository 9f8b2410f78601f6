"""The collect pass's sink: requests handed over by the coordinator, written to the run's state off its loop.

The coordinator calls the sink on its event-loop thread, which must not wait for a disk: the sink only queues
what it is given, and a thread of its own writes it to the state (one transaction per delivery, duplicates ignored
by fingerprint). Set it on the coordinator with ``raw=True``: the requests then arrive as the JSON text the
workers made and are written as they are (decoding 200,000 of them on the driver and encoding them again took
most of a collect pass's driver time). :meth:`CollectSink.close` waits until everything queued is written and
says how many requests were new.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from typing import Any

from aiquery.provider_batches.run_state import RunState

__all__ = ["CollectSink"]

_DONE = None
MERGE_S = 0.5
MERGE_ROWS = 20_000
"""Requests written in one transaction at most (a few MB of request JSON held meanwhile)."""
_encode = json.JSONEncoder(separators=(",", ":")).encode


class CollectSink:
    """Queues collected requests and writes them to ``state`` from a thread of its own.

    Args:
        state: the run's state.
        round_number: the round the requests are collected in.
    """

    def __init__(self, state: RunState, round_number: int) -> None:
        self.state = state
        self.round_number = round_number
        self.new = 0
        self._queue: queue.SimpleQueue[tuple[str, list[tuple[str, Any]]] | None] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._write, name="aiquery-batch-collect", daemon=True)
        self._thread.start()

    def __call__(self, endpoint: str, found: list[tuple[str, Any]]) -> None:
        """Take one delivery (the coordinator's sink signature); returns at once."""
        self._queue.put((endpoint, found))

    def _write(self) -> None:
        done = False
        while not done:
            # Deliveries are small and many, and a transaction costs milliseconds: write what arrives within
            # MERGE_S of the first one (up to MERGE_ROWS requests) in one transaction per endpoint.
            items = [self._queue.get()]
            rows_seen = len(items[0][1]) if items[0] is not _DONE else 0
            until = time.monotonic() + MERGE_S
            while items[-1] is not _DONE and rows_seen < MERGE_ROWS and (wait := until - time.monotonic()) > 0:
                try:
                    items.append(self._queue.get(timeout=wait))
                except queue.Empty:
                    break
                rows_seen += len(items[-1][1]) if items[-1] is not _DONE else 0
            done = items[-1] is _DONE
            self._keep(items)

    def _keep(self, items: list[tuple[str, list[tuple[str, Any]]] | None]) -> None:
        by_endpoint: dict[str, list[tuple[str, str]]] = {}
        for item in items:
            if item is not _DONE:
                by_endpoint.setdefault(item[0], []).extend(
                    (key, request if isinstance(request, str) else _encode(request)) for key, request in item[1]
                )
        if self._error is not None:
            return
        try:
            for endpoint, rows in by_endpoint.items():
                self.new += self.state.add_requests(endpoint, rows, self.round_number)
        except BaseException as error:  # kept for close(): a request must never be dropped silently
            self._error = error

    def close(self) -> int:
        """Write everything queued; how many requests were new to the state.

        Raises:
            Exception: a write failed (the collect pass must not go on without what it collected).
        """
        self._queue.put(_DONE)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.new
