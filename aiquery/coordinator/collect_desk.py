"""The driver's side of batch mode's collect pass: workers' collected requests to each run's collector, and the
rows each run's calls saw.

A worker's sync carries what its chunks collected (see :mod:`.collect_queue`): per chunk, lines
``<fingerprint>\t<request as JSON>`` and counts. :class:`CollectDesk` hands the requests to the collector set for
their run, grouped by endpoint, on the coordinator's loop, and adds up the counts. The same fingerprint may arrive
more than once (two tasks, or two statements, with the same request): the collector dedupes. Requests of a run
without a collector are counted as misses and logged; nothing else can take them. A collector set ``raw`` gets
each request as its JSON text, as it arrived (parsing 200,000 of them on the loop took most of a collect pass's
time on the driver; a collector that writes them to disk has no use for the dict).

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

Collector = Callable[[str, list[tuple[str, Any]]], None]
"""``collector(endpoint_name, [(fingerprint, request), ...])``, called on the coordinator's loop; ``request`` is
the :func:`~aiquery.apis.request_json.request_to_json` dict (or its JSON text, for a collector set ``raw``)."""


class CollectDesk:
    """Collectors by run, and each run's row counts by endpoint. Used on the coordinator's loop."""

    def __init__(self) -> None:
        self._collectors: dict[str, tuple[Collector, bool]] = {}
        self._counts: dict[str, dict[str, list[int]]] = {}
        self._unclaimed: set[str] = set()

    def set_collector(self, run: str, collector: Collector | None, *, raw: bool = False) -> None:
        """Hand ``run``'s collected requests to ``collector`` from now on (None: to nobody); ``raw``: as JSON text."""
        if collector is None:
            self._collectors.pop(run, None)
        else:
            self._collectors[run] = (collector, raw)

    def counts(self, run: str) -> dict[str, CollectCounts]:
        """``run``'s rows per endpoint so far."""
        return {endpoint: CollectCounts(*numbers) for endpoint, numbers in self._counts.get(run, {}).items()}

    def receive(self, parts: Any, lines: bytes) -> str | None:
        """Apply one sync's collected parts; why they cannot be taken (the sync is refused), else None.

        Raises:
            ProtocolError: the parts are malformed.
        """
        counts, groups = _split(parts, lines)
        for (run, endpoint), chunks in groups.items():
            entry = self._collectors.get(run)
            if entry is None:
                if run not in self._unclaimed:
                    self._unclaimed.add(run)
                    logger.warning("aiquery: requests collected for batch run %r, which has no collector", run)
                continue
            collector, raw = entry
            requests = _requests(b"".join(chunks), raw)
            try:
                collector(endpoint, requests)
            except Exception as error:  # the collector is the caller's code: its failure fails the task, said so
                logger.warning("aiquery: the collector of batch run %r failed", run, exc_info=True)
                return f"the collector of batch run {run!r} failed: {type(error).__name__}: {error}"[:500]
        for (run, endpoint), numbers in counts.items():
            total = self._counts.setdefault(run, {}).setdefault(endpoint, [0, 0, 0, 0])
            for index, number in enumerate(numbers):
                total[index] += number
        return None


def _split(parts: Any, lines: bytes) -> tuple[dict[tuple[str, str], list[int]], dict[tuple[str, str], list[bytes]]]:
    """A sync's parts: the counts, and the lines, by (run, endpoint)."""
    counts: dict[tuple[str, str], list[int]] = {}
    groups: dict[tuple[str, str], list[bytes]] = {}
    offset = 0
    for part in parts if isinstance(parts, list) else ():
        if not isinstance(part, list) or len(part) != 7 or not all(isinstance(item, str) for item in part[:2]):
            raise ProtocolError("malformed collected part")
        key, numbers, length = (part[0], part[1]), [int(number) for number in part[2:6]], int(part[6])
        total = counts.setdefault(key, [0, 0, 0, 0])
        for index, number in enumerate(numbers):
            total[index] += number
        if length:
            groups.setdefault(key, []).append(lines[offset : offset + length])
        offset += length
    if offset != len(lines):
        raise ProtocolError("collected lines do not match their parts")
    return counts, groups


def _requests(lines: bytes, raw: bool) -> list[tuple[str, Any]]:
    """(fingerprint, request) of each ``<fingerprint>\t<JSON>`` line; the requests decoded unless ``raw``."""
    fingerprints: list[str] = []
    texts: list[bytes] = []
    for line in lines.splitlines():
        fingerprint, tab, text = line.partition(b"\t")
        if not tab:
            raise ProtocolError("malformed collected request")
        fingerprints.append(fingerprint.decode("ascii", "replace"))
        texts.append(text)
    if raw:
        return list(zip(fingerprints, (text.decode() for text in texts), strict=True))
    try:
        # One array, decoded at once: a third faster than line by line.
        requests = json.loads(b"[" + b",".join(texts) + b"]")
    except ValueError:
        raise ProtocolError("malformed collected request") from None
    return list(zip(fingerprints, requests, strict=True))
