"""Ingestion after each query on a Spark Connect server, whose clients have no driver to call ``flush_usage`` on.

The ledger's background thread ingests every ``[usage] ingest_interval`` seconds (:mod:`aiquery.usage.ingest`).
Besides, :class:`SpoolWatch` looks at the journal folder every ``POLL_S`` seconds: once records have arrived and
none for a poll (the query that made them has ended, or paused), it ingests them. Looking costs a directory listing,
no JVM call, so a server without ai_query traffic does nothing.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING

from aiquery.spark.registry import ledger_for
from aiquery.usage.ingest import UsageLedger

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["POLL_S", "SpoolWatch"]

logger = logging.getLogger("aiquery.connect")

POLL_S = 2.0

Signature = tuple[tuple[str, int], ...]


class SpoolWatch:
    """A thread that ingests the ledger when its journal has grown and then stayed still for a poll."""

    def __init__(self, ledger: UsageLedger, poll_s: float = POLL_S) -> None:
        self.ledger = ledger
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="aiquery-connect-ingest", daemon=True)

    @classmethod
    def start_for(cls, spark: SparkSession) -> SpoolWatch | None:
        """Watch the ledger of the registered ``spark``; None when its ledger is off."""
        ledger = ledger_for(spark)
        if ledger is None:
            return None
        watch = cls(ledger)
        watch._thread.start()
        return watch

    def stop(self) -> None:
        """Stop watching, waiting for an ingestion in progress."""
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        settled = seen = self._signature()
        while not self._stop.wait(self.poll_s):
            current = self._signature()
            if current != settled and current == seen:
                try:
                    self.ledger.ingest()
                except Exception:  # the records wait in the journal for the next try
                    logger.exception("usage ingestion after a query failed")
                current = self._signature()
                settled = current
            seen = current

    def _signature(self) -> Signature:
        """The journal's files and their sizes: it changes whenever a record is written."""
        found: list[tuple[str, int]] = []
        for root, _, files in os.walk(self.ledger.spool_dir):
            for name in files:
                path = os.path.join(root, name)
                try:
                    found.append((path, os.stat(path).st_size))
                except OSError:  # renamed or removed by a rotation meanwhile
                    continue
        return tuple(sorted(found))
