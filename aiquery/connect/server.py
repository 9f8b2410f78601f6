"""``aiquery.connect_server.start(...)``: a Spark driver with aiquery registered for every session, serving Spark
Connect clients.

A Connect server *is* a driver: its sessions are made by ``newSession()`` of the driver's session, each with a
copy of Spark's built-in function registry. So the driver registers aiquery as a classic session does (the
coordinator, the answer store, the ledger), then puts ai_query, the AI Functions and the server's own functions
(:mod:`aiquery.connect.server_functions`) into that built-in registry before it starts Spark's Connect service.
The builders read the settings of the session under analysis (:mod:`aiquery.spark.analysed_session`), so each
Connect session's ``SET`` applies to its own queries.

The token: Spark's Connect service refuses any request without it (``spark.connect.authenticate.token``). It is
set on the running driver's configuration, never on the JVM's command line (which every local user can read in
``ps``); it is printed only in the URL line :mod:`aiquery.connect.command` writes to stdout.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiquery.config import Settings
from aiquery.connect.server_functions import server_functions
from aiquery.errors import ConfigError
from aiquery.jobs.session import attach_tables, check_java, output_to
from aiquery.jobs.statements import wait_until_settled
from aiquery.spark.analysed_session import connect_service
from aiquery.spark.coordination import running_coordinator
from aiquery.spark.flush import flush_usage
from aiquery.spark.registry import (
    ARROW_BATCH_BYTES,
    DEFAULT_ARROW_BATCH_BYTES,
    ledger_for,
    register,
    registered_builders,
)
from aiquery.spark.session import local_spark
from aiquery.spark.versions import installed_spark, parse_spark_version

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from aiquery.connect.ingestion import SpoolWatch

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "ConnectServer", "require_connect_spark", "start"]

logger = logging.getLogger("aiquery.connect")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 15002
TOKEN_SETTING = "spark.connect.authenticate.token"
OWN_SETTINGS = {
    "spark.connect.grpc.binding.address": "--host (host=)",
    "spark.connect.grpc.binding.port": "--port (port=)",
    TOKEN_SETTING: "--token (token=), or SPARK_CONNECT_AUTHENTICATE_TOKEN",
}
"""Spark settings the server sets from its own options: as ``--conf`` they would bypass the loopback check, or put
the token on the JVM's command line."""
STOP_WAIT_S = 30
"""How long a stop waits for the Connect service's calls in flight to end."""


@dataclass(eq=False)
class ConnectServer:
    """A running server: its driver's session, the address it listens on and the token its clients send."""

    spark: SparkSession
    host: str
    port: int
    token: str = field(repr=False)
    watch: SpoolWatch | None = field(default=None, repr=False)
    stopped: bool = False

    @property
    def url(self) -> str:
        """What a client passes to ``SparkSession.builder.remote``. The Python client sends a token without TLS only
        to the host ``localhost``, so a server listening on loopback (or everywhere) is named so."""
        name = "localhost" if _reaches_loopback(self.host) else self.host
        return f"sc://{name}:{self.port}/;token={self.token}"

    def stop(self) -> None:
        """Stop taking requests, let those in flight end (or be recorded as lost), ingest the ledger, stop Spark."""
        if self.stopped:
            return
        self.stopped = True
        jvm = self.spark.sparkContext._jvm
        service = connect_service(jvm) if jvm is not None else None
        if service is not None and service.started():
            try:
                # In nanoseconds: py4j sends an int past 2**31 as the java.lang.Long the Option[Long] must hold.
                wait = jvm.scala.Option.apply(STOP_WAIT_S * 1_000_000_000)  # type: ignore[union-attr]
                unit = jvm.scala.Option.apply(jvm.java.util.concurrent.TimeUnit.NANOSECONDS)  # type: ignore[union-attr]
                service.stop(wait, unit)
            except Exception:  # stopping Spark below ends the service all the same
                logger.warning("the Connect service did not stop cleanly", exc_info=True)
        # Stopping the service leaves its executions running: cancel them, and wait for their requests' records
        # (ended, or closed as lost) before the last ingestion.
        context = self.spark.sparkContext
        context.cancelAllJobs()
        wait_until_settled(context, running_coordinator(self.spark), STOP_WAIT_S)
        if self.watch is not None:
            self.watch.stop()
        ledger = ledger_for(self.spark)
        if ledger is not None:
            ledger.stop_background()
        try:
            flush_usage(self.spark)
        finally:
            self.spark.stop()


