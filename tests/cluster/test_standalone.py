"""ai_query on a Spark standalone cluster (a master and a worker on loopback, started by the test)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from processes import job_env

pytestmark = [pytest.mark.spark, pytest.mark.slow]

JOB = Path(__file__).with_name("job.py")


@pytest.mark.compat
def test_ai_query_on_a_standalone_cluster(gateway: Any, tmp_path: Path, standalone_cluster: Any) -> None:
    config = tmp_path / "aiquery.toml"
    config.write_text('[endpoints.cluster-chat]\napi = "chat"\nmax_concurrency = 8\n')
    env = job_env(gateway, config)
    with standalone_cluster(workers=1, cores=2, work_dir=tmp_path / "work") as cluster:
        done = subprocess.run(
            [sys.executable, str(JOB), cluster.master_url, "300", "4"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"rows": 300, "answered": 300, "errors": 0, "distinct": 300, "executors": 1}
    assert gateway.stats()["requests"] == 300
