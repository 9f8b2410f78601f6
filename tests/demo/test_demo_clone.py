"""The README's main-job command, end to end, in a fresh clone: set-up, demo, and what it leaves behind.

The clone gets its own virtual environment from ``scripts/setup`` (pip, with the machine's package cache), so
this checks that the committed repository alone is enough. It takes a few minutes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aiquery.demo import GENRES

pytestmark = [pytest.mark.spark, pytest.mark.slow]

REPOSITORY = Path(__file__).resolve().parents[2]
DEMO_COMMAND = ["bash", "scripts/demo"]  # the README's first command
ENDPOINT_CALLS = {
    "demo-summarizer": 430,
    "demo-classifier": 430,
    "databricks-gte-large-en": 430,
    "demo-functions": 2 * 430,  # ai_summarize and ai_classify
}


def checkout(destination: Path) -> Path:
    """A fresh clone of the repository (committed files only)."""
    subprocess.run(["git", "clone", "--quiet", str(REPOSITORY), str(destination)], check=True, timeout=120)
    return destination


def clean_environment() -> dict[str, str]:
    """This process's environment without anything that would make the clone use this checkout's Python."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PYSPARK_", "SPARK_", "DATABRICKS_", "AIQUERY_"))
        and name not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    venv_bin = str(REPOSITORY / ".venv" / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    return env


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, subprocess.CompletedProcess[str]]]:
    clone = checkout(tmp_path_factory.mktemp("clone") / "aiquery")
    done = subprocess.run(
        DEMO_COMMAND, cwd=clone, env=clean_environment(), capture_output=True, text=True, timeout=1800
    )
    yield clone, done
    shutil.rmtree(clone / ".venv", ignore_errors=True)


def jvm_evidence(clone: Path) -> str:
    """What the demo's JVM left when it died: a crash report's first lines, the end of Spark's log."""
    parts = [
        f"{report.name}:\n" + "\n".join(report.read_text(errors="replace").splitlines()[:40])
        for report in clone.glob("**/hs_err_pid*.log")
    ]
    log = clone / "output" / "demo" / "logs" / "spark.log"
    if log.exists():
        parts.append("spark.log (end):\n" + "\n".join(log.read_text(errors="replace").splitlines()[-60:]))
    return "\n".join(parts)


def test_demo_runs_in_a_fresh_clone(demo_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    clone, done = demo_run
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:] + jvm_evidence(clone)
    assert (clone / ".venv" / "bin" / "aiquery").exists()  # scripts/setup prepared the environment
    assert "Demo finished" in done.stdout and "Traceback" not in done.stdout + done.stderr
    manifest = json.loads((clone / "output" / "demo" / "outputs.json").read_text())
    for table in [*manifest["tables"], manifest["usage_table"]]:
        assert f"{table['name']}" in done.stdout and table["location"] in done.stdout  # each output, and where
    assert manifest["dashboard"] in done.stdout and manifest["query_tag"] in done.stdout


def test_demo_tables_hold_the_results(spark: Any, demo_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    clone, done = demo_run
    assert done.returncode == 0
    manifest = json.loads((clone / "output" / "demo" / "outputs.json").read_text())
    tables = {table["name"]: table for table in manifest["tables"]}
    for table in tables.values():
        assert Path(table["location"]).is_relative_to(clone / "output" / "demo" / "warehouse")

    def read(name: str) -> Any:
        return spark.read.format("delta").load(tables[name]["location"])

    summaries = read("demo.summaries")
    assert summaries.count() == 430 == tables["demo.summaries"]["rows"]
    assert summaries.where("summary IS NULL OR length(summary) = 0").count() == 0

    genres = read("demo.genres")
    assert genres.count() == 430
    assert genres.where("error IS NOT NULL OR genre IS NULL").count() == 0
    assert {row.genre for row in genres.select("genre").distinct().collect()} <= set(GENRES)
    assert genres.where("confidence < 0 OR confidence > 1").count() == 0

    embeddings = read("demo.embeddings")
    assert embeddings.count() == 430
    assert embeddings.where("size(embedding) <> 1024").count() == 0
    norm = embeddings.selectExpr("aggregate(embedding, 0D, (acc, x) -> acc + x * x) AS n").first()
    assert abs(norm.n - 1.0) < 1e-3

    triage = read("demo.triage")
    assert triage.count() == 430
    assert triage.where("gist IS NULL OR length(gist) = 0").count() == 0
    assert {row.form for row in triage.select("form").distinct().collect()} <= {"prose", "verse", "drama"}


def test_usage_table_and_dashboard(spark: Any, demo_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    from pyspark.sql.functions import countDistinct

    clone, done = demo_run
    assert done.returncode == 0
    manifest = json.loads((clone / "output" / "demo" / "outputs.json").read_text())
    usage = spark.read.format("delta").load(manifest["usage_table"]["location"])
    this_run = usage.where(f"query_tag = '{manifest['query_tag']}'")
    calls = this_run.groupBy("endpoint_name").agg(countDistinct("call_id").alias("calls")).collect()
    assert {row.endpoint_name: row.calls for row in calls} == ENDPOINT_CALLS
    answered = this_run.where("status_code = 200").groupBy("endpoint_name").count().collect()
    assert {row.endpoint_name: row["count"] for row in answered} == ENDPOINT_CALLS  # every call succeeded once
    served = int(done.stdout.split("the emulator served ")[1].split()[0].replace(",", ""))
    assert this_run.count() == served  # one usage row per request the gateway saw, retries included

    dashboard = Path(manifest["dashboard"])
    assert dashboard == clone / "output" / "demo" / "usage_dashboard.html"
    page = dashboard.read_text(encoding="utf-8")
    assert page.lstrip().lower().startswith("<!doctype html")
    assert all(name in page for name in ENDPOINT_CALLS)
