"""aiquery: Databricks' ai_query for any Apache Spark.

>>> import aiquery
>>> aiquery.register(spark)
>>> spark.sql("SELECT ai_query('my-chat', 'Summarize: ' || text) AS s FROM docs")
>>> aiquery.flush_usage(spark)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# Imported for its registrations: configuration checks an endpoint's `api` against the wire formats it registers.
import aiquery.apis  # noqa: F401
from aiquery.config import Endpoint, Settings, UsageSettings, load_settings
from aiquery.errors import (
    AIQueryError,
    ArgumentError,
    CallError,
    ConfigError,
)
from aiquery.version import __version__

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from aiquery.coordinator.progress import QueryProgress
    from aiquery.jobs.estimate import JobEstimate

__all__ = [
    "AIQueryError",
    "ArgumentError",
    "CallError",
    "ConfigError",
    "Endpoint",
    "Settings",
    "UsageSettings",
    "__version__",
    "estimate",
    "flush_usage",
    "load_settings",
    "progress",
    "register",
]


def register(spark: SparkSession, *, settings: Settings | None = None) -> None:
    """Register ``ai_query`` in ``spark`` (see :func:`aiquery.spark.registry.register`)."""
    from aiquery.spark.registry import register as _register

    _register(spark, settings=settings)


SETTLE_S = 15.0
"""How long :func:`flush_usage` waits for requests begun by workers that are gone to be closed or delivered."""


def flush_usage(spark: SparkSession) -> int:
    """Return once every request made so far is in the Delta usage table; the number of rows added.

    Requests begun by a worker that died (its task failed) are closed as lost first; a worker cut off from the
    driver delivers its records when it reconnects, and this waits up to ``SETTLE_S`` seconds for that.
    """
    from aiquery.spark.coordination import running_coordinator
    from aiquery.spark.registry import ledger_for

    ledger: Any = ledger_for(spark)
    if ledger is None:
        return 0
    coordinator = running_coordinator(spark)
    if coordinator is not None:
        coordinator.settle(SETTLE_S)
    added: int = ledger.ingest()
    return added


def progress(spark: SparkSession) -> list[QueryProgress]:
    """Where each recent ``ai_query`` query of ``spark``'s application stands (see :class:`QueryProgress`).

    Rows answered and failed, requests and their rate, the share answered 429, tokens, and the ETA from Spark's
    task counts, per query (its query tag, or its SQL execution id), the most recently active first.
    """
    from aiquery.spark.progress import progress as _progress

    return _progress(spark)


def estimate(
    spark: SparkSession,
    query: str,
    *,
    fraction: float = 0.01,
    min_rows: int = 100,
    variables: dict[str, str] | None = None,
) -> JobEstimate:
    """Estimate what ``query`` (one SQL statement, or several separated by ``;``) will send and cost.

    Every ``ai_query`` call gets the rows the real run would give it and sends a deterministic sample of them
    (``fraction`` of the rows, at least ``min_rows`` per call); the rest are only counted. The user's tables are
    not written (see :mod:`aiquery.jobs.estimate`). ``print(aiquery.estimate(spark, sql).format())`` shows it.

    Raises:
        aiquery.jobs.estimate.EstimateError: a statement failed, or the usage ledger is off.
    """
    from aiquery.jobs.estimate import estimate_statements
    from aiquery.jobs.script import prepare_job

    return estimate_statements(spark, prepare_job(query, variables or {}), fraction=fraction, min_rows=min_rows)
