"""Local Spark for the command line: a quiet start, and a warehouse folder that keeps its tables between runs.

Spark's default catalog lives in memory: a table written by one ``aiquery run`` is a folder of the warehouse
that the next run does not know, so ``INSERT INTO`` it fails. :func:`attach_tables` registers every Delta
table found in the warehouse again, so a local folder behaves like a persistent catalog. A cluster with a
metastore (Hive, Unity Catalog) needs none of this, and :func:`attach_tables` leaves such sessions alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiquery.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["attach_tables", "check_java", "output_to", "quiet_pyspark_loggers", "start_local_spark"]

logger = logging.getLogger(__name__)

LOCAL_CONF = {
    # Databricks writes Delta when a statement names no format (CREATE OR REPLACE TABLE t AS SELECT ...);
    # Spark's own default, parquet, cannot REPLACE a table, so job files written for Databricks would fail.
    "spark.sql.sources.default": "delta",
}


def check_java() -> None:
    """Fail early, with the fix, when no Java runtime is installed (Spark needs one).

    Raises:
        ConfigError: neither ``JAVA_HOME`` nor ``java`` on the PATH.
    """
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return
    if shutil.which("java") is None:
        raise ConfigError(
            "Spark needs a Java runtime (17 or 21) and none was found: install one "
            "(e.g. `apt-get install openjdk-17-jre-headless` or `brew install openjdk@17`) or set JAVA_HOME."
        )


@contextlib.contextmanager
def output_to(log_path: Path | None) -> Iterator[None]:
    """Send this process's stdout and stderr to ``log_path`` (appending) while the block runs; None: no change.

    A child process started in the block inherits the file descriptors it finds and keeps writing to the file:
    so the JVM that pyspark starts sends its dependency resolution and every later log4j line there, while
    Python's own output comes back to the console after the block.
    """
    if log_path is None:
        yield
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with log_path.open("ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for descriptor in saved:
                os.close(descriptor)


def start_local_spark(
    app_name: str,
    *,
    master: str = "local[2]",
    warehouse_dir: str | Path,
    spark_log: Path | None = None,
) -> SparkSession:
    """Start a local SparkSession with Delta, its warehouse in ``warehouse_dir``, and the tables found there.

    Args:
        app_name: the Spark application's name.
        master: the Spark master URL (``local[N]``, ``spark://host:7077`` ...).
        warehouse_dir: the warehouse folder (created if missing).
        spark_log: a file for the JVM's output (dependency resolution, log4j); None leaves it on the console.

    Returns:
        The session.

    Raises:
        ConfigError: Java is missing.
    """
    from aiquery.spark.session import local_spark

    check_java()
    warehouse = Path(warehouse_dir).absolute()
    warehouse.mkdir(parents=True, exist_ok=True)
    with output_to(spark_log):
        spark = local_spark(app_name, master=master, warehouse_dir=str(warehouse), extra_conf=LOCAL_CONF)
    if spark_log is None:
        # Spark's INFO lines would bury the job's own progress; warnings and errors still show.
        spark.sparkContext.setLogLevel("WARN")
    attach_tables(spark, warehouse)
    return spark


def attach_tables(spark: SparkSession, warehouse_dir: str | Path) -> list[str]:
    """Register the Delta tables stored in a local warehouse folder that the session's catalog does not know.

    Looks at ``<warehouse>/<table>`` (default database) and ``<warehouse>/<database>.db/<table>``; folders whose
    names start with ``_`` or ``.`` are skipped. Does nothing for a catalog other than Spark's in-memory one.

    Args:
        spark: the session.
        warehouse_dir: its ``spark.sql.warehouse.dir``, as a local path.

    Returns:
        The names registered.
    """
    if spark.conf.get("spark.sql.catalogImplementation", "in-memory") != "in-memory":
        return []
    root = Path(warehouse_dir)
    if not root.is_dir():
        return []
    found: list[tuple[str, str, Path]] = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(("_", ".")) or not entry.is_dir():
            continue
        if _is_delta_table(entry):
            found.append(("default", entry.name, entry))
        elif entry.name.endswith(".db"):
            for folder in sorted(entry.iterdir()):
                if not folder.name.startswith(("_", ".")) and _is_delta_table(folder):
                    found.append((entry.name[: -len(".db")], folder.name, folder))
    attached: list[str] = []
    for database, table, location in found:
        name = f"`{database}`.`{table}`"
        if database != "default":
            spark.sql(f"CREATE DATABASE IF NOT EXISTS `{database}`")
        if spark.catalog.tableExists(f"{database}.{table}"):
            continue
        try:
            spark.sql(f"CREATE TABLE IF NOT EXISTS {name} USING delta LOCATION '{_sql_text(str(location))}'")
        except Exception as error:  # one unreadable folder must not stop the job; its statements will say more
            logger.warning("not attaching %s.%s from %s: %s", database, table, location, str(error).split("\n")[0])
            continue
        attached.append(f"{database}.{table}")
    return attached


def _is_delta_table(folder: Path) -> bool:
    # A CREATE TABLE AS SELECT that failed leaves a _delta_log without any commit: not a table.
    log = folder / "_delta_log"
    if not folder.is_dir() or not log.is_dir():
        return False
    return any(name.endswith((".json", ".checkpoint.parquet")) and name[:20].isdigit() for name in os.listdir(log))


def quiet_pyspark_loggers() -> None:
    """Stop pyspark from logging every failed query as a JSON record on stderr; the caller reports errors."""
    try:
        from pyspark.logger import PySparkLogger
    except ImportError:  # Spark 3.5: no such loggers, nothing to quiet
        return

    # PySparkLogger.getLogger, not logging.getLogger: pyspark calls these loggers with keyword arguments that
    # only its own logger class accepts, so the logger must be created as that class.
    for name in ("SQLQueryContextLogger", "DataFrameQueryContextLogger"):
        PySparkLogger.getLogger(name).setLevel(logging.CRITICAL)


INTERRUPTED = threading.Event()
"""Set by :func:`plain_ctrl_c`'s handler when the user pressed Ctrl-C."""


def plain_ctrl_c(context: Any) -> None:
    """Make Ctrl-C cancel the running Spark jobs and raise a plain KeyboardInterrupt in the main thread.

    PySpark's own SIGINT handler cancels every job by calling the JVM from inside the handler, which fails with a
    "reentrant call" traceback whenever the main thread is itself waiting on the JVM (as it is while a query
    runs); py4j then logs each interrupted call with a traceback on the root logger. This handler asks for the
    cancellation from a thread of its own (its own JVM connection), so the jobs stop even if the interrupt
    reaches the main thread somewhere that turns it into another error; :data:`INTERRUPTED` tells the caller.
    """
    if threading.current_thread() is not threading.main_thread():
        return

    def on_sigint(signum: int, frame: Any) -> None:
        INTERRUPTED.set()
        threading.Thread(target=_cancel_all_jobs, args=(context,), name="aiquery-cancel", daemon=True).start()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    # A logger's filters see only the records logged on it, not those its children pass up.
    for name in ("", "py4j", "py4j.clientserver", "py4j.java_gateway"):
        logging.getLogger(name).addFilter(_not_an_interrupted_py4j_call)


def _cancel_all_jobs(context: Any, attempts: int = 3) -> None:
    # A second line of defence: run_statements cancels the job group itself once the interrupt reaches it. Opening
    # a JVM connection while the main thread's call is being torn down can fail ("Answer from Java side is
    # empty", seen once in CI), so try again briefly and never print a traceback over the one-line report.
    for attempt in range(1, attempts + 1):
        try:
            context.cancelAllJobs()
            return
        except Exception as error:  # any failure here is retried, then only logged
            logger.debug("cancelling the running Spark jobs failed (attempt %d of %d): %s", attempt, attempts, error)
            time.sleep(0.2 * attempt)


def _not_an_interrupted_py4j_call(record: logging.LogRecord) -> bool:
    # On the call cut short py4j logs "KeyboardInterrupt while sending command." and "Exception while sending
    # command." (root logger), then "Exception occurred while shutting down connection" (py4j.clientserver),
    # each with a traceback whose exception is, or was raised while handling, the KeyboardInterrupt.
    error = record.exc_info[1] if record.exc_info else None
    while error is not None:
        if isinstance(error, KeyboardInterrupt):
            return False
        error = error.__context__
    message = str(record.msg)
    return not (message.endswith("while sending command.") or "while shutting down connection" in message)


def _sql_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")
