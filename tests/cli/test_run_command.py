"""``aiquery run`` end to end, each in its own process (one Spark application per process) against the emulator."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.spark, pytest.mark.slow]

AIQUERY = Path(sys.executable).with_name("aiquery")
CONFIG = '[endpoints.job-chat]\napi = "chat"\nmodel = "databricks-gpt-5-4"\nmax_concurrency = 8\n'

MULTI_STATEMENT_JOB = """\
-- Nightly summaries. ${unused} in a comment needs no value.
CREATE OR REPLACE TEMP VIEW docs AS
SELECT id, 'Document ' || id || ' is about ${topic}; it is short.' AS text FROM range(${n});

CREATE TABLE summaries AS
SELECT id, ai_query('job-chat', 'Summarize: ' || text) AS summary FROM docs;

INSERT INTO summaries SELECT ${n} + 1, 'added by hand';

SELECT count(*) AS total, count_if(summary LIKE 'Summary %') AS answered FROM summaries;
"""

# Row 3 fails with a 400; rows 5 to 9 sit in other partitions (on any number of cores but one) with answers that
# take 20 s, so their requests are in flight when the failure aborts the job.
FAILING_JOB = """\
INSERT INTO summaries SELECT 100, 'second run';
CREATE OR REPLACE TABLE broken AS
SELECT ai_query('job-chat', CASE WHEN id = 3 THEN 'x [[fault:400]]'
                                 WHEN id >= 5 THEN 'slow [[latency_ms:20000]] ' || id
                                 ELSE 'y ' || id END) AS s FROM range(10);
