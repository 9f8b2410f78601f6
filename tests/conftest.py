"""Shared fixtures: a clean environment, the local gateway emulator and one Spark session for the run."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Helpers the tests import by module name (tests/support/processes.py), whichever import mode pytest runs in.
sys.path.insert(0, str(Path(__file__).parent / "support"))

from processes import EXPECTED_SPARK

EMULATOR_TOKEN = "dapi-test-emulator-token-0123456789"

# Every JVM the tests start (their Spark sessions, the `aiquery run` and job processes, a standalone cluster's)
# compiles with C1 only. The suite is hundreds of short-lived JVMs whose hot code runs for seconds: C2's
# compilations cost more CPU than they win back (a 20-row `aiquery run` measured 53 s of CPU, 32 s with C1 only;
# tests/spark/test_ai_query_sql.py with one run_command test 128 s, 82 s). Benchmarks do not inherit it.
# JAVA_TOOL_OPTIONS set (even empty) in the environment wins.
os.environ.setdefault("JAVA_TOOL_OPTIONS", "-XX:TieredStopAtLevel=1")


_SCRUBBED_PREFIXES = ("AIQUERY_", "DATABRICKS_", "OPENAI_", "ANTHROPIC_", "GEMINI_", "GOOGLE_API")


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's credentials or configuration."""
    for name in list(os.environ):
        if name.startswith(_SCRUBBED_PREFIXES):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def gateway_session() -> Iterator[Any]:
    """One emulator process for the whole run; tests reset and configure it through `gateway`."""
    from aiquery.gateway import start_gateway

    with start_gateway(token=EMULATOR_TOKEN) as handle:
        yield handle


QUIET_WAIT_S = 30.0
"""How long a test waits at most for requests a previous test left behind (a cancelled job's tasks) to stop."""


def _wait_until_quiet(handle: Any, seen: int | None) -> None:
    """Let a previous test's stragglers end before the counters are reset, so they are not counted as this test's.

    Cheap when nothing straggles: one stats call, as long as no request is open and none came since that test ended.
    """
    deadline = time.monotonic() + QUIET_WAIT_S
    stats = handle.stats()
    while time.monotonic() < deadline and (stats["in_flight"] or (seen is not None and stats["requests"] != seen)):
        seen = stats["requests"]
        time.sleep(0.5)
        stats = handle.stats()


_requests_at_last_teardown: list[int | None] = [None]


@pytest.fixture
def gateway(gateway_session: Any) -> Iterator[Any]:
    """The shared emulator, reset to a healthy default (no latency, no faults, counters at zero)."""
    _wait_until_quiet(gateway_session, _requests_at_last_teardown[0])
    gateway_session.reset()
    yield gateway_session
    _requests_at_last_teardown[0] = gateway_session.stats()["requests"]


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One local[2] Spark session with Delta for the whole run (one per worker when pytest-xdist runs several)."""
    import fcntl

    from aiquery.spark.session import local_spark

    # Under pytest-xdist the workers start their sessions together; on a fresh machine each would download the
    # Delta JARs into the same ~/.ivy2 at once. The run's first start holds a lock in the run's shared temporary
    # folder (the workers' folders are its children) and then marks the file; the later ones wait for it only,
    # find the JARs cached and start side by side.
    with open(tmp_path_factory.getbasetemp().parent / "aiquery-spark-start.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lock.seek(0)
        first = lock.read() == ""
        if not first:
            fcntl.flock(lock, fcntl.LOCK_UN)
        # The coordinator listens where the workers reach the driver: loopback only, as every server in the tests.
        # A warehouse per session: under pytest-xdist each worker's usage table, usage folder and answer store are
        # its own, as they are for two applications (Spark's default, ./spark-warehouse, would be shared).
        session = local_spark(
            app_name="aiquery-tests",
            warehouse_dir=str(tmp_path_factory.mktemp("warehouse")),
            extra_conf={"spark.driver.host": "127.0.0.1"},
        )
        if first:
            lock.write("started\n")
    yield session
    session.stop()


@pytest.fixture(autouse=True)
def no_shared_answer_store(request: pytest.FixtureRequest) -> Iterator[None]:
    """In the shared Spark session the answer store is off unless a test turns it on (with a store of its own):
    a test that counts requests must not find answers another test paid for."""
    if "spark" not in request.fixturenames:
        yield
        return
    session = request.getfixturevalue("spark")
    session.conf.set("aiquery.cache.enabled", "false")
    yield
    session.conf.unset("aiquery.cache.enabled")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of the run's own (the Debian package; .ci/run installs it) on a free loopback port."""
    import shutil
    import socket
    import subprocess
    import time

    server = shutil.which("redis-server")
    assert server is not None, "redis-server is not installed (apt-get install redis-server; .ci/run does)"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    folder = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline and process.poll() is None, "redis-server did not start"
            time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="session", autouse=True)
def expected_spark(request: pytest.FixtureRequest) -> None:
    """With ``AIQUERY_EXPECT_SPARK``: the run uses that Spark and the installed aiquery, on the driver and in a worker.

    The compatibility suite runs in a virtual environment per Spark version (scripts/compat); this makes sure it
    cannot pass on another environment's Spark (a stray ``SPARK_HOME``, ``PYSPARK_PYTHON`` or ``PYTHONPATH``), nor
    on the source tree instead of the wheel installed in that environment.
    """
    if EXPECTED_SPARK is None:
        return

    def python_facts(_: object = None) -> tuple[str, str, str]:
        # Defined here so that cloudpickle ships it by value: a worker cannot import this conftest module.
        import sys

        import pyspark

        import aiquery

        return str(pyspark.__version__), sys.prefix, str(aiquery.__file__)

    spark = request.getfixturevalue("spark")
    assert spark.version == EXPECTED_SPARK, f"the driver's JVM runs Spark {spark.version}"
    worker = spark.sparkContext.parallelize([0], 1).map(python_facts).collect()[0]
    for side, (pyspark_version, prefix, package) in (("driver", python_facts()), ("worker", worker)):
        assert pyspark_version == EXPECTED_SPARK, f"the {side} imports pyspark {pyspark_version}"
        assert prefix == sys.prefix, f"the {side} runs the Python of {prefix}, not {sys.prefix}"
        assert Path(package).is_relative_to(prefix), f"the {side} imports aiquery from {package}, not the wheel"



# Test files whose tests share a machine-wide resource, so that pytest-xdist runs them in one worker, one after the
# other: a standalone worker without its own --work-dir writes executor folders under SPARK_HOME/work, named after
# an application id that two masters started in the same second can both hand out. tests/connect's files share
# one `aiquery connect-server` (a session fixture, so one more driver JVM per worker that runs any of them).
_SHARED_UNITS = {"tests/cluster/": "tests/cluster/", "tests/connect/": "tests/connect/"}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """pytest-xdist's unit of work (scripts/test runs ``-n 3 --dist loadfile --no-loadscope-reorder``): a test file,
    or the folder of ``_SHARED_UNITS``; so a file's module fixtures are built once, its tests run in their usual
    order in one worker, and the units go out in the order of ``pytest_collection_modifyitems``."""
    from xdist.scheduler import LoadScopeScheduling

    class FileScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return next((unit for prefix, unit in _SHARED_UNITS.items() if path.startswith(prefix)), path)

    return FileScheduling(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files holding a test marked ``slow`` run first: under pytest-xdist, one of them started last would leave the
    other workers idle at the end. The order of the files within each half, and of the tests within each file,
    stays the collection order."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: item.path not in slow_files)
