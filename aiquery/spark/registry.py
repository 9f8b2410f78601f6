"""``register(spark)``: make ai_query callable from SQL and the DataFrame API in one session."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from aiquery.config import Settings, load_settings
from aiquery.errors import ConfigError
from aiquery.spark.builder import AIQueryBuilder
from aiquery.spark.call_context import SparkContextInfo
from aiquery.spark.session import ensure_delta
from aiquery.spark.versions import check_spark_version
from aiquery.usage.ingest import UsageLedger, usage_folder

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from aiquery.coordinator.server import Coordinator

__all__ = ["context_for", "register", "registered_builders"]

FUNCTION_NAME = "ai_query"

_sessions: dict[int, tuple[SparkContextInfo, AIQueryBuilder, UsageLedger | None]] = {}
_function_builders: dict[int, list[Any]] = {}
"""The AI Functions' builders per session: referenced here while the JVM may call them back."""
_lock = threading.Lock()


def register(spark: SparkSession, *, settings: Settings | None = None) -> None:
    """Register ``ai_query`` in ``spark``, start the application's coordinator and the usage ledger.

    Args:
        spark: a classic (non-Connect) SparkSession.
        settings: configuration; read from the environment and ``conf/aiquery.toml`` when None.

    Raises:
        ConfigError: the configuration file is invalid, aiquery does not support this Spark version, or ``spark``
            is a Spark Connect session (whose functions come from the server: ``aiquery.register`` checks them).
    """
    check_spark_version(spark.version)
    # Before any classic import: on a Connect client py4j may not even be installed.
    if not hasattr(spark, "_jsparkSession"):
        raise ConfigError(
            "this is a Spark Connect session: aiquery's functions come from the server (start it with "
            "`aiquery connect-server`); call aiquery.register(spark), which checks the server, not "
            "aiquery.spark.registry.register"
        )
    from pyspark.java_gateway import ensure_callback_server_started

    from aiquery.spark.coordination import coordinator_for

    settings = settings or load_settings()
    gateway = spark.sparkContext._gateway
    assert gateway is not None
    ensure_callback_server_started(gateway)  # type: ignore[no-untyped-call]
    # Lets the builder raise IllegalArgumentException into the analyzer (see AIQueryBuilder.apply).
    gateway.python_parameters.propagate_java_exceptions = True
    coordinator = coordinator_for(spark, settings)
    ledger = None
    journal = None
    if settings.usage.enabled:
        ledger = UsageLedger(spark, settings.usage, coordinator=coordinator, require_delta=ensure_delta)
        journal = ledger.spool_dir
        coordinator.add_journal(journal)
    store = _answer_store(spark, settings, coordinator)
    _bound_arrow_batches(spark)
    info = SparkContextInfo(spark, settings, journal, coordinator.address, store, service=coordinator)
    builder = AIQueryBuilder(info)
    registry = spark._jsparkSession.sessionState().functionRegistry()
    registry.createOrReplaceTempFunction(FUNCTION_NAME, builder, "python_udf")
    from aiquery.spark.ai_function_sql import AI_FUNCTIONS, AIFunctionBuilder

    function_builders = [AIFunctionBuilder(info, name) for name in AI_FUNCTIONS]
    for function_builder in function_builders:
        registry.createOrReplaceTempFunction(function_builder.name, function_builder, "python_udf")
    with _lock:
        previous = _sessions.get(id(spark))
        if previous is not None and previous[2] is not None:
            previous[2].stop_background()
        # The builder must stay referenced in Python while the JVM may call it back.
        _sessions[id(spark)] = (info, builder, ledger)
        _function_builders[id(spark)] = function_builders
    if ledger is not None:
        ledger.start_background(settings.usage.ingest_interval)


def _answer_store(spark: SparkSession, settings: Settings, coordinator: Coordinator) -> str | None:
    """Open the answer store the settings name and serve it from the coordinator; its key (None when off)."""
    if not settings.cache.enabled:
        return None
    from aiquery.store import open_store, redis_store_key

    if settings.cache.url:
        key = redis_store_key(settings.cache)
    else:
        key = "disk:" + str(usage_folder(spark, settings.usage) / "answers")
    coordinator.add_store(key, lambda: open_store(settings.cache, key.removeprefix("disk:")))
    return key


ARROW_BATCH_BYTES = "spark.sql.execution.arrow.maxBytesPerBatch"
DEFAULT_ARROW_BATCH_BYTES = 16 * 1024 * 1024
"""Arrow batch size (bytes) ai_query sets in a session that has not set one: a Python worker holds a whole input
batch, so Spark's default of 10,000 rows per batch would mean 200 MB for 20 KB prompts; 16 MiB bounds it for
any prompt size and leaves batches of short prompts at 10,000 rows."""


def _bound_arrow_batches(spark: SparkSession) -> None:
    if spark.conf.get(ARROW_BATCH_BYTES, None) is None:
        spark.conf.set(ARROW_BATCH_BYTES, str(DEFAULT_ARROW_BATCH_BYTES))


def context_for(spark: SparkSession) -> SparkContextInfo:
    """The registration of ``spark`` (registering it now with default settings if needed)."""
    with _lock:
        entry = _sessions.get(id(spark))
    if entry is None:
        register(spark)
        with _lock:
            entry = _sessions[id(spark)]
    return entry[0]


def registered_builders(spark: SparkSession) -> list[tuple[str, Any]]:
    """The SQL functions ``register`` gave ``spark`` (ai_query and the AI Functions): (name, builder) pairs, for
    registering them elsewhere too (a Spark Connect server's built-in registry). Empty when not registered."""
    with _lock:
        entry = _sessions.get(id(spark))
        functions = list(_function_builders.get(id(spark), []))
    if entry is None:
        return []
    return [(FUNCTION_NAME, entry[1]), *((builder.name, builder) for builder in functions)]


def ledger_for(spark: SparkSession) -> UsageLedger | None:
    """The usage ledger of a registered session, or None."""
    with _lock:
        entry = _sessions.get(id(spark))
    return entry[2] if entry is not None else None