def start(
    *,
    master: str = "local[*]",
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    conf: Mapping[str, str] | None = None,
    token: str | None = None,
    settings: Settings | None = None,
    warehouse_dir: str | Path = "spark-warehouse",
    spark_log: Path | None = None,
) -> ConnectServer:
    """Start a Spark driver with aiquery registered for every session and Spark's Connect service in it.

    Args:
        master: the Spark master URL, as for ``spark-submit``.
        host: the address to listen on (``spark.connect.grpc.binding.address``).
        port: the port to listen on.
        conf: further Spark settings, applied last.
        token: what clients must send; generated when None (only for a loopback ``host``).
        settings: aiquery's configuration; read from the environment and ``conf/aiquery.toml`` when None.
        warehouse_dir: the warehouse folder; its Delta tables are available to every session.
        spark_log: a file for the JVM's output; None leaves it on this process's stderr.

    Returns:
        The running server; ``.url`` is what a client connects to.

    Raises:
        ConfigError: a non-loopback ``host`` without a token, no Java, or a Spark before 4.0 (or one aiquery does
            not support).
    """
    _check_arguments(host, conf, token)
    token = token or secrets.token_urlsafe(32)
    check_java()
    warehouse = Path(warehouse_dir).absolute()
    warehouse.mkdir(parents=True, exist_ok=True)
    with output_to(spark_log):
        spark = local_spark(
            "aiquery-connect-server",
            master=master,
            warehouse_dir=str(warehouse),
            extra_conf=_server_conf(host, port, conf or {}),
        )
    try:
        attach_tables(spark, warehouse)
        register(spark, settings=settings)
        _create_usage_table(spark)
        _register_builtin(spark)
        return _serve(spark, host, token)
    except BaseException:
        ledger = ledger_for(spark)
        if ledger is not None:
            ledger.stop_background()
        spark.stop()
        raise


def _check_arguments(host: str, conf: Mapping[str, str] | None, token: str | None) -> None:
    """Refuse what start() must not do: an old Spark, its own settings as Spark conf, a network host without a
    token."""
    require_connect_spark(installed_spark().spark)
    owned = sorted(set(conf or {}) & set(OWN_SETTINGS))
    if owned:
        raise ConfigError(
            f"{', '.join(owned)} cannot be given as Spark settings: use {', '.join(OWN_SETTINGS[key] for key in owned)}"
        )
    if token is None and not _is_loopback(host):
        raise ConfigError(
            f"listening on {host} (not a loopback address) needs a token you chose and gave to your clients: "
            "pass --token (or token=...); a generated one is only offered on 127.0.0.1"
        )


def _create_usage_table(spark: SparkSession) -> None:
    """Clients read the usage table from their first query on: it exists before any ingestion has made it."""
    ledger = ledger_for(spark)
    if ledger is not None:
        ledger.ensure_table()


def require_connect_spark(version: str) -> None:
    """Refuse a Spark whose Connect server cannot be made safe: before 4.0 it checks no token (Spark 4 added
    ``spark.connect.authenticate.token``) and listens on every interface (no ``spark.connect.grpc.binding.address``).

    Raises:
        ConfigError: ``version`` is before 4.0.
    """
    if parse_spark_version(version) < (4, 0, 0):
        raise ConfigError(
            f"a Connect server needs Spark 4.0 or later, and this is Spark {version}: Spark 3.5's Connect "
            "server checks no token and listens on every interface, so it would serve anyone who reaches its port. "
            "Install pyspark 4 for the server (clients of 3.5 cannot use it either: they send a token only over TLS)"
        )


def _server_conf(host: str, port: int, conf: Mapping[str, str]) -> dict[str, str]:
    # Python workers must run this Python (aiquery and its dependencies are installed here).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # Spark 4 ships the Connect server in its jars (require_connect_spark refused any other).
    return {
        "spark.connect.grpc.binding.address": host,
        "spark.connect.grpc.binding.port": str(port),
        # register() sets it in the registering session only; Connect sessions copy the driver's configuration.
        ARROW_BATCH_BYTES: str(DEFAULT_ARROW_BATCH_BYTES),
        **conf,
    }


def _register_builtin(spark: SparkSession) -> None:
    """ai_query, the AI Functions and the server's functions in Spark's built-in registry, which every session made
    from now on copies."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    builtin = jvm.org.apache.spark.sql.catalyst.analysis.FunctionRegistry.builtin()
    functions = [*registered_builders(spark), *((function.name, function) for function in server_functions(spark))]
    for name, builder in functions:
        builtin.createOrReplaceTempFunction(name, builder, "python_udf")
    # The builders must stay referenced in Python while the JVM may call them back.
    _referenced.extend(builder for _, builder in functions)


_referenced: list[Any] = []


def _serve(spark: SparkSession, host: str, token: str) -> ConnectServer:
    from aiquery.connect.ingestion import SpoolWatch

    jvm = spark.sparkContext._jvm
    assert jvm is not None
    service = connect_service(jvm)
    if service is None:
        raise ConfigError(
            f"this Spark ({spark.version}) has no Spark Connect server classes (spark-connect_*.jar in its jars "
            "folder, which Spark 4's distributions and pip packages have)"
        )
    # On the running driver's configuration (SparkEnv's), which the service reads when it starts.
    spark.sparkContext._jsc.sc().conf().set(TOKEN_SETTING, token)  # type: ignore[union-attr]
    service.start(spark.sparkContext._jsc.sc())  # type: ignore[union-attr]
    server = ConnectServer(spark=spark, host=host, port=int(service.localPort()), token=token)
    server.watch = SpoolWatch.start_for(spark)
    return server


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: not known to be loopback
        return False


def _reaches_loopback(host: str) -> bool:
    """Whether a client on this machine reaches a server listening on ``host`` through ``localhost``."""
    return _is_loopback(host) or host in ("0.0.0.0", "::", "")
