"""aiquery: Databricks' ai_query for any Apache Spark.

>>> import aiquery
>>> aiquery.register(spark)
>>> spark.sql("SELECT ai_query('my-chat', 'Summarize: ' || text) AS s FROM docs")
>>> aiquery.flush_usage(spark)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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
    from aiquery.jobs.statements import JobResult

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
    "run_batch",
]

# ``import aiquery`` stays light: the Spark layer (py4j, the coordinator, aiohttp) is imported on a classic
# session's first call only, so that a Spark Connect client (``pyspark-client``, no JVM) and code that only reads
# the configuration or the errors can import the package.


def register(spark: SparkSession, *, settings: Settings | None = None) -> None:
    """Make ``ai_query`` and the AI Functions callable from SQL and the DataFrame API in ``spark``.

    On a classic session: registers them, starts the application's coordinator and the usage ledger
    (:func:`aiquery.spark.registry.register`). On a Spark Connect session: checks that the server is an aiquery
    Connect server (``aiquery connect-server``, which registers them for every session) and returns; a different
    aiquery version on the server is a ``RuntimeWarning`` (:mod:`aiquery.connect.client`).

    Raises:
        ConfigError: the configuration is invalid or the Spark version unsupported; on Spark Connect, the server
            has no aiquery, or ``settings`` were given (the server's apply).
    """
    from aiquery.connect import client

    if client.is_connect_session(spark):
        return client.register(spark, settings=settings)
    from aiquery.spark.registry import register as register_classic

    return register_classic(spark, settings=settings)


def flush_usage(spark: SparkSession) -> int:
    """Return once every request made so far is in the Delta usage table; the number of rows added (on Spark
    Connect, the server's ledger: ``aiquery_flush_usage()``)."""
    from aiquery.connect import client

    if client.is_connect_session(spark):
        return client.flush_usage(spark)
    from aiquery.spark.flush import flush_usage as flush_classic

    return flush_classic(spark)


def progress(spark: SparkSession) -> list[QueryProgress]:
    """Where each recent ``ai_query`` query of ``spark``'s application stands (on Spark Connect, the server's:
    ``aiquery_progress()``); see :class:`aiquery.coordinator.progress.QueryProgress`."""
    from aiquery.connect import client

    if client.is_connect_session(spark):
        return client.progress(spark)
    from aiquery.spark.coordination import progress as progress_classic

    return progress_classic(spark)


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


def run_batch(
    spark: SparkSession,
    query: str,
    *,
    variables: dict[str, str] | None = None,
    wait: str | float = "24h",
    fallback: str = "live",
    rounds: int = 3,
    state_dir: str | None = None,
    query_tag: str | None = None,
) -> JobResult:
    """Run ``query`` (one or more statements separated by ``;``) as ``aiquery run --batch`` does: the calls of
    endpoints with ``batch = true`` go through their provider's batch API, at the batch price.

    Collect the requests the answer store misses, submit them, wait (at most ``wait``: a duration such as
    ``"30m"`` or seconds), store the answers, repeat for calls fed by earlier answers (at most ``rounds``), then run
    the statements with the batched rows answered from the store (see :mod:`aiquery.jobs.batch_run`). Rows whose
    batch line failed or expired are sent live (``fallback="live"``) or fail with the line's error
    (``"fail"``). Blocks until done; run again with the same statements (or ``state_dir``) to resume.

    Returns:
        The run's result; its ``notes`` say what ran in batches and what ran live, and why.
    """
    import sys

    from aiquery.jobs.batch_command import parse_duration
    from aiquery.jobs.batch_run import BatchOptions, run_batch_job
    from aiquery.jobs.script import prepare_job
    from aiquery.jobs.statements import JobOutput, new_query_tag

    seconds = parse_duration(wait) if isinstance(wait, str) else float(wait)
    options = BatchOptions(state_dir=state_dir, wait_s=seconds, fallback=fallback, rounds=rounds)
    statements = prepare_job(query, variables or {})
    output = JobOutput(sys.stdout, sys.stderr, 0)
    result, _ = run_batch_job(spark, statements, options, query_tag=query_tag or new_query_tag("batch"), output=output)
    return result
