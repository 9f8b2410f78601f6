"""Stopping a Connect server in the middle of a query ends the query (rather than waiting for it) and every request
it sent is in its usage table."""

from __future__ import annotations

import secrets
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import CONFIG, launched_server, stop

pytestmark = [pytest.mark.spark, pytest.mark.slow]

LATENCY_MS = 3000
ROWS = 200
"""200 rows, two tasks sending 4 at a time, 3 s each: 75 s of requests, longer than the 30 s the Connect service's
own stop waits for its calls, so that requests are in flight when Spark stops."""
CLIENT = """
import sys
from pyspark.sql import SparkSession
spark = SparkSession.builder.remote(sys.argv[1]).create()
spark.sql(sys.argv[2]).collect()
"""


def test_a_server_stopped_mid_query_records_each_request_it_sent(
    gateway: Any, spark: Any, thin_client_python: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp("connect-stop")
    table_path = root / "usage_table"
    config = CONFIG + f'\n[usage]\ntable = "ai_gateway.usage_stop"\npath = "{table_path}"\n'
    run = secrets.token_hex(4)
    query = (
        "SELECT ai_query('connect-chat', 'stop me ' || id, failOnError => false, "
        f"requestTags => named_struct('run', '{run}')) AS a FROM range({ROWS})"
    )
    gateway.configure(latency_ms=LATENCY_MS)
    with launched_server(gateway, root, config) as server:
        (root / "client.py").write_text(CLIENT)
        # Its own process: a Connect client whose server went away retries for minutes; this one is killed.
        client = subprocess.Popen(
            [str(thin_client_python), str(root / "client.py"), server.remote(), query],
            env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 120
            while gateway.stats()["requests"] < 8 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert gateway.stats()["requests"] >= 8, "the query sent nothing"
            assert stop(server.process) == 0, Path(server.log_path).read_text()[-3000:]
        finally:
            client.kill()
            client.wait()
    sent = {
        entry["client_request_id"]: entry
        for entry in gateway.requests()
        if (entry.get("request_tags") or {}).get("run") == run
    }
    # Without the cancel, the stop waited for the whole query (every row sent) before it ended.
    assert len(sent) < ROWS, "every row was sent: the stop waited for the query instead of ending it"
    rows = spark.read.format("delta").load(str(table_path)).filter("NOT cache_hit").collect()
    assert sent and {row.request_id for row in rows} == set(sent)  # none sent and unrecorded
    assert len(rows) == len(sent)  # none twice
    # A request in flight at the cancel ends with its answer (its worker waits for it) or is closed as lost.
    lost = [row for row in rows if row.status_code is None]
    assert all(row.error_message for row in lost)
    assert {row.status_code for row in rows} <= {200, None}
