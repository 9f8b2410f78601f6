"""aiquery: Databricks' ai_query for any Apache Spark.

>>> import aiquery
>>> aiquery.register(spark)
>>> spark.sql("SELECT ai_query('my-chat', 'Summarize: ' || text) AS s FROM docs")
>>> aiquery.flush_usage(spark)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiquery.config import Endpoint, Settings, UsageSettings, load_settings
from aiquery.errors import (
    AIQueryError,
    ArgumentError,
    CallError,
    ConfigError,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__version__ = "0.1.0"

__all__ = [
    "AIQueryError",
    "ArgumentError",
    "CallError",
    "ConfigError",
    "Endpoint",
    "Settings",
    "UsageSettings",
    "__version__",
    "flush_usage",
    "load_settings",
    "register",
]


def register(spark: SparkSession, *, settings: Settings | None = None) -> None:
    """Register ``ai_query`` in ``spark`` (see :func:`aiquery.spark.registry.register`)."""
    from aiquery.spark.registry import register as _register

    _register(spark, settings=settings)


def flush_usage(spark: SparkSession) -> int:
    """Return once every request made so far is in the Delta usage table; the number of rows added."""
    from aiquery.spark.registry import ledger_for

    ledger: Any = ledger_for(spark)
    if ledger is None:
        return 0
    added: int = ledger.ingest()
    return added
