"""An executor killed mid-job on a real standalone cluster (a master and two workers on loopback).

The killed executor's task is retried elsewhere (spark.task.maxFailures = 4), so the query completes with every
row; the requests that executor made, finished or in flight, reach the ledger through journal recovery; no
request_id is recorded twice.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from processes import command_line, descendants, job_env, reaped, wait_until
from reliability_helpers import assert_ledger_matches_emulator, served_by

pytestmark = [pytest.mark.spark, pytest.mark.slow]

JOB = Path(__file__).with_name("job.py")
ROWS, PARTITIONS = 600, 4
CONFIG = '[endpoints.cluster-chat]\napi = "chat"\nmax_concurrency = 8\n'


def executors_of(worker_pid: int) -> list[int]:
    return [pid for pid in descendants(worker_pid) if "CoarseGrainedExecutorBackend" in command_line(pid)]


def test_killed_executor_job_completes_and_ledger_keeps_its_requests(
    spark: Any, gateway: Any, tmp_path: Path, standalone_cluster: Any
) -> None:
    # 8 in flight at 400 ms: 20 rows/s per executor, so each 150-row task runs for about 8 s.
    gateway.configure(latency_ms=400)
    config = tmp_path / "aiquery.toml"
    config.write_text(CONFIG)
    env = job_env(gateway, config)
    warehouse, usage_dir = tmp_path / "warehouse", tmp_path / "usage"
    args = [str(warehouse), str(usage_dir), "ai_gateway.usage_cluster", str(ROWS), str(PARTITIONS)]
    with standalone_cluster(workers=2, cores=1, work_dir=tmp_path / "work") as cluster:
        job = subprocess.Popen(
            [sys.executable, str(JOB), "cluster", cluster.master_url, *args],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        with reaped(job):
            assert wait_until(lambda: len(served_by(gateway, "cluster-chat")) >= 60, timeout=180), "no requests"
            victims = executors_of(cluster.workers[0].pid)
            assert len(victims) == 1, victims
            served_before_kill = len(served_by(gateway, "cluster-chat"))
            os.kill(victims[0], signal.SIGKILL)
            out, err = job.communicate(timeout=300)
    assert job.returncode == 0, err[-4000:]
    result = json.loads(out.strip().splitlines()[-1])
    assert result == {"rows": ROWS, "distinct": ROWS, "answered": ROWS, "errors": 0, "ingested": result["ingested"]}
    assert "ExecutorLostFailure" in err  # the driver saw the executor die under a running task

    served = served_by(gateway, "cluster-chat")
    # The lost task's rows were asked again by its retry: more requests than rows.
    assert len(served) > ROWS
    assert served_before_kill < len(served)
    rows = spark.read.format("delta").load(str(warehouse / "usage_table")).collect()
    assert result["ingested"] == len(rows) == len(served)
    # Requests in flight when the executor died have no status in the ledger (recovery could not know the
    # answer); the emulator answered them 200. Everything else matches request for request.
    lost = [row for row in rows if row.status_code is None]
    assert all("lost" in row.error_message for row in lost)
    by_id = {entry["client_request_id"]: entry for entry in served}
    assert all(by_id[row.request_id]["status"] == 200 for row in lost)
    complete = [row for row in rows if row.status_code is not None]
    assert_ledger_matches_emulator(complete, [by_id[row.request_id] for row in complete])
    assert {row.request_id for row in rows} == set(by_id)

    # The killed attempt's finished requests are in the ledger: prompts sent by two task attempts, the first of
    # which is the attempt that died.
    attempts_by_prompt = collections.defaultdict(set)
    for row in rows:
        attempts_by_prompt[row.request_hash].add(row.task_attempt_id)
    resent = {h for h, attempts in attempts_by_prompt.items() if len(attempts) > 1}
    assert resent, "no row was sent by two task attempts: the kill did not hit a running task"
    killed_attempts = {min(attempts_by_prompt[h]) for h in resent}
    finished_by_killed = [r for r in complete if r.task_attempt_id in killed_attempts]
    assert finished_by_killed, "the requests the lost executor finished are missing from the ledger"
    print(
        "\nexecutor loss:",
        json.dumps(
            {
                "served": len(served),
                "resent_rows": len(resent),
                "finished_by_killed_executor": len(finished_by_killed),
                "in_flight_when_killed": len(lost),
            }
        ),
    )
