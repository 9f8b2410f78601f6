"""A local SparkSession with Delta Lake, and the Delta settings for sessions built elsewhere.

``local_spark`` is what tests, the demo and notebooks use. ``delta_configs`` is the same configuration as a
dict, for ``spark-submit --conf`` lines or an existing builder; ``ensure_delta`` checks that a session you
did not build can write the usage table. Both pick the Delta JAR matched to the installed Spark
(:mod:`aiquery.spark.versions`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from aiquery.errors import ConfigError
from aiquery.spark.versions import delta_package, session_spark

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["delta_configs", "ensure_delta", "local_spark"]

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
DEFAULT_SHUFFLE_PARTITIONS = 4
CODEGEN_CACHE_ENTRIES = 2000
"""Generated classes a local session keeps (Spark's static ``spark.sql.codegen.cache.maxEntries``, default 100)."""


def delta_configs(*, packages: str | None = None) -> dict[str, str]:
    """The Spark settings that give a session Delta Lake.

    Args:
        packages: Maven coordinates for ``spark.jars.packages``; None for the Delta matched to the Spark installed
            here (:func:`aiquery.spark.versions.delta_package`).

    Returns:
        A new dict of Spark configuration keys to values, e.g. for ``spark-submit --conf k=v``.

    Raises:
        ConfigError: pyspark is missing, or aiquery does not support the installed Spark.
    """
    return {
        "spark.jars.packages": packages or delta_package(),
        "spark.sql.extensions": DELTA_EXTENSION,
        "spark.sql.catalog.spark_catalog": DELTA_CATALOG,
    }


def local_spark(
    app_name: str = "aiquery",
    *,
    master: str = "local[2]",
    warehouse_dir: str | None = None,
    extra_conf: Mapping[str, str] | None = None,
) -> SparkSession:
    """Start (or return the running) local SparkSession, configured for Delta and aiquery.

    Args:
        app_name: the application name shown in logs.
        master: the Spark master URL.
        warehouse_dir: ``spark.sql.warehouse.dir``; None for Spark's default (``./spark-warehouse``).
        extra_conf: further settings, applied last (they override ours).

    Returns:
        The session. The first call downloads the Delta JARs into ``~/.ivy2`` if they are not cached.

    Raises:
        ConfigError: pyspark is missing, or aiquery does not support the installed Spark.
    """
    # Without this, Python workers start the first `python3` on PATH, which may lack pandas and pyarrow
    # (measured: the system python here has neither). Spark reads the variable when it launches workers.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    conf: dict[str, str] = {
        **delta_configs(),
        "spark.pyspark.python": os.environ["PYSPARK_PYTHON"],
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.shuffle.partitions": str(DEFAULT_SHUFFLE_PARTITIONS),
        # Delta rebuilds a table's snapshot with 50 partitions by default: seconds of scheduling for the
        # small tables a local session holds.
        "spark.databricks.delta.snapshotPartitions": str(DEFAULT_SHUFFLE_PARTITIONS),
        # Usage timestamps are UTC; showing them in UTC keeps the dashboard's dates equal to event_date.
        "spark.sql.session.timeZone": "UTC",
        # As on Databricks, CREATE TABLE ... AS SELECT without USING makes a Delta table.
        "spark.sql.sources.default": "delta",
        # Spark keeps 100 generated classes; the usage dashboard alone makes about 600, so each render compiled
        # (and the JIT re-optimized) them all again. Measured on 100,000 usage rows: 4.5 s a render instead of 6.3 s.
        "spark.sql.codegen.cache.maxEntries": str(CODEGEN_CACHE_ENTRIES),
    }
    if warehouse_dir is not None:
        conf["spark.sql.warehouse.dir"] = warehouse_dir
    conf.update(extra_conf or {})
    # Imported after delta_configs(), which says how to install pyspark when it is missing.
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name).master(master)
    for key, value in conf.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def ensure_delta(spark: SparkSession) -> None:
    """Check that ``spark`` can read and write Delta tables.

    Raises:
        ConfigError: the Delta extension or its JAR is missing, with the settings that fix it.
    """
    extensions = spark.conf.get("spark.sql.extensions", "") or ""
    jvm_has_delta = True
    try:
        spark.sparkContext._jvm.java.lang.Class.forName(  # type: ignore[union-attr]
            "io.delta.sql.DeltaSparkSessionExtension",
            True,
            spark.sparkContext._jvm.java.lang.Thread.currentThread().getContextClassLoader(),  # type: ignore[union-attr]
        )
    except Exception:  # py4j wraps the JVM's ClassNotFoundException; any failure means no usable JAR
        jvm_has_delta = False
    if DELTA_EXTENSION not in extensions or not jvm_has_delta:
        package = delta_package(session_spark(spark))
        settings = " ".join(f"--conf {key}={value}" for key, value in delta_configs(packages=package).items())
        raise ConfigError(
            "this SparkSession has no Delta Lake, which the usage table needs "
            f"(extension configured: {DELTA_EXTENSION in extensions}; Delta classes loadable: {jvm_has_delta}). "
            f"Start Spark with {settings}, or use aiquery.spark.session.local_spark()."
        )
