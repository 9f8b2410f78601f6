"""The usage ledger: one record per HTTP request, journaled by workers, ingested into Delta exactly once.

- :mod:`aiquery.usage.record`: the record and the sink protocol the engine calls;
- :mod:`aiquery.usage.spool`: the sink used in Spark workers (journal files, rotation into the spool);
- :mod:`aiquery.usage.recovery`: journals of dead workers turned into spool files;
- :mod:`aiquery.usage.ingest`: spool files into the Delta table (``UsageLedger``; a registered session's ledger is
  :func:`aiquery.spark.registry.ledger_for`, flushed by :func:`aiquery.flush_usage`);
- :mod:`aiquery.usage.schema`: the table's columns, defined once;
- :mod:`aiquery.usage.dashboard`: the HTML dashboard over ``sql/dashboard``.

Nothing here imports pyspark at import time, so workers and the engine load it without a JVM.
"""

from __future__ import annotations

from aiquery.usage.ingest import UsageLedger
from aiquery.usage.record import MemorySink, UsageRecord, UsageSink
from aiquery.usage.recovery import recover_orphans
from aiquery.usage.spool import SpoolWriter, spool_writer

__all__ = [
    "MemorySink",
    "SpoolWriter",
    "UsageLedger",
    "UsageRecord",
    "UsageSink",
    "recover_orphans",
    "spool_writer",
]
