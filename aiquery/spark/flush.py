"""``flush_usage(spark)``: every request made so far written to the Delta usage table."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiquery.spark.coordination import running_coordinator
from aiquery.spark.registry import ledger_for

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["SETTLE_S", "flush_usage"]

SETTLE_S = 15.0
"""How long :func:`flush_usage` waits for requests begun by workers that are gone to be closed or delivered."""


def flush_usage(spark: SparkSession) -> int:
    """Return once every request made so far is in the Delta usage table; the number of rows added.

    Requests begun by a worker that died (its task failed) are closed as lost first; a worker cut off from the
    driver delivers its records when it reconnects, and this waits up to ``SETTLE_S`` seconds for that.
    """
    ledger: Any = ledger_for(spark)
    if ledger is None:
        return 0
    coordinator = running_coordinator(spark)
    if coordinator is not None:
        coordinator.settle(SETTLE_S)
    added: int = ledger.ingest()
    return added
