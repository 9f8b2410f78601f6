"""One ``aiquery connect-server`` for the run, in its own process, against the shared emulator.

The server is what a user starts: the command line, a loopback port, a token, a configuration file naming the
emulator. Tests reach it through Spark Connect clients (``remote_session``) and look at what it did through its
log files and its usage table (read through a client, as a user would).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# The tests here import their helpers as ``connect_helpers``, whichever import mode pytest runs in.
sys.path.insert(0, str(Path(__file__).parent))

from connect_helpers import ConnectServerProcess
from processes import job_env

START_TIMEOUT_S = 240.0
"""The first start of a fresh machine resolves the Delta JARs; later starts take about 20 s."""
STOP_TIMEOUT_S = 90.0
SERVING = "aiquery connect-server: serving "

# The prices of tests/spark/test_spending_cap.py: a request costs a few cents, so a cap is reached in a few requests.
PRICE = "{ input_per_million = 600.0, output_per_million = 1200.0 }"
CONFIG = f"""\
[endpoints.connect-chat]
api = "chat"
model = "databricks-gpt-5-4"
max_concurrency = 4
price = {PRICE}

[cache]
enabled = false
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _read_url(process: subprocess.Popen[str], found: list[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith(SERVING):
            found.append(line[len(SERVING) :].strip())
            return


@pytest.fixture(scope="session")
def connect_server(gateway_session: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConnectServerProcess]:
    """``aiquery connect-server`` on a free loopback port with a token, serving the emulator's endpoints."""
    with launched_server(gateway_session, tmp_path_factory.mktemp("connect-server"), CONFIG) as server:
        yield server


@contextlib.contextmanager
def launched_server(gateway: Any, root: Path, config_text: str) -> Iterator[ConnectServerProcess]:
    """A server started as a user starts it (files under ``root``), stopped with SIGTERM at the end (unless the
    test stopped it), which must end it cleanly."""
    config = root / "aiquery.toml"
    config.write_text(config_text)
    token = "connect-test-" + os.urandom(12).hex()
    port = free_port()
    log_path, spark_log = root / "server.log", root / "spark.log"
    command = [
        sys.executable,
        "-m",
        "aiquery.cli",
        "connect-server",
        *("--host", "127.0.0.1", "--port", str(port), "--master", "local[2]", "--token", token),
        *("--warehouse", str(root / "warehouse"), "--spark-log", str(spark_log), "--config", str(config)),
        *("--conf", "spark.sql.shuffle.partitions=2"),
    ]
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, cwd=root, env=job_env(gateway, config), stdout=subprocess.PIPE, stderr=log, text=True
        )
    found: list[str] = []
    reader = threading.Thread(target=_read_url, args=(process, found), daemon=True)
    reader.start()
    reader.join(START_TIMEOUT_S)
    try:
        if not found:
            process.kill()
            pytest.fail(f"the server did not start: {log_path.read_text()[-3000:]}")
        yield ConnectServerProcess(found[0], token, port, log_path, spark_log, process)
    finally:
        status = stop(process)
    # A clean stop: SIGTERM ends it with status 0 after the last ingestion, with no traceback.
    assert status == 0, log_path.read_text()[-3000:]
    assert "aiquery connect-server: stopped" in log_path.read_text()


def stop(process: subprocess.Popen[str]) -> int | None:
    """SIGTERM, then the exit status; killed if it does not stop in time."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return None
    return process.returncode


@pytest.fixture
def remote_session(connect_server: ConnectServerProcess) -> Iterator[Callable[..., Any]]:
    """Makes Spark Connect sessions on the server (each its own: ``SparkSession.builder.remote(...).create()``);
    stops them at the end of the test."""
    from pyspark.sql import SparkSession

    made: list[Any] = []

    def make(**options: str) -> Any:
        session = SparkSession.builder.remote(connect_server.remote(**options)).create()
        made.append(session)
        return session

    yield make
    for session in made:
        # A session the test broke on purpose has nothing to stop.
        with contextlib.suppress(Exception):
            session.stop()


_CONNECT_MODE_VARIABLES = ("SPARK_CONNECT_MODE_ENABLED", "SPARK_REMOTE")


@pytest.fixture(autouse=True)
def classic_mode_restored() -> Iterator[None]:
    """After each test here, this process is a classic PySpark one again. Making a Connect session marks the whole
    process as Spark Connect (pyspark sets SPARK_CONNECT_MODE_ENABLED and never unsets it for a remote server), so
    every pandas UDF made afterwards is a Connect one: tests of other folders that pytest-xdist runs in this process
    later failed with "ai_query could not be built: SparkConnectGrpcException"."""
    saved = {name: os.environ.get(name) for name in _CONNECT_MODE_VARIABLES}
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def thin_client_python() -> Path:
    """The interpreter of a virtual environment with only ``pyspark-client`` (the .venv's Spark version, or the
    newest client release before it) and aiquery without extras: no JVM, no py4j (tests/support/thin_client.py)."""
    import pyspark
    from thin_client import thin_client_python as build

    return build(pyspark.__version__)
