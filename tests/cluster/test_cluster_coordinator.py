"""The coordinator on a real standalone cluster whose workers cannot see the driver's usage folder.

Each worker runs in a mount namespace of its own with an empty tmpfs over the usage folder, as on separate machines:
every usage record must reach the ledger through the coordinator. One application runs its queries (see
coordinator_job.py): a plain one, one during which the coordinator's listener stops for 4 s, one under a spending
cap and again without it, and one during which the test kills an executor. Afterwards the ledger equals the
emulator's log, request for request.
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

from aiquery.usage.recovery import LOST_WORKER_MESSAGE

pytestmark = [pytest.mark.spark, pytest.mark.slow]

JOB = Path(__file__).with_name("coordinator_job.py")
ROWS, PARTITIONS = 600, 4
PRICE = {"input_per_million": 600.0, "output_per_million": 1200.0}
"""capped-chat's price (as CONFIG gives it), in USD per million tokens."""
CAP = 0.8
"""USD: a tenth of what the capped query's 600 requests cost at PRICE (about 0.0137 USD each)."""
CONFIG = "".join(
    f'[endpoints.{name}]\napi = "chat"\nmax_concurrency = 8\n\n'
    for name in ("plain-chat", "dropped-chat", "killed-chat")
) + (
    '[endpoints.capped-chat]\napi = "chat"\nmax_concurrency = 8\n'
    "price = { input_per_million = 600.0, output_per_million = 1200.0 }\n"
)
WARNING = "aiquery: lost the coordinator"


def executors_of(worker_pid: int) -> list[int]:
    return [pid for pid in descendants(worker_pid) if "CoarseGrainedExecutorBackend" in command_line(pid)]


def request_cost(entry: dict[str, Any]) -> float:
    """A request's cost at PRICE, from the emulator's token counts."""
    return (
        entry["input_tokens"] * PRICE["input_per_million"] + entry["output_tokens"] * PRICE["output_per_million"]
    ) / 1e6


def served(gateway: Any, model: str) -> list[dict[str, Any]]:
    return [entry for entry in gateway.requests() if entry["model"] == model]


