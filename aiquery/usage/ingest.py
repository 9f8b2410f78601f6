"""Exactly-once ingestion of the driver's usage journal into the Delta usage table.

Usage records reach the driver through its coordinator, which journals them in the ledger's spool folder on
the driver's own disk (:mod:`aiquery.coordinator.server`); executors never read or write that folder, so a
cluster needs no shared filesystem. One ingestion (:meth:`UsageLedger.ingest`), under a lock (a thread lock,
and ``flock`` against other drivers sharing the folder):

1. asks the coordinator to publish every record ended so far (a journal segment renamed into the spool folder);
2. recovers journals left by dead processes (:func:`~aiquery.usage.recovery.recover_orphans`): a driver that
   crashed, or spool files of an older aiquery whose workers wrote them;
3. finishes a batch an interrupted ingestion planned, then ingests every spool file present, in batches that
   the ingestion log (:mod:`aiquery.usage.batches`) makes exactly-once with Delta's idempotent writes, each
   numbered after the last version the table's own Delta log holds for this writer.

The records are read on the driver and reach the executors inside the job (a Dataset of lines in the driver's
JVM, parsed by Spark's JSON reader with the spool schema), so nothing but the driver touches the folder.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from aiquery.config import UsageSettings
from aiquery.errors import ConfigError
from aiquery.usage.batches import Batch, IngestLog
from aiquery.usage.delta_txn import last_txn_version, local_log_dir
from aiquery.usage.folder_upgrade import needs_upgrade, upgrade_folder
from aiquery.usage.private_folder import SPOOL_FIX, private_folder
from aiquery.usage.recovery import recover_orphans
from aiquery.usage.schema import (
    add_columns_sql,
    create_table_sql,
    missing_columns,
    spool_struct_type,
    table_projection,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["UsageLedger", "usage_folder"]

logger = logging.getLogger(__name__)

MAX_FILES_PER_BATCH = 5000
MAX_BYTES_PER_BATCH = 32 << 20
CHUNK_CHARS = 1 << 20
"""Characters of usage lines per row of the DataFrame that carries a batch to the JVM."""
"""Bounds one batch after a long backlog (its lines are held on the driver while it is written)."""
_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,2}$")
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _local_path(location: str, what: str) -> Path:
    """A local filesystem path from a path or a ``file:`` URI."""
    if location.startswith("file:"):
        return Path(unquote(urlparse(location).path))
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:", location):
        raise ConfigError(
            f"{what} {location!r} is not a local path: the usage journal lives on the driver's own disk "
            "(set [usage] dir to a local folder of the driver)"
        )
    return Path(location).absolute()


def usage_folder(spark: SparkSession, settings: UsageSettings) -> Path:
    """The driver's usage folder: ``[usage] dir``, else ``_aiquery`` in the warehouse (the journal, the ingestion
    log and the answer store live there)."""
    if settings.dir:
        return _local_path(settings.dir, "[usage] dir")
    warehouse = spark.conf.get("spark.sql.warehouse.dir") or "spark-warehouse"
    return _local_path(warehouse, "spark.sql.warehouse.dir") / "_aiquery"


class UsageLedger:
    """The usage table of one SparkSession, and the driver-local folder its journal and ingestion log live in.

    Args:
        spark: the session (with Delta; see :func:`aiquery.spark.session.local_spark`).
        settings: table name and location, the usage folder and the ingestion interval.
        coordinator: the application's coordinator, whose journal for this ledger is published before each
            ingestion (None: only spool files already in the folder are ingested).
        require_delta: called with ``spark`` before the table is first created or registered, to raise a
            ``ConfigError`` that says how to fix a session without Delta Lake (the Spark layer passes
            :func:`aiquery.spark.session.ensure_delta`); None when the session is known to have Delta.

    Attributes:
        spool_dir: where the driver's journal publishes records for ingestion.
    """

    def __init__(
        self,
        spark: SparkSession,
        settings: UsageSettings | None = None,
        *,
        coordinator: Any = None,
        require_delta: Callable[[SparkSession], None] | None = None,
    ) -> None:
        self.spark = spark
        self.settings = settings or UsageSettings()
        self.coordinator = coordinator
        self._require_delta = require_delta
        self.table = self.settings.table
        if not _TABLE_NAME.match(self.table):
            raise ConfigError(f"[usage] table = {self.table!r} is not a table name like ai_gateway.usage")
        base = usage_folder(spark, self.settings)
        self.base_dir = base
        self.spool_dir = str(base / "spool")
        self.log_dir = str(base / "ingest" / self.table.lower())
        # The usage folder down to the spool: refused here, before any request, if not this user's alone.
        private_folder(self.spool_dir, root=base, fix=SPOOL_FIX)
        self.log = IngestLog(self.log_dir)
        with _locks_guard:
            self._lock = _locks.setdefault(self.log_dir, threading.Lock())
        if needs_upgrade(base, self.table):
            with self._lock, self._file_lock():  # another driver sharing the folder may be upgrading it too
                upgrade_folder(base, self.table, Path(self.spool_dir))
        self._table_ready = False
        self._log_dir: Path | None = None
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None

    # ---- the table ------------------------------------------------------------------------------------------
    def ensure_table(self) -> None:
        """Create the table if it is missing, or re-register it from its files.

        Spark's default (in-memory) catalog forgets tables when the session ends, while their files stay in
        the warehouse; a later session registers the existing Delta table at its location again. Under the
        ingestion lock: the background ingestion may be creating the table at this moment, and two creations of
        one Delta table at once fail (the second finds a location neither empty nor a Delta table yet).
        """
        with self._lock:
            self._ensure_table()

    def _ensure_table(self) -> None:
        if self._table_ready:
            return
        spark = self.spark
        if self._require_delta is not None:
            self._require_delta(spark)
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
        # A table made by an older aiquery gains the columns added since (NULL in its older rows).
        missing = missing_columns({name.lower() for name in spark.table(self.table).columns})
        if missing:
            spark.sql(add_columns_sql(self.table, missing))
            logger.info("added column(s) %s to %s", ", ".join(c.name for c in missing), self.table)
        self._table_ready = True

    def _default_location(self, database: str, name: str) -> str | None:
        rows = self.spark.sql(f"DESCRIBE DATABASE {database or self.spark.catalog.currentDatabase()}").collect()
        for row in rows:
            if row[0].lower() == "location":
                return f"{str(row[1]).rstrip('/')}/{name.lower()}"
        return None

    # ---- ingestion ------------------------------------------------------------------------------------------
    def ingest(self) -> int:
        """Move every record ended so far into the table, exactly once.

        Returns:
            The number of rows added.
        """
        with self._lock, self._file_lock():
            spool = Path(self.spool_dir)
            if self.coordinator is not None:
                self.coordinator.rotate(self.spool_dir)
            recover_orphans(spool)
            self._ensure_table()
            rows = 0
            pending = self.log.pending()
            if pending is not None:
                # An interrupted ingestion planned this batch; Delta may already hold it (then it ignores the write).
                before = self._table_version()
                replayed = self._write(pending)
                rows += replayed if self._table_version() != before else 0
            table_seen = -1
            while True:
                files = _next_files(spool)
                if not files:
                    break
                if table_seen < 0:
                    table_seen = self._table_seen()
                rows += self._write(self.log.plan(files, table_seen=table_seen))
            if rows:
                logger.info("ingested %d usage row(s) into %s", rows, self.table)
            return rows

    def _write(self, batch: Batch) -> int:
        lines: list[str] = []
        for name in batch.files:
            try:
                with open(name, encoding="utf-8") as handle:
                    lines.extend(line for line in handle.read().splitlines() if line)
            except FileNotFoundError:  # deleted after an earlier commit of this very batch
                continue
        if lines and batch.version > self.log.committed:
            self._append(lines, batch.version)
        _delete(batch.files)
        self.log.done(batch)
        return len(lines)

    def _table_seen(self) -> int:
        """The last ``txnVersion`` of this ledger's writer in the table's Delta log (-1 for none, or when the table is
        not on a local disk: then the fsynced counter alone numbers the batches)."""
        if self._log_dir is None:
            location = _table_location(self.spark, self.table)
            self._log_dir = local_log_dir(location) if location is not None else None
            if self._log_dir is None:
                logger.debug("usage table %s is not on a local disk: batches numbered by the local counter", self.table)
                return -1
        return last_txn_version(self.spark, self._log_dir, self.log.writer_id)

    def _table_version(self) -> int:
        row = self.spark.sql(f"DESCRIBE HISTORY {self.table} LIMIT 1").select("version").first()
        return int(row[0]) if row is not None else -1

    def _append(self, lines: list[str], version: int) -> None:
        spark = self.spark
        # From a thread other than the one that built the session (the background thread, a user's thread),
        # the JVM thread has no active session and Delta then resolves a table name as a path (measured on Spark
        # 4.2 + Delta 4.4: DELTA_INVALID_V1_TABLE_CALL).
        jvm = spark.sparkContext._jvm
        if jvm is not None:
            jvm.org.apache.spark.sql.SparkSession.setActiveSession(spark._jsparkSession)
        records = _json_records(spark, lines)
        (
            records.selectExpr(*table_projection())
            .write.format("delta")
            .mode("append")
            # Delta skips a write whose (txnAppId, txnVersion) it has already committed: replays are no-ops.
            .option("txnAppId", self.log.writer_id)
            .option("txnVersion", str(version))
            .saveAsTable(self.table)
        )

    @contextmanager
    def _file_lock(self) -> Iterator[None]:
        # Two drivers sharing a usage folder must not ingest the same files at once.
        fd = os.open(f"{self.log_dir}.lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
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


def _json_records(spark: SparkSession, lines: list[str]) -> Any:
    """A DataFrame of spool records parsed by Spark's JSON reader from lines held on the driver.

    The lines travel as one string in a one-row local DataFrame (unpickled in the driver's JVM) and are split and
    parsed there: Spark ships them to the executors inside the job, without Python workers (an RDD of Python
    strings needs them on every executor, which made a 600-line batch take a minute on a loaded cluster).
    """
    from pyspark.sql import functions as F

    text = spark.createDataFrame([(chunk,) for chunk in _chunks(lines)], "text STRING")
    records = text.select(F.explode(F.split("text", "\n")).alias("line")).where("line != ''")
    return records.select(F.from_json("line", spool_struct_type()).alias("record")).select("record.*")


def _chunks(lines: list[str]) -> Iterator[str]:
    """The lines joined into strings of about :data:`CHUNK_CHARS` each (one string of a whole batch, tens of
    megabytes, took the driver's JVM past a 1 GiB heap: measured with 200,000 usage rows of 8 KB answers)."""
    chunk: list[str] = []
    size = 0
    for line in lines:
        chunk.append(line)
        size += len(line) + 1
        if size >= CHUNK_CHARS:
            yield "\n".join(chunk)
            chunk, size = [], 0
    if chunk:
        yield "\n".join(chunk)


def _delete(files: tuple[str, ...]) -> None:
    for name in files:
        Path(name).unlink(missing_ok=True)


def _next_files(spool: Path) -> list[str]:
    """The next batch's spool files: oldest names first, bounded in count and bytes."""
    with os.scandir(spool) as entries:
        found = sorted(
            (entry.name, entry.stat().st_size)
            for entry in entries
            if not entry.name.startswith(("_", ".")) and entry.is_file()
        )
    files: list[str] = []
    size = 0
    for name, length in found:
        if files and (len(files) >= MAX_FILES_PER_BATCH or size + length > MAX_BYTES_PER_BATCH):
            break
        files.append(str(spool / name))
        size += length
    return files


def _sql_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def _table_location(spark: SparkSession, table: str) -> str | None:
    """Where ``table`` keeps its files: from the session catalog (no Delta snapshot is loaded: ``DESCRIBE DETAIL``
    cost 1-15 s in a process's first ingestion, most of it loading the table's state), else ``DESCRIBE DETAIL``
    (a table in another catalog)."""
    try:
        state = spark._jsparkSession.sessionState()
        metadata = state.catalog().getTableMetadata(state.sqlParser().parseTableIdentifier(table))
        return str(metadata.location().toString())
    except Exception:  # py4j's errors vary with the catalog and the Spark version: the slow way always works
        row = spark.sql(f"DESCRIBE DETAIL {table}").select("location").first()
        return str(row[0]) if row is not None else None


def _is_delta_table(spark: SparkSession, location: str) -> bool:
    # Delta's own JVM class, reached through py4j: the delta-spark pip package is not installed (it would pull
    # in a pyspark of its choosing), and the class is in the JAR the session already loaded (ensure_delta).
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    return bool(jvm.io.delta.tables.DeltaTable.isDeltaTable(spark._jsparkSession, location))
