"""The collect pass's sink: requests handed over by the coordinator, written to the run's state off its loop.

The coordinator calls the sink on its event-loop thread, which must not wait for a disk: the sink only queues
what it is given, and a thread of its own writes it to the state (one transaction per delivery, duplicates ignored
by fingerprint). :meth:`CollectSink.close` waits until everything queued is written and says how many requests
were new.
"""

from __future__ import annotations

import json
import queue
import threading
from typing import Any

from aiquery.provider_batches.run_state import RunState

__all__ = ["CollectSink"]

_DONE = None
MAX_MERGED = 64
"""Deliveries written in one transaction at most."""
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
        self._queue: queue.SimpleQueue[tuple[str, list[tuple[str, dict[str, Any]]]] | None] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._write, name="aiquery-batch-collect", daemon=True)
        self._thread.start()

    def __call__(self, endpoint: str, found: list[tuple[str, dict[str, Any]]]) -> None:
        """Take one delivery (the coordinator's sink signature); returns at once."""
        self._queue.put((endpoint, found))

    def _write(self) -> None:
        done = False
        while not done:
            # Everything queued by now goes in one transaction per endpoint: deliveries are small and many.
            items = [self._queue.get()]
            while not self._queue.empty() and len(items) < MAX_MERGED:
                items.append(self._queue.get())
            done = _DONE in items
            by_endpoint: dict[str, list[tuple[str, str]]] = {}
            for item in items:
                if item is not _DONE:
                    rows = by_endpoint.setdefault(item[0], [])
                    rows.extend((fingerprint, _encode(request)) for fingerprint, request in item[1])
            if self._error is not None:
                continue
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
