"""aiquery: Databricks' ai_query for any Apache Spark.

>>> import aiquery
>>> aiquery.register(spark)
>>> spark.sql("SELECT ai_query('my-chat', 'Summarize: ' || text) AS s FROM docs")
>>> aiquery.flush_usage(spark)
"""

from __future__ import annotations

import importlib
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

    from aiquery.jobs.estimate import JobEstimate
    from aiquery.spark.coordination import progress
    from aiquery.spark.flush import flush_usage
    from aiquery.spark.registry import register

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

_SPARK_NAMES = {
    "flush_usage": "aiquery.spark.flush",
    "progress": "aiquery.spark.coordination",
    "register": "aiquery.spark.registry",
}
"""Public names defined in the Spark layer, imported on first use: ``import aiquery`` stays light (no coordinator,
no aiohttp) for a Spark Connect client and for code that only reads the configuration or the errors."""


def __getattr__(name: str) -> Any:
    module = _SPARK_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'aiquery' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


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
