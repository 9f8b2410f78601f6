"""Cancelled queries stop sending within seconds and their usage is still ingested; a hung endpoint never holds
a job past the call deadline.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from processes import reaped, time_until_quiet, wait_until
from reliability_helpers import assert_ledger_matches_emulator, ledger_rows, served_by

import aiquery

pytestmark = [pytest.mark.spark, pytest.mark.slow]

AIQUERY = Path(sys.executable).with_name("aiquery")

CONFIG = """
[endpoints.slow-chat]
api = "chat"
max_concurrency = 16

[endpoints.hung-chat]
api = "chat"
timeout = 1
deadline = 4
"""
# A cancelled task's Python worker learns nothing until Spark kills it, spark.python.task.killTimeout (2 s) after the
# interrupt; until then it keeps sending from its window. Measured: 2.9-3.2 s.
STOP_WITHIN_S = 8.0


def test_cancelled_job_group_stops_sending_and_its_usage_is_ingested(
    spark: Any, gateway: Any, register_with_ledger: Callable[..., str]
) -> None:
    table = register_with_ledger(gateway, CONFIG)
    # 2 workers x 16 in flight at 300 ms: about 100 rows/s, so 10,000 rows would take a minute and a half.
    gateway.configure(latency_ms=300)
    failure: list[BaseException] = []

    def run() -> None:
        # Job groups are per thread (PySpark pins each Python thread to a JVM thread).
        spark.sparkContext.setJobGroup("reliability-cancel", "cancel me", interruptOnCancel=True)
        try:
            spark.sql("SELECT ai_query('slow-chat', CAST(id AS STRING)) AS s FROM range(0, 10000, 1, 2)").write.format(
                "noop"
            ).mode("overwrite").save()
        except BaseException as error:  # the cancellation, reported to the test thread
            failure.append(error)

    job = threading.Thread(target=run, daemon=True)
    job.start()
    assert wait_until(lambda: len(served_by(gateway, "slow-chat")) >= 150, timeout=120), "the job never got going"
    spark.sparkContext.cancelJobGroup("reliability-cancel")
    stop_s, sent = time_until_quiet(lambda: len(served_by(gateway, "slow-chat")), quiet_for=3.0, timeout=60)
    job.join(60)
    assert not job.is_alive()
    assert failure and "cancel" in str(failure[0]).lower(), failure
    assert sent < 10000
    assert stop_s < STOP_WITHIN_S, f"requests kept coming for {stop_s:.1f} s after the cancel"
    assert wait_until(lambda: gateway.stats()["in_flight"] == 0, timeout=10)

    aiquery.flush_usage(spark)
    rows = ledger_rows(spark, table)
    served = served_by(gateway, "slow-chat")
    assert len(rows) == len(served) == sent
    # Requests cut off by the cancel have no status (the emulator had answered or was about to); the others
    # match request for request.
    cut_off = [row for row in rows if row.status_code is None]
    assert all(row.error_message for row in cut_off)
    by_id = {entry["client_request_id"]: entry for entry in served}
    assert {row.request_id for row in rows} == set(by_id)
    complete = [row for row in rows if row.status_code is not None]
    assert_ledger_matches_emulator(complete, [by_id[row.request_id] for row in complete])
    reasons = sorted({row.error_message for row in cut_off})
    print(
        "\ncancel:", json.dumps({"stop_s": round(stop_s, 2), "sent": sent, "cut_off": len(cut_off), "reasons": reasons})
    )


def test_a_hung_endpoint_never_holds_the_job_past_the_call_deadline(
    spark: Any, gateway: Any, register_with_ledger: Callable[..., str]
) -> None:
    table = register_with_ledger(gateway, CONFIG)
    # Python workers started first (a few seconds on a cold session), so the timings below are the deadline's.
    spark.sql("SELECT ai_query('slow-chat', CAST(id AS STRING)) FROM range(0, 8, 1, 2)").collect()
    gateway.configure(fault_rates={"hang": 1.0}, hang_seconds=30.0)
    started = time.monotonic()
    rows = spark.sql(
        "SELECT id, ai_query('hung-chat', CONCAT('hang ', CAST(id AS STRING)), failOnError => false) AS r "
        "FROM range(0, 8, 1, 2)"
    ).collect()
    lenient_s = time.monotonic() - started
    assert len(rows) == 8
    for row in rows:
        assert row.r.result is None
        assert "deadline of 4 s" in row.r.errorMessage and "no response within" in row.r.errorMessage, row

    started = time.monotonic()
    with pytest.raises(Exception, match="hung-chat") as raised:
        spark.sql("SELECT ai_query('hung-chat', 'hang strict') FROM range(1)").collect()
    strict_s = time.monotonic() - started
    assert "deadline of 4 s" in str(raised.value)
    # The deadline is 4 s; Spark's own scheduling and the result's return add a little.
    assert lenient_s < 4 + 6 and strict_s < 4 + 6, (lenient_s, strict_s)

    aiquery.flush_usage(spark)
    ledger = ledger_rows(spark, table, "endpoint_name = 'hung-chat'")
    served = served_by(gateway, "hung-chat")
    assert all(entry["status"] == "hang" for entry in served)
    assert_ledger_matches_emulator(ledger, served)
    # The last attempt of a call gets what is left of the deadline, so its own timeout may be shorter than 1 s.
    assert all("no response within" in row.error_message for row in ledger)
    print("\nhung endpoint:", json.dumps({"lenient_s": round(lenient_s, 2), "strict_s": round(strict_s, 2)}))


def test_ctrl_c_in_aiquery_run_stops_sending_and_ingests_what_was_sent(
    gateway: Any, spark: Any, tmp_path: Path
) -> None:
    (tmp_path / "aiquery.toml").write_text(CONFIG)
    (tmp_path / "long.sql").write_text(
        "CREATE TABLE answers AS\n"
        "SELECT id, ai_query('slow-chat', 'Ctrl-C row ' || id) AS a FROM range(0, 10000, 1, 2);\n"
    )
    gateway.configure(latency_ms=300)
    env = {**os.environ, "DATABRICKS_HOST": gateway.url, "DATABRICKS_TOKEN": gateway.token}
    command = [str(AIQUERY), "run", "long.sql", "--config", "aiquery.toml", "--warehouse", "wh"]
    command += ["--query-tag", "ctrl-c"]
    job = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with reaped(job):
        assert wait_until(lambda: len(served_by(gateway, "slow-chat")) >= 150, timeout=180), "the job never got going"
        job.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal sends
        stop_s, sent = time_until_quiet(lambda: len(served_by(gateway, "slow-chat")), quiet_for=3.0, timeout=60)
        out, err = job.communicate(timeout=120)
    assert job.returncode == 130, err[-3000:]
    assert "aiquery run: interrupted during statement 1" in err, err[-3000:]
    assert "Traceback" not in err, err[-3000:]  # one line says what happened; no py4j or PySpark tracebacks
    assert "Job interrupted: 0 of 1 statement(s)" in out, out
    assert stop_s < STOP_WITHIN_S, f"requests kept coming for {stop_s:.1f} s after Ctrl-C"
    assert sent < 10000
    assert gateway.stats()["in_flight"] == 0  # connections closed, nothing left waiting on the endpoint
    # The usage of every request sent was ingested before the command ended, and the summary says so.
    usage = spark.read.format("delta").load(str(tmp_path / "wh" / "ai_gateway.db" / "usage"))
    rows = usage.where("query_tag = 'ctrl-c'").select("request_id", "status_code", "error_message").collect()
    served = served_by(gateway, "slow-chat")
    assert len(rows) == len(served) == sent
    assert {row.request_id for row in rows} == {entry["client_request_id"] for entry in served}
    assert "slow-chat" in out and "Usage recorded in" in out
    # No table was left half-written by the interrupted CREATE TABLE AS: Delta writes data files before its commit,
    # and without a commit in _delta_log there is no table to read.
    assert not list((tmp_path / "wh" / "answers").glob("_delta_log/*.json"))
    print("\nctrl-c:", json.dumps({"stop_s": round(stop_s, 2), "sent": sent}))
