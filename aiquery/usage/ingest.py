"""Exactly-once ingestion of spool files into the Delta usage table, on the driver.

One ingestion (:meth:`UsageLedger.ingest`) under a lock (a thread lock, and ``flock`` against other drivers):

1. recover the journals of dead workers (:func:`~aiquery.usage.recovery.recover_orphans`);
2. delete spool files an earlier, interrupted ingestion committed but did not delete;
3. run a file-source stream over the spool directory with ``trigger(availableNow=True)`` into the table;
4. delete the files of the batches it committed (:func:`~aiquery.usage.checkpoint.cleanup_committed`).

Why nothing is written twice or lost, for each place a driver can die:

- before the stream plans a batch: the files stay and the next run reads them;
- after planning (``offsets/N``), before Delta commits: the next run replays batch N from the same file list;
- after Delta commits, before ``commits/N``: the replay is skipped by Delta's streaming sink, which records
  (query id, batch id) in each commit (its idempotent ``txn``) and ignores a batch it already holds;
- after ``commits/N``, before the files are deleted: the source log marks them seen, so the stream never reads
  them again, and step 2 of the next ingestion deletes them;
- while files arrive: a spool file appears by an atomic rename, complete; availableNow takes the files present
  when the run starts, and later ones wait for the next run.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from aiquery.config import UsageSettings
from aiquery.errors import ConfigError
from aiquery.spark.versions import progress_input_rows
from aiquery.usage import checkpoint as ckpt
from aiquery.usage.recovery import recover_orphans
from aiquery.usage.schema import create_table_sql, spool_struct_type, table_projection

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["UsageLedger", "flush_usage", "ledger_for"]

logger = logging.getLogger(__name__)

MAX_FILES_PER_BATCH = 5000
"""Bounds one micro-batch after a long backlog; availableNow still reads everything, in several batches."""
_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,2}$")
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _local_path(location: str, what: str) -> Path:
    """A local filesystem path from a path or a ``file:`` URI."""
    if location.startswith("file:"):
        return Path(unquote(urlparse(location).path))
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:", location):
        raise ConfigError(
            f"{what} {location!r} is not a local path: the usage spool needs a POSIX filesystem shared by the "
            "driver and the workers (set [usage] dir to a local or NFS path)"
        )
    return Path(location).absolute()


class UsageLedger:
    """The usage table of one SparkSession, and the spool directory its workers write to.

    Args:
        spark: the session (with Delta; see :func:`aiquery.spark.session.local_spark`).
        settings: table name and location, spool folder and ingestion interval.

    Attributes:
        spool_dir: where workers write spool files (pass it to :func:`aiquery.usage.spool.spool_writer`).
        checkpoint_dir: the ingestion stream's checkpoint (one per table).
    """

    def __init__(self, spark: SparkSession, settings: UsageSettings | None = None) -> None:
        self.spark = spark
        self.settings = settings or UsageSettings()
        self.table = self.settings.table
        if not _TABLE_NAME.match(self.table):
            raise ConfigError(f"[usage] table = {self.table!r} is not a table name like ai_gateway.usage")
        if self.settings.dir:
            base = _local_path(self.settings.dir, "[usage] dir")
        else:
            warehouse = spark.conf.get("spark.sql.warehouse.dir") or "spark-warehouse"
            base = _local_path(warehouse, "spark.sql.warehouse.dir") / "_aiquery"
        self.base_dir = base
        self.spool_dir = str(base / "spool")
        self.checkpoint_dir = str(base / "checkpoint" / self.table.lower())
        Path(self.spool_dir).mkdir(parents=True, exist_ok=True)
        Path(self.checkpoint_dir).parent.mkdir(parents=True, exist_ok=True)
        with _locks_guard:
            self._lock = _locks.setdefault(self.checkpoint_dir, threading.Lock())
        self._table_ready = False
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None

    # ---- the table ------------------------------------------------------------------------------------------
    def ensure_table(self) -> None:
        """Create the table if it is missing, or re-register it from its files.

        Spark's default (in-memory) catalog forgets tables when the session ends, while their files stay in
        the warehouse; a later session registers the existing Delta table at its location again.
        """
        if self._table_ready:
            return
        from aiquery.spark.session import ensure_delta

        ensure_delta(self.spark)
        spark = self.spark
        if not spark.catalog.tableExists(self.table):
            parts = self.table.split(".")
            database = ".".join(parts[:-1])
            if database:
                spark.sql(f"CREATE DATABASE IF NOT EXISTS {database}")
            location = self.settings.path or self._default_location(database, parts[-1])
            if location and _is_delta_table(spark, location):
                spark.sql(f"CREATE TABLE IF NOT EXISTS {self.table} USING delta LOCATION '{_sql_text(location)}'")
            else:
                spark.sql(create_table_sql(self.table, location=self.settings.path))
        self._table_ready = True

    def _default_location(self, database: str, name: str) -> str | None:
        rows = self.spark.sql(f"DESCRIBE DATABASE {database or self.spark.catalog.currentDatabase()}").collect()
        for row in rows:
            if row[0].lower() == "location":
                return f"{str(row[1]).rstrip('/')}/{name.lower()}"
        return None

    # ---- ingestion ------------------------------------------------------------------------------------------
    def ingest(self) -> int:
        """Move every spool file present now into the table, exactly once.

        Returns:
            The number of rows added (read from the stream's progress reports).
        """
        with self._lock, self._file_lock():
            spool = Path(self.spool_dir)
            checkpoint = Path(self.checkpoint_dir)
            recover_orphans(spool)
            self.ensure_table()
            # Finish what an interrupted ingestion left: delete what it committed, then drop its checkpoint
            # unless a planned batch still has to be replayed (from that checkpoint, under the same query id).
            ckpt.remove_retired(checkpoint)
            ckpt.cleanup_committed(checkpoint, spool)
            _retire_if_complete(checkpoint)
            before = _visible_files(spool)
            if not before:
                return 0
            rows = self._run_stream()
            ckpt.cleanup_committed(checkpoint, spool)
            left = before & _visible_files(spool)
            if left:  # cannot happen with a fresh checkpoint; the next run would take them
                logger.warning("usage spool files not ingested in this run: %s", sorted(left)[:10])
            _retire_if_complete(checkpoint)
            logger.info("ingested %d usage row(s) into %s", rows, self.table)
            return rows

    def _run_stream(self) -> int:
        spark = self.spark
        # From a thread other than the one that built the session (the background thread, a user's thread),
        # the JVM thread has no active session and Delta then resolves toTable(name) as a path-based table and
        # fails (DELTA_INVALID_V1_TABLE_CALL; measured on Spark 4.2 + Delta 4.4).
        jvm = spark.sparkContext._jvm
        if jvm is not None:
            jvm.org.apache.spark.sql.SparkSession.setActiveSession(spark._jsparkSession)
        source = (
            spark.readStream.schema(spool_struct_type())
            .option("maxFilesPerTrigger", MAX_FILES_PER_BATCH)
            .json(self.spool_dir)
        )
        query = (
            source.selectExpr(*table_projection())
            .writeStream.format("delta")
            .outputMode("append")
            .option("checkpointLocation", self.checkpoint_dir)
            # A table created by an older aiquery gains the columns added since.
            .option("mergeSchema", "true")
            .queryName(f"aiquery_usage_ingest_{self.table.replace('.', '_')}")
            .trigger(availableNow=True)
            .toTable(self.table)
        )
        query.awaitTermination()
        return sum(progress_input_rows(progress) for progress in query.recentProgress)

    @contextmanager
    def _file_lock(self) -> Iterator[None]:
        # Two drivers sharing a usage dir must not run one checkpoint at once (Spark only checks that within
        # one session).
        fd = os.open(f"{self.checkpoint_dir}.lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # ---- background ingestion -------------------------------------------------------------------------------
    def start_background(self, interval: float | None = None) -> None:
        """Ingest every ``interval`` seconds (default: the settings' ``ingest_interval``) on a daemon thread."""
        if self._thread is not None and self._thread.is_alive():
            return
        period = self.settings.ingest_interval if interval is None else interval
        stop = self._stop = threading.Event()

        def loop() -> None:
            while not stop.wait(period):
                try:
                    self.ingest()
                except Exception:  # keep ingesting later; the files wait in the spool
                    logger.exception("background usage ingestion into %s failed", self.table)

        self._thread = threading.Thread(target=loop, name="aiquery-usage-ingest", daemon=True)
        self._thread.start()

    def stop_background(self, timeout: float | None = None) -> None:
        """Stop the background thread, waiting for an ingestion in progress to finish."""
        if self._stop is not None:
            self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


def _retire_if_complete(checkpoint: Path) -> None:
    if checkpoint.is_dir() and ckpt.planned_batch(checkpoint) == ckpt.committed_batch(checkpoint):
        ckpt.retire(checkpoint)


def _visible_files(spool: Path) -> set[str]:
    with os.scandir(spool) as entries:
        return {e.name for e in entries if not e.name.startswith(("_", ".")) and e.is_file()}


def _sql_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def _is_delta_table(spark: SparkSession, location: str) -> bool:
    # Delta's own JVM class, reached through py4j: the delta-spark pip package is not installed (it would pull
    # in a pyspark of its choosing), and the class is in the JAR the session already loaded (ensure_delta).
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    return bool(jvm.io.delta.tables.DeltaTable.isDeltaTable(spark._jsparkSession, location))


_ledgers: dict[int, UsageLedger] = {}
_ledgers_guard = threading.Lock()


def ledger_for(spark: SparkSession, settings: UsageSettings | None = None) -> UsageLedger:
    """The ledger of ``spark``, created on first use (from the configuration file when no settings are given).

    A later call with different settings replaces the session's ledger.
    """
    with _ledgers_guard:
        ledger = _ledgers.get(id(spark))
        if ledger is not None and ledger.spark is spark and (settings is None or settings == ledger.settings):
            return ledger
        if settings is None:
            from aiquery.config import load_settings

            settings = load_settings().usage
        if ledger is not None:
            ledger.stop_background()
        ledger = _ledgers[id(spark)] = UsageLedger(spark, settings)
        return ledger


def flush_usage(spark: SparkSession) -> int:
    """Return once every request made so far is in the Delta usage table.

    Workers flush their spool at the end of each task, so when a query has finished its records are in spool
    files; this ingests them (and those of any dead worker).

    Returns:
        The number of rows added.
    """
    return ledger_for(spark).ingest()