CREATE TABLE never AS SELECT 1 AS x;
"""


def run_aiquery(gateway: Any, cwd: Path, *args: str, config: str = CONFIG) -> subprocess.CompletedProcess[str]:
    (cwd / "aiquery.toml").write_text(config)
    env = {**os.environ, "DATABRICKS_HOST": gateway.url, "DATABRICKS_TOKEN": gateway.token}
    command = [
        str(AIQUERY),
        "run",
        *args,
        "--config",
        "aiquery.toml",
        "--warehouse",
        "wh",
        "--progress-interval",
        "0.5",
    ]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_variables_and_several_statements(gateway: Any, spark: Any, tmp_path: Path) -> None:
    (tmp_path / "nightly.sql").write_text(MULTI_STATEMENT_JOB)
    done = run_aiquery(
        gateway, tmp_path, "nightly.sql", "--var", "topic=whales", "--var", "n=40", "--query-tag", "nightly-test"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "aiquery run nightly.sql: 4 statement(s), query tag nightly-test" in out
    for header in (
        "[1/4] line 2: CREATE OR REPLACE TEMP VIEW docs AS",
        "[2/4] line 5: CREATE TABLE summaries AS",
        "[3/4] line 8: INSERT INTO summaries SELECT ${n} + 1, 'added by hand'".replace("${n}", "40"),
        "[4/4] line 10: SELECT count(*) AS total",
    ):
        assert header in out
    assert ["41", "40"] in [line.split() for line in out.splitlines()]  # the last statement's result
    assert "Job finished: 4 of 4 statement(s)" in out
    summary = next(line.split() for line in out.splitlines() if line.strip().startswith("job-chat"))
    assert summary[1:4] == ["40", "40", "0"]  # requests, calls, errors from the usage table
    assert "statement 2/4" in done.stderr and "requests 40" in done.stderr  # the progress line

    assert gateway.stats()["requests"] == 40
    table = spark.read.format("delta").load(str(tmp_path / "wh" / "summaries"))
    assert table.count() == 41
    # The emulator's answer repeats the prompt's first words: the variable reached the endpoint.
    assert table.where("summary LIKE 'Summary %: Summarize Document % is about whales it is short%'").count() == 40
    usage = spark.read.format("delta").load(str(tmp_path / "wh" / "ai_gateway.db" / "usage"))
    assert usage.where("query_tag = 'nightly-test' AND endpoint_name = 'job-chat'").count() == 40


def test_failing_statement_stops_the_job_with_its_number_and_cause(gateway: Any, spark: Any, tmp_path: Path) -> None:
    # A table left by an earlier run, which the job's first statement appends to: found in the warehouse again.
    spark.range(2).selectExpr("id", "'old' AS summary").write.format("delta").save(str(tmp_path / "wh" / "summaries"))
    (tmp_path / "second.sql").write_text(FAILING_JOB)
    done = run_aiquery(gateway, tmp_path, "second.sql", "--query-tag", "failing-job")
    assert done.returncode == 1, done.stdout + done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last == (
        "aiquery run: statement 2 (line 2: CREATE OR REPLACE TABLE broken AS) failed: "
        "ClientError: endpoint 'job-chat': HTTP 400: The request is invalid."
    )
    assert "Traceback" not in done.stderr
    assert "Job failed: 1 of 3 statement(s)" in done.stdout and "[3/3]" not in done.stdout
    assert spark.read.format("delta").load(str(tmp_path / "wh" / "summaries")).count() == 3
    assert not (tmp_path / "wh" / "never").exists()
    # The failed request and every request cut off when the job failed (the slow rows', and any other still in
    # flight) are failed requests of the job: in the summary, and in the ledger by the time the summary is printed.
    summary = next(line.split() for line in done.stdout.splitlines() if line.strip().startswith("job-chat"))
    requests, errors = int(summary[1]), int(summary[3])
    usage = spark.read.format("delta").load(str(tmp_path / "wh" / "ai_gateway.db" / "usage"))
    rows = usage.where("query_tag = 'failing-job'").select("request_id", "status_code", "error_message").collect()
    assert requests == len(rows) == len({row.request_id for row in rows})
    assert {entry["client_request_id"] for entry in gateway.requests()} <= {row.request_id for row in rows}
    failed = [row for row in rows if row.status_code != 200]
    assert errors == len(failed)
    assert [row.status_code for row in failed].count(400) == 1
    cut_off = [row for row in failed if row.status_code is None]
    assert len(cut_off) == len(failed) - 1 >= 5
    assert all("before the response arrived" in row.error_message for row in cut_off)


def test_the_same_job_through_spark_submit(gateway: Any, spark: Any, tmp_path: Path) -> None:
    from aiquery.spark.session import delta_configs

    (tmp_path / "aiquery.toml").write_text(CONFIG)
    (tmp_path / "job.sql").write_text(
        "CREATE TABLE answers AS SELECT id, ai_query('job-chat', 'Say ' || id) AS answer FROM range(${n})"
    )
    launcher, package = (
        subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, check=True).stdout.strip()
        for module, *args in (("aiquery.jobs.submit", "--path"), ("aiquery.spark.versions",))
    )
    confs = [f"{key}={value}" for key, value in delta_configs().items() if key != "spark.jars.packages"]
    confs += ["spark.sql.sources.default=delta", f"spark.sql.warehouse.dir={tmp_path / 'wh'}"]
    command = [
        str(Path(sys.executable).with_name("spark-submit")),
        "--master",
        "local[2]",
        "--packages",
        package,  # the README's way to pick the Delta matched to this Spark
        *[arg for conf in confs for arg in ("--conf", conf)],
        launcher,
        "job.sql",
        "--var",
        "n=25",
        "--config",
        "aiquery.toml",
    ]
    env = {
        **os.environ,
        "DATABRICKS_HOST": gateway.url,
        "DATABRICKS_TOKEN": gateway.token,
        "PYSPARK_PYTHON": sys.executable,
    }
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Job finished: 1 of 1 statement(s)" in done.stdout
    assert spark.read.format("delta").load(str(tmp_path / "wh" / "answers")).count() == 25
    assert gateway.stats()["requests"] == 25


CAPPED_JOB = """\
RESET aiquery.budget.max_cost;
SET aiquery.budget.max_cost = 1000;
CREATE TABLE capped AS
SELECT id, ai_query('priced-chat', 'Summarize row ' || id, failOnError => false) AS s FROM range(0, 300, 1, 2);
SELECT count(s.result) AS answered, count_if(s.errorMessage LIKE '%[AI_QUERY_BUDGET_EXCEEDED]%') AS capped FROM capped;
"""


def test_max_cost_stops_sending_keeps_the_answers_and_exits_3(gateway: Any, spark: Any, tmp_path: Path) -> None:
    # --max-cost is the application's cap: the job's RESET cannot remove it, nor its SET raise it.
    priced = (
        '[endpoints.priced-chat]\napi = "chat"\nmax_concurrency = 4\n'
        "price = { input_per_million = 600.0, output_per_million = 1200.0 }\n"
    )
    (tmp_path / "capped.sql").write_text(CAPPED_JOB)
    done = run_aiquery(gateway, tmp_path, "capped.sql", "--max-cost", "0.3", config=priced)
    assert done.returncode == 3, done.stdout + done.stderr[-3000:]
    out = done.stdout
    answered, capped = next(
        [int(word) for word in line.split()]
        for line in out.splitlines()
        if line.split()[:1] and line.split()[0].isdigit()
    )
    sent = gateway.stats()["requests"]
    assert answered == sent > 0 and capped == 300 - answered > 0
    assert "Job finished: 4 of 4 statement(s)" in out
    cap_line = next(line for line in out.splitlines() if "Spending cap" in line)
    assert cap_line.strip().startswith("Spending cap 0.3 USD (aiquery run --max-cost):")
    assert f"REACHED: {capped} request(s) not sent" in cap_line
    spent = float(cap_line.split(":")[1].split()[0])
    assert 0 < spent <= 0.3 + 2 * 4 * 0.02, cap_line  # the cap plus what 2 workers x 4 had in flight
    # A bad value is refused before anything runs.
    wrong = run_aiquery(gateway, tmp_path, "capped.sql", "--max-cost", "-1", config=priced)
    assert wrong.returncode == 2 and "--max-cost must be a positive amount" in wrong.stderr


ESTIMATED_JOB = """\
CREATE OR REPLACE TEMP VIEW docs AS
SELECT id, 'Ticket ' || id || ' ' || repeat('text ', CAST(pmod(id, 30) AS INT)) AS body FROM range(${n});
CREATE TABLE summaries AS SELECT id, ai_query('job-chat', 'Summarize: ' || body) AS s FROM docs;
DELETE FROM summaries WHERE id = 1;
"""


def test_estimate_samples_the_job_without_writing_its_tables(gateway: Any, spark: Any, tmp_path: Path) -> None:
    (tmp_path / "job.sql").write_text(ESTIMATED_JOB)
    (tmp_path / "aiquery.toml").write_text(CONFIG)
    env = {**os.environ, "DATABRICKS_HOST": gateway.url, "DATABRICKS_TOKEN": gateway.token}
    command = [str(AIQUERY), "estimate", "job.sql", "--var", "n=3000", "--config", "aiquery.toml", "--warehouse", "wh"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    out = done.stdout
    assert "job-chat: 3,000 rows" in out
    # 1 % of 3,000 rows is fewer than 100: a second run sent enough (the first run's rows came from the store).
    sent = gateway.stats()["requests"]
    assert 100 <= sent <= 200 and f"The estimate sent {sent} request(s)" in out
    assert "statement 3 (line 4: DELETE FROM summaries WHERE id = 1) was not run" in out
    assert "the cost of endpoint 'job-chat': it has no price" in out
    assert not (tmp_path / "wh" / "summaries").exists()  # the job's table was not written
