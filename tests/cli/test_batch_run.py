"""Batch mode's acceptance: ``aiquery.run_batch`` / ``aiquery run --batch`` against the emulator's three batch APIs.

Three endpoints, one per API family, each with ``base_url`` at the emulator and ``batch = true``: every row answered
with no live request, one batch per endpoint, one billed record per line at half the live cost; failed and
expired lines sent live or failed (``--batch-fallback``); a chained job in two rounds; and ``aiquery run --batch``
killed (SIGKILL) between a create call and the state's update (the emulator holds the create answer back:
``batch_create_hold_s``), resumed without a second batch. (Killed while waiting: tests/provider_batches/
test_provider_run.py, in a process without Spark, which costs a JVM less.)
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ledgers import own_ledger_settings
from processes import wait_until

import aiquery
from aiquery.jobs.statements import JobResult

pytestmark = [pytest.mark.spark, pytest.mark.slow]

AIQUERY = Path(sys.executable).with_name("aiquery")
PRICE = {"input_per_million": 2.0, "output_per_million": 8.0}
FAMILIES = {
    "b-chat": ("chat", "gpt-6.2-sol", "/v1"),
    "b-claude": ("anthropic", "claude-sonnet-5", ""),
    "b-gemini": ("gemini", "gemini-3-flash", ""),
}
ROWS = 30
JOB = """\
CREATE OR REPLACE TEMP VIEW parcels AS SELECT id FROM range(${rows});
CREATE TABLE ${table} AS
SELECT id,
       ai_query('b-chat', 'Chat about parcel ${salt}' || id, failOnError => false) AS c,
       ai_query('b-claude', 'Claude about parcel ${salt}' || id, failOnError => false) AS a,
       ai_query('b-gemini', 'Gemini about parcel ${salt}' || id, failOnError => false) AS g
