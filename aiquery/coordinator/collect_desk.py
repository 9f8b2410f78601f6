"""The driver's side of batch mode's collect pass: workers' collected requests to each run's collector, and the
rows each run's calls saw.

A worker's sync carries what its chunks collected (see :mod:`.collect_queue`): JSON lines
``[run, endpoint, fingerprint, request]`` and per-chunk counts. :class:`CollectDesk` hands the lines to the
collector set for their run, grouped by endpoint, on the coordinator's loop, and adds up the counts. The same
fingerprint may arrive more than once (two tasks, or two statements, with the same request): the collector
dedupes. Lines of a run without a collector are counted as misses and logged; nothing else can take them.

Rows are counted as the workers evaluate them: a plan that evaluates a call twice (the sampling job of a global
sort over a call's result, say) counts its rows twice; the requests it collects twice are the same ones.

A collector that raises refuses the whole sync (nothing of it applied): the worker's task fails, saying why,
rather than lose requests.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from aiquery.coordinator.protocol import ProtocolError
from aiquery.engine.governor import CollectCounts

__all__ = ["CollectDesk", "Collector"]

logger = logging.getLogger("aiquery.coordinator")

Collector = Callable[[str, list[tuple[str, dict[str, Any]]]], None]
"""``collector(endpoint_name, [(fingerprint, request_json), ...])``, called on the coordinator's loop."""


class CollectDesk:
    """Collectors by run, and each run's row counts by endpoint. Used on the coordinator's loop."""

    def __init__(self) -> None:
        self._collectors: dict[str, Collector] = {}
        self._counts: dict[str, dict[str, list[int]]] = {}
        self._unclaimed: set[str] = set()

    def set_collector(self, run: str, collector: Collector | None) -> None:
        """Hand ``run``'s collected requests to ``collector`` from now on (None: to nobody)."""
        if collector is None:
            self._collectors.pop(run, None)
        else:
            self._collectors[run] = collector

    def counts(self, run: str) -> dict[str, CollectCounts]:
        """``run``'s rows per endpoint so far."""
        return {endpoint: CollectCounts(*numbers) for endpoint, numbers in self._counts.get(run, {}).items()}

    def receive(self, counts: Any, lines: bytes) -> str | None:
        """Apply one sync's collected part; why it cannot be taken (the sync is refused), else None.

        Raises:
            ProtocolError: the part is malformed.
        """
        groups = _grouped(lines)
        for (run, endpoint), requests in groups.items():
            collector = self._collectors.get(run)
            if collector is None:
                if run not in self._unclaimed:
                    self._unclaimed.add(run)
                    logger.warning("aiquery: requests collected for batch run %r, which has no collector", run)
                continue
            try:
                collector(endpoint, requests)
            except Exception as error:  # the collector is the caller's code: its failure fails the task, said so
                logger.warning("aiquery: the collector of batch run %r failed", run, exc_info=True)
                return f"the collector of batch run {run!r} failed: {type(error).__name__}: {error}"[:500]
        for entry in counts or ():
            if not isinstance(entry, list) or len(entry) != 6:
                raise ProtocolError("malformed collect counts")
            run, endpoint, *numbers = entry
            total = self._counts.setdefault(str(run), {}).setdefault(str(endpoint), [0, 0, 0, 0])
            for index, number in enumerate(numbers):
                total[index] += int(number)
        return None


def _grouped(lines: bytes) -> dict[tuple[str, str], list[tuple[str, dict[str, Any]]]]:
    """The collected lines by (run, endpoint), in arrival order."""
    groups: dict[tuple[str, str], list[tuple[str, dict[str, Any]]]] = {}
    for line in lines.splitlines():
        try:
            run, endpoint, fingerprint, request = json.loads(line)
        except (ValueError, TypeError):
            raise ProtocolError("malformed collected request") from None
        if not (isinstance(run, str) and isinstance(endpoint, str) and isinstance(fingerprint, str)):
            raise ProtocolError("malformed collected request")
        groups.setdefault((run, endpoint), []).append((fingerprint, request))
    return groups