def test_usage_reaches_the_ledger_through_a_listener_stop_and_an_executor_loss(
    spark: Any, gateway: Any, tmp_path: Path, standalone_cluster: Any
) -> None:
    # 8 in flight per executor at 200 ms: 40 rows/s each, so each query runs for about 8 s.
    gateway.configure(latency_ms=200)
    config = tmp_path / "aiquery.toml"
    config.write_text(CONFIG)
    usage = tmp_path / "usage"
    usage.mkdir()
    work, warehouse = tmp_path / "work", tmp_path / "warehouse"
    job_log = tmp_path / "job-stderr.log"
    with (
        standalone_cluster(workers=2, cores=1, work_dir=work, private_dirs=(usage,)) as cluster,
        job_log.open("w") as stderr,
    ):
        job = subprocess.Popen(
            [
                sys.executable,
                str(JOB),
                cluster.master_url,
                str(warehouse),
                str(usage),
                str(ROWS),
                str(PARTITIONS),
                str(CAP),
            ],
            env=job_env(gateway, config),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        with reaped(job):
            assert job.stdout is not None
            assert job.stdout.readline().strip() == "KILL", job_log.read_text()[-3000:]
            assert wait_until(lambda: len(served(gateway, "killed-chat")) >= 60, timeout=180), "no requests"
            victims = executors_of(cluster.workers[0].pid)
            assert len(victims) == 1, victims
            os.kill(victims[0], signal.SIGKILL)
            out, _ = job.communicate(timeout=400)
    assert job.returncode == 0, job_log.read_text()[-4000:]
    result = json.loads(out.strip().splitlines()[-1])
    for phase in ("plain", "dropped", "uncapped", "killed"):
        outcome = result[phase]
        assert (outcome["rows"], outcome["distinct"], outcome["answered"], outcome["errors"]) == (ROWS, ROWS, ROWS, 0)

    # The ledger equals the emulator's log, request for request; nothing is recorded twice. (Answers from the
    # store are rows of their own, no HTTP request.)
    ledger = spark.read.format("delta").load(str(warehouse / "usage_table")).collect()
    rows = [row for row in ledger if not row.cache_hit]
    log = {entry["client_request_id"]: entry for entry in gateway.requests()}
    counts = collections.Counter(row.request_id for row in ledger)
    twice = [row for row in ledger if counts[row.request_id] > 1]
    assert len(ledger) == len(counts) == result["ingested"], sorted(
        (row.request_id, row.endpoint_name, row.status_code, row.error_message, row.task_attempt_id) for row in twice
    )
    missing = set(log) - {row.request_id for row in rows}
    # When it fails, say where: which query's requests, when, and what the executors logged about the coordinator.
    assert not missing, (
        sorted((log[key]["model"], round(log[key]["time"] % 1000, 2), key) for key in missing),
        result,
        [
            line
            for path in work.glob("app-*/*/stderr")
            for line in path.read_text(errors="replace").splitlines()
            if "aiquery" in line
        ][-40:],
    )
    assert {row.request_id for row in rows} == set(log)
    lost = [row for row in rows if row.status_code is None]
    assert all(row.status_code == log[row.request_id]["status"] for row in rows if row.status_code is not None)

    # The session's spending cap, across both workers: spent at most the cap plus what was in flight when
    # it was reached (2 executors x 8), as the emulator's log says; rows past it carry the cap's error, every
    # answered row was kept; the re-run without the cap sent only the refused rows (the rest came from the store).
    capped_log = served(gateway, "capped-chat")
    first, rerun = capped_log[: result["capped"]["served"]], capped_log[result["capped"]["served"] :]
    spent = sum(request_cost(entry) for entry in first)
    most = max(request_cost(entry) for entry in first)
    capped = result["capped"]
    assert capped["rows"] == capped["answered"] + capped["errors"] == ROWS
    assert 0 < capped["answered"] == len(first) and capped["errors"] == capped["cap_errors"] > 0, capped
    assert 0.5 * CAP <= spent <= CAP + 2 * 8 * most, (spent, CAP, most)
    assert len(rerun) == capped["cap_errors"]
    whole = spent + sum(request_cost(entry) for entry in rerun)
    assert 7 * CAP <= whole <= 13 * CAP, whole  # the job as designed: about ten times the cap

    # The listener stop: workers kept sending while cut off, each warned once, and delivered everything after.
    assert result["dropped"]["requests_while_down"] > 0
    warnings = [path.read_text(errors="replace").count(WARNING) for path in work.glob("app-*/*/stderr")]
    assert sum(warnings) == 2 and max(warnings) == 1, warnings  # the two executors running then; none since

    # The executor loss: its task ran again elsewhere; what it had in flight is in the ledger as lost (the driver
    # closed those requests once Spark reported the task failed), and the emulator did receive them.
    assert "ExecutorLostFailure" in job_log.read_text(errors="replace")
    killed = [row for row in rows if log[row.request_id]["model"] == "killed-chat"]
    assert lost and all(row in killed and row.error_message == LOST_WORKER_MESSAGE for row in lost)
    assert all(log[row.request_id]["status"] == 200 for row in lost)
    # The lost task's retry asked the answer store first: of its rows, it sent again only those in flight at the
    # kill; the ones the lost executor had answered came from the store.
    attempts_by_prompt = collections.defaultdict(set)
    for row in killed:
        attempts_by_prompt[row.request_hash].add(row.task_attempt_id)
    resent = {fingerprint for fingerprint, attempts in attempts_by_prompt.items() if len(attempts) > 1}
    assert resent == {row.request_hash for row in lost}, "the retry paid again for answers it had, or lost some"
    assert any(row.cache_hit and row.endpoint_name == "killed-chat" for row in ledger)
    print("\ncluster:", json.dumps({**result, "lost": len(lost), "requests": len(rows), "capped_spent": spent}))