FROM parcels;
"""


def live_requests(gateway: Any) -> int:
    """Requests the emulator answered outside its batch APIs (live calls)."""
    routes = gateway.stats()["by_route"]
    return sum(sum(statuses.values()) for route, statuses in routes.items() if not route.startswith("batch/"))


def register(spark: Any, gateway: Any, tmp_path: Path, names: tuple[str, ...] = tuple(FAMILIES)) -> Any:
    settings = own_ledger_settings(gateway, tmp_path, "batch")
    for name in names:
        api, model, path = FAMILIES[name]
        settings = settings.with_endpoint(
            name, api=api, model=model, base_url=gateway.url + path, batch=True, price=PRICE
        )
    aiquery.register(spark, settings=settings)
    spark.conf.set("aiquery.cache.enabled", "true")
    return settings


def table_name(tmp_path: Path, stem: str) -> str:
    return f"{stem}_{tmp_path.name[-12:].replace('-', '_')}"


def ledger(spark: Any, tmp_path: Path, where: str) -> list[Any]:
    aiquery.flush_usage(spark)
    return spark.sql(f"SELECT * FROM delta.`{tmp_path / 'usage_table'}` WHERE {where}").collect()


def test_three_endpoints_run_in_one_batch_each_at_half_price(spark: Any, gateway: Any, tmp_path: Path) -> None:
    gateway.configure(batch_delay=0.5)
    register(spark, gateway, tmp_path)
    table = table_name(tmp_path, "batched")
    variables = {"rows": str(ROWS), "table": table, "salt": "one "}
    result: JobResult = aiquery.run_batch(
        spark, JOB, variables=variables, wait="2m", state_dir=str(tmp_path / "state"), query_tag="bt-one"
    )
    assert result.ok, result.error
    try:
        counts = spark.sql(f"SELECT count(*) AS n, count(c.result) AS c, count(a.result) AS a, count(g.result) AS g "
                           f"FROM {table}").first()  # fmt: skip
    finally:
        spark.sql(f"DROP TABLE IF EXISTS {table}")
    assert tuple(counts) == (ROWS, ROWS, ROWS, ROWS)
    assert live_requests(gateway) == 0
    assert {route: sum(statuses.values()) for route, statuses in gateway.stats()["by_route"].items()} == {
        "batch/openai": ROWS, "batch/anthropic": ROWS, "batch/gemini": ROWS,
    }  # fmt: skip
    lines = ledger(spark, tmp_path, "batch_id IS NOT NULL AND NOT cache_hit")
    assert len(lines) == 3 * ROWS and len({row.request_id for row in lines}) == 3 * ROWS
    assert len({(row.endpoint_name, row.batch_id) for row in lines}) == 3  # one batch per endpoint
    for row in lines:
        live = (row.input_tokens * PRICE["input_per_million"] + row.output_tokens * PRICE["output_per_million"]) / 1e6
        assert row.status_code == 200 and abs(row.cost - live / 2) < 1e-12, row
    hits = ledger(spark, tmp_path, "query_tag = 'bt-one' AND cache_hit")
    assert len(hits) == 3 * ROWS
    assert all(row.batch_id and row.cost == 0 and not row.avoided_cost for row in hits)
    assert any("batch mode" in note for note in result.notes)
    state = sqlite3.connect(tmp_path / "state" / "state.sqlite")
    assert state.execute("SELECT COUNT(*) FROM meta WHERE key = 'finished'").fetchone() == (1,)


@pytest.mark.parametrize("fallback", ["live", "fail"])
def test_failed_and_expired_lines_go_live_or_fail(spark: Any, gateway: Any, tmp_path: Path, fallback: str) -> None:
    # Lines finish over 2 s; the batch expires at 1 s with about half done; a tenth of the done lines failed.
    gateway.configure(batch_delay=2.0, batch_expire_s=1.0, batch_failed_share=0.1)
    register(spark, gateway, tmp_path, ("b-chat",))
    table = table_name(tmp_path, f"expiring_{fallback}")
    job = (
        f"CREATE TABLE {table} AS SELECT id, ai_query('b-chat', 'Expiring {fallback} ' || id, failOnError => false) "
        f"AS c FROM range(40)"
    )
    result = aiquery.run_batch(spark, job, wait="2m", fallback=fallback, state_dir=str(tmp_path / "state"))
    assert result.ok, result.error
    try:
        rows = spark.sql(f"SELECT c.result AS r, c.errorMessage AS e FROM {table}").collect()
    finally:
        spark.sql(f"DROP TABLE IF EXISTS {table}")
    state = sqlite3.connect(tmp_path / "state" / "state.sqlite")
    (answered,) = state.execute("SELECT COUNT(*) FROM answers").fetchone()
    (failed,) = state.execute("SELECT COUNT(*) FROM failures").fetchone()
    assert answered + failed == 40 and 5 <= failed <= 35, (answered, failed)
    # Nothing answered in the batch is paid again: only the failed and expired lines are sent live (or none).
    assert live_requests(gateway) == (failed if fallback == "live" else 0)
    if fallback == "live":
        assert all(row.r is not None for row in rows)
    else:
        errors = [row.e for row in rows if row.e is not None]
        assert len(errors) == failed
        assert all("AI_QUERY_BATCH_LINE_FAILED" in error or "batch" in error for error in errors)


def test_a_chained_job_finishes_in_two_rounds(spark: Any, gateway: Any, tmp_path: Path) -> None:
    gateway.configure(batch_delay=0.3)
    register(spark, gateway, tmp_path, ("b-chat", "b-claude"))
    first, second = table_name(tmp_path, "names"), table_name(tmp_path, "described")
    job = (
        f"CREATE TABLE {first} AS SELECT id, ai_query('b-chat', 'Name parcel ' || id) AS name FROM range(12);\n"
        f"CREATE TABLE {second} AS SELECT id, ai_query('b-claude', 'Describe ' || name) AS d FROM {first};"
    )
    result = aiquery.run_batch(spark, job, wait="2m", state_dir=str(tmp_path / "state"))
    try:
        assert result.ok, result.error
        assert spark.sql(f"SELECT count(d) AS n FROM {second}").first().n == 12
    finally:
        spark.sql(f"DROP TABLE IF EXISTS {second}")
        spark.sql(f"DROP TABLE IF EXISTS {first}")
    assert live_requests(gateway) == 0
    state = sqlite3.connect(tmp_path / "state" / "state.sqlite")
    assert state.execute("SELECT endpoint, round, COUNT(*) FROM requests GROUP BY 1, 2 ORDER BY 1").fetchall() == [
        ("b-chat", 1, 12), ("b-claude", 2, 12),
    ]  # fmt: skip
    assert any("in 2 round(s)" in note for note in result.notes), result.notes


def test_a_statement_with_ai_agg_runs_in_the_collect_pass_and_live_after(
    spark: Any, gateway: Any, tmp_path: Path
) -> None:
    """ai_agg gives NULL in the collect pass (it runs live), but its statement runs: a later one reads its view."""
    register(spark, gateway, tmp_path, ("b-chat",))
    table = table_name(tmp_path, "after_agg")
    job = (
        "CREATE OR REPLACE TEMP VIEW parcel_list AS "
        "SELECT ai_agg(CAST(id AS STRING), 'List the parcels') AS summary FROM range(5);\n"
        f"CREATE TABLE {table} AS SELECT ai_query('b-chat', 'About ' || summary) AS c FROM parcel_list;"
    )
    result = aiquery.run_batch(spark, job, wait="2m", state_dir=str(tmp_path / "state"))
    try:
        assert result.ok, result.error
        assert spark.sql(f"SELECT count(c) AS n FROM {table}").first().n == 1
    finally:
        spark.sql(f"DROP TABLE IF EXISTS {table}")
        spark.sql("DROP VIEW IF EXISTS parcel_list")
    assert any("ai_agg is never batched" in note for note in result.notes), result.notes


# ---- killed and resumed, in a process of its own ------------------------------------------------------------


def config_file(gateway: Any, folder: Path) -> Path:
    text = f'[usage]\ndir = "{folder / "usage"}"\npath = "{folder / "usage_table"}"\n\n'
    for name, (api, model, path) in FAMILIES.items():
        text += (
            f'[endpoints.{name}]\napi = "{api}"\nmodel = "{model}"\nbase_url = "{gateway.url}{path}"\nbatch = true\n'
            f"price = {{ input_per_million = 2.0, output_per_million = 8.0 }}\n\n"
        )
    path = folder / "aiquery.toml"
    path.write_text(text)
    return path


def batches(state_dir: Path) -> list[tuple[str, str | None]]:
    """(endpoint, provider id) of each batch the state holds, as a killed run left it."""
    path = state_dir / "state.sqlite"
    if not path.exists():
        return []
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            return db.execute("SELECT endpoint, provider_id FROM batches ORDER BY number").fetchall()
    except sqlite3.Error:  # created but not yet given its tables
        return []


def provider_batches(gateway: Any) -> int:
    """Batches the emulator holds, over its three APIs."""
    import asyncio

    from aiquery.config import load_settings
    from aiquery.provider_batches import ProviderHTTP, client_for

    async def count() -> int:
        http = ProviderHTTP()
        total = 0
        try:
            settings = load_settings({"DATABRICKS_TOKEN": gateway.token, "DATABRICKS_HOST": gateway.url})
            for name, (api, model, path) in FAMILIES.items():
                endpoint = settings.with_endpoint(
                    name, api=api, model=model, base_url=gateway.url + path, batch=True
                ).endpoint(name)
                total += len(await client_for(endpoint, http).list(None))
        finally:
            await http.aclose()
        return total

    return asyncio.run(count())


def test_killed_between_create_and_state_resumes_finding_the_batch_by_its_tag(
    gateway: Any, spark: Any, tmp_path: Path
) -> None:
    (tmp_path / "job.sql").write_text(JOB)
    config = config_file(gateway, tmp_path)
    state_dir = tmp_path / "state"
    command = [
        str(AIQUERY), "run", "job.sql", "--config", str(config), "--warehouse", "wh", "--show-rows", "0",
        "--var", f"rows={ROWS}", "--var", "table=killed", "--var", "salt=killed ",
        "--batch", "--batch-wait", "5m", "--batch-state", str(state_dir),
    ]  # fmt: skip
    env = {**os.environ, "DATABRICKS_HOST": gateway.url, "DATABRICKS_TOKEN": gateway.token}

    def killed_when(condition: Any, what: str) -> None:
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        try:
            assert wait_until(condition, timeout=240), f"the run never got {what}"
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(60)

    # 1. The first create call's answer is held back: the batch exists, the state has only its intent.
    gateway.configure(batch_create_hold_s=120.0, batch_delay=6.0)
    killed_when(lambda: provider_batches(gateway) == 1 and batches(state_dir) == [("b-chat", None)],
                "to its first create call")  # fmt: skip
    # 2. Resumed: the intent's batch is found by its tag, the other two created, waited for and stored.
    gateway.configure(batch_create_hold_s=0.0, batch_delay=1.0)
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    assert provider_batches(gateway) == 3
    assert live_requests(gateway) == 0
    answers = spark.read.format("delta").load(str(tmp_path / "wh" / "killed"))
    counts = answers.selectExpr("count(*)", "count(c.result)", "count(a.result)", "count(g.result)").first()
    assert tuple(counts) == (ROWS, ROWS, ROWS, ROWS)
    records = spark.read.format("delta").load(str(tmp_path / "usage_table"))
    lines = records.where("batch_id IS NOT NULL AND NOT cache_hit").select("request_id").collect()
    assert len(lines) == 3 * ROWS and len({row.request_id for row in lines}) == 3 * ROWS
