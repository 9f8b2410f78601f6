"""The coordinator on a real standalone cluster whose workers cannot see the driver's usage folder.

Each worker runs in a mount namespace of its own with an empty tmpfs over the usage folder, as separate machines
would: every usage record must reach the ledger through the coordinator.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from processes import job_env, reaped

pytestmark = [pytest.mark.spark, pytest.mark.slow]

JOB = Path(__file__).with_name("coordinator_job.py")
CONFIG = '[endpoints.cluster-chat]\napi = "chat"\nmax_concurrency = 8\n'
WARNING = "aiquery: lost the coordinator"


def run_job(gateway: Any, tmp_path: Path, cluster: Any, *extra: str) -> dict[str, Any]:
    config = tmp_path / "aiquery.toml"
    config.write_text(CONFIG)
    args = [str(tmp_path / "warehouse"), str(tmp_path / "usage"), "600", "4", *extra]
    job = subprocess.Popen(
        [sys.executable, str(JOB), cluster.master_url, *args],
        env=job_env(gateway, config),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with reaped(job):
        out, err = job.communicate(timeout=400)
    assert job.returncode == 0, err[-4000:]
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def ledger_equals_emulator(spark: Any, gateway: Any, tmp_path: Path) -> list[Any]:
    rows = spark.read.format("delta").load(str(tmp_path / "warehouse" / "usage_table")).collect()
    served = {entry["client_request_id"]: entry for entry in gateway.requests()}
    assert len(rows) == len({row.request_id for row in rows})  # nothing recorded twice
    assert {row.request_id: row.status_code for row in rows} == {rid: e["status"] for rid, e in served.items()}
    return rows


def executor_logs(work: Path) -> list[str]:
    return [path.read_text(errors="replace") for path in work.glob("app-*/*/stderr")]


def test_usage_reaches_the_ledger_without_a_shared_folder(
    spark: Any, gateway: Any, tmp_path: Path, standalone_cluster: Any
) -> None:
    gateway.configure(latency_ms=50)
    (tmp_path / "usage").mkdir()
    with standalone_cluster(workers=2, cores=1, work_dir=tmp_path / "work", private_dirs=(tmp_path / "usage",)) as c:
        result = run_job(gateway, tmp_path, c)
    assert result["rows"] == result["answered"] == result["distinct"] == 600 and result["errors"] == 0
    rows = ledger_equals_emulator(spark, gateway, tmp_path)
    assert result["ingested"] == len(rows) == 600
    # The workers never wrote where the driver keeps its journal (their view of it was their own empty tmpfs).
    assert not any(WARNING in log for log in executor_logs(tmp_path / "work"))


def test_a_listener_stopped_mid_job_loses_nothing(
    spark: Any, gateway: Any, tmp_path: Path, standalone_cluster: Any
) -> None:
    gateway.configure(latency_ms=300)
    (tmp_path / "usage").mkdir()
    with standalone_cluster(workers=2, cores=1, work_dir=tmp_path / "work", private_dirs=(tmp_path / "usage",)) as c:
        result = run_job(gateway, tmp_path, c, "150", "4")
    assert result["rows"] == result["answered"] == 600 and result["errors"] == 0
    assert result["requests_while_down"] > 0  # the workers kept sending while the driver could not be reached
    rows = ledger_equals_emulator(spark, gateway, tmp_path)
    assert result["ingested"] == len(rows)
    logs = executor_logs(tmp_path / "work")
    assert len(logs) == 2
    assert [log.count(WARNING) for log in logs] == [1, 1], [log[-2000:] for log in logs]
