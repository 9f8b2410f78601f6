"""``aiquery run JOB.sql --remote sc://...`` from the JVM-less client environment, against the Connect server."""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.spark, pytest.mark.slow]

JOB = """\
CREATE OR REPLACE TEMP VIEW docs AS SELECT id, 'Remote doc ' || id AS text FROM range(20);
CREATE OR REPLACE TEMP VIEW answers AS SELECT id, ai_query('connect-chat', text) AS answer FROM docs;
SELECT count(*) AS answered FROM answers WHERE answer IS NOT NULL;
"""


def run_remote(
    python: Path, cwd: Path, job: str, *args: str, token: str | None = None
) -> subprocess.CompletedProcess[str]:
    (cwd / "job.sql").write_text(job)
    command = [str(python.with_name("aiquery")), "run", "job.sql", "--progress-interval", "0.5", *args]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home())}  # no PYTHONPATH: only the thin environment
    if token is not None:
        env["SPARK_CONNECT_AUTHENTICATE_TOKEN"] = token
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_a_job_runs_through_the_server_with_progress_and_summary(
    connect_server: Any, thin_client_python: Path, tmp_path: Path
) -> None:
    tag = f"remote-{secrets.token_hex(3)}"
    # The token from the environment, as docs/connect.md says to give it: never on the command line.
    url = f"sc://localhost:{connect_server.port}"
    token = connect_server.token
    done = run_remote(thin_client_python, tmp_path, JOB, "--remote", url, "--query-tag", tag, token=token)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "process list" not in done.stderr
    assert f"3 statement(s), query tag {tag}" in done.stdout
    assert ["20"] in [line.split() for line in done.stdout.splitlines()]  # the SELECT's one row
    assert "Job finished: 3 of 3 statement(s)" in done.stdout
    summary = next((line.split() for line in done.stdout.splitlines() if line.strip().startswith("connect-chat")), None)
    assert summary is not None, done.stdout + done.stderr
    assert summary[1:4] == ["20", "20", "0"]  # requests, calls, errors: the server's ledger, by this run's tag
    assert "statement 3/3" in done.stderr and "requests 20" in done.stderr  # the progress line
    assert connect_server.token not in done.stdout + done.stderr


def test_the_cap_is_the_run_s_session_setting_and_the_job_cannot_lift_it(
    connect_server: Any, thin_client_python: Path, tmp_path: Path
) -> None:
    capped = run_remote(thin_client_python, tmp_path, JOB, "--remote", connect_server.url, "--max-tokens", "40")
    assert capped.returncode == 3, capped.stderr[-3000:]
    assert "AI_QUERY_BUDGET_EXCEEDED" in capped.stderr
    assert "the --remote URL holds the server's token" in capped.stderr  # it works, with a warning
    lifting = run_remote(
        thin_client_python,
        tmp_path,
        "-- raise the cap for tonight\nSET aiquery.budget.max_tokens = 100000000;\n" + JOB,
        "--remote",
        connect_server.url,
        "--max-tokens",
        "40",
    )
    assert lifting.returncode == 2, lifting.stderr[-3000:]
    assert "may not SET aiquery.budget" in lifting.stderr
    assert "statement(s)" not in lifting.stdout  # refused before anything ran


def test_a_url_that_is_not_spark_connect_is_a_usage_error(thin_client_python: Path, tmp_path: Path) -> None:
    done = run_remote(thin_client_python, tmp_path, JOB, "--remote", "localhost:1/;token=not-shown")
    assert done.returncode == 2
    assert "--remote takes a Spark Connect URL" in done.stderr and "not-shown" not in done.stderr
