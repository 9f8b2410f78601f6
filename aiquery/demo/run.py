"""``aiquery demo``: the main job on embedded defaults, with no credentials and no network beyond loopback.

It starts the local gateway emulator (a child process on 127.0.0.1, with a little latency and a few injected
429 and 503 answers so retries show in the usage table), points ``DATABRICKS_HOST`` and ``DATABRICKS_TOKEN``
at it in this process only, starts local Spark with Delta, and runs the demo job (``aiquery/data/demo_job.sql``)
over the sample books through the same runner as ``aiquery run``. Then it shows a sample, flushes the usage
ledger, renders the dashboard and says where everything is.
"""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import aiquery
from aiquery.config import load_settings
from aiquery.demo.outputs import TableOutput, describe_table, sample_text, write_manifest
from aiquery.gateway import GatewayHandle, start_gateway
from aiquery.jobs.script import prepare_job
from aiquery.jobs.session import check_java, output_to, quiet_pyspark_loggers, start_local_spark
from aiquery.jobs.statements import new_query_tag, report, run_statements
from aiquery.spark.registry import ledger_for
from aiquery.usage.dashboard import render_dashboard

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["BOOKS", "DATA_DIR", "DEMO_TABLES", "GENRES", "DemoResult", "run_demo"]

DATA_DIR = Path(aiquery.__file__).resolve().parent / "data"
BOOKS = DATA_DIR / "books.jsonl"
"""The sample dataset: 430 short texts about public-domain books (see ``aiquery/data/README.md``)."""
DEMO_JOB = DATA_DIR / "demo_job.sql"
DEMO_CONFIG = DATA_DIR / "demo.toml"
BOOK_ROWS = 430
DEMO_TABLES = ("demo.summaries", "demo.genres", "demo.embeddings", "demo.triage")
GENRES = (
    "adventure",
    "romance",
    "mystery",
    "horror",
    "science fiction",
    "satire",
    "tragedy",
    "fantasy",
    "poetry",
    "non-fiction",
)
"""The labels of the classification's JSON schema (``demo_job.sql`` spells them out; a test checks both agree)."""

# Enough latency and faults to look like a real endpoint, little enough to keep the demo short.
EMULATOR_SETTINGS: dict[str, Any] = {
    "latency_min_ms": 20.0,
    "latency_max_ms": 150.0,
    "fault_retry_after_s": 0.25,
    "seed": 7,
}
EMULATOR_FAULTS = {"429": 0.02, "503": 0.01}


@dataclass
class DemoResult:
    """What the demo produced.

    Attributes:
        ok: every step worked.
        output: the output folder.
        tables: the demo's Delta tables.
        usage_table: the usage table, or None if it could not be read.
        dashboard: the dashboard HTML file, or None if it was not rendered.
        query_tag: the tag of the demo's requests in the usage table.
        seconds: wall time.
    """

    ok: bool
    output: Path
    tables: list[TableOutput] = field(default_factory=list)
    usage_table: TableOutput | None = None
    dashboard: Path | None = None
    query_tag: str = ""
    seconds: float = 0.0


class _Steps:
    """Numbered step lines with timings: ``[2/7] Spark with Delta ... 18.2 s``."""

    def __init__(self, total: int, out: IO[str]) -> None:
        self.total, self.out, self.number = total, out, 0
        self.started = time.monotonic()

    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        self.number += 1
        self.out.write(f"[{self.number}/{self.total}] {title}\n")
        self.out.flush()
        began = time.monotonic()
        yield
        self.out.write(f"      done in {time.monotonic() - began:.1f} s\n")
        self.out.flush()

    def say(self, text: str) -> None:
        self.out.write(f"      {text}\n")
        self.out.flush()


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for this process while the block runs, then put the old values back."""
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_demo(
    output: str | Path, *, rows: int | None = None, faults: bool = True, out: IO[str] | None = None
) -> DemoResult:
    """Run the demo; see the module docstring.

    Args:
        output: folder for the warehouse (Delta tables, usage table), the dashboard, the config and logs.
        rows: use the first ``rows`` texts of the sample; None for all 430.
        faults: let the emulator answer about 2 % of requests with 429 and 1 % with 503 (they are retried).
        out: where to print (default stdout).

    Returns:
        What was produced, with ``ok`` False if the job failed.

    Raises:
        ConfigError: Java is missing.
    """
    out = out or sys.stdout
    folder = Path(output).absolute()
    folder.mkdir(parents=True, exist_ok=True)
    check_java()
    steps = _Steps(7, out)
    out.write(f"aiquery demo: ai_query on local Spark against the local gateway emulator; output in {folder}\n")
    result = DemoResult(ok=False, output=folder)
    with steps.step("Gateway emulator (loopback; it stands in for a Databricks workspace)"):
        gateway_log = folder / "logs" / "gateway.log"
        with output_to(gateway_log):
            gateway = start_gateway(**EMULATOR_SETTINGS, fault_rates=EMULATOR_FAULTS if faults else {})
        steps.say(f"{gateway.url}, pid {gateway.pid}; its log: {gateway_log}")
    try:
        # The credentials exist in this process only, for as long as the demo runs.
        with _environment({"DATABRICKS_HOST": gateway.url, "DATABRICKS_TOKEN": gateway.token or ""}):
            config = folder / "aiquery.toml"
            shutil.copyfile(DEMO_CONFIG, config)
            settings = load_settings(config_path=config)
            with steps.step("Spark with Delta Lake (the first run downloads the Delta JARs into ~/.ivy2)"):
                spark_log = folder / "logs" / "spark.log"
                spark = start_local_spark("aiquery-demo", warehouse_dir=folder / "warehouse", spark_log=spark_log)
                quiet_pyspark_loggers()
                aiquery.register(spark, settings=settings)
                steps.say(f"{spark.sparkContext.master}, Spark {spark.version}; its log: {spark_log}")
            try:
                _run_job(spark, gateway, steps, result, rows)
            finally:
                spark.stop()
    finally:
        gateway.close()
    result.seconds = time.monotonic() - steps.started
    _print_outputs(result, out)
    return result


def _run_job(spark: SparkSession, gateway: GatewayHandle, steps: _Steps, result: DemoResult, rows: int | None) -> None:
    folder = result.output
    variables = {"books": str(BOOKS), "rows": str(rows or BOOK_ROWS)}
    statements = prepare_job(DEMO_JOB.read_text(encoding="utf-8"), variables)
    result.query_tag = new_query_tag("demo")
    ledger = ledger_for(spark)
    with steps.step(f"Demo job {DEMO_JOB.name}: summaries, genres with responseFormat, embeddings, AI Functions"):
        job = run_statements(
            spark,
            statements,
            query_tag=result.query_tag,
            out=steps.out,
            progress=steps.out,
            show_rows=0,
            indent="      ",
        )
    if job.failed is not None:
        report(job, steps.out, ledger_table=ledger.table, indent="      ")
        steps.out.write(f"aiquery demo: {job.failed.describe()} failed: {job.error}\n")
        return
    with steps.step("A sample of the results"):
        steps.out.write(textwrap.indent(sample_text(spark), "    ") + "\n")
    with steps.step(f"Usage ledger: every HTTP request ai_query made, in the Delta table {ledger.table}"):
        report(job, steps.out, ledger_table=ledger.table, indent="      ")
        served = gateway.stats()
        statuses = ", ".join(f"{count:,} x {status}" for status, count in sorted(served["by_status"].items()))
        steps.say(f"the emulator served {served['requests']:,} requests ({statuses}); 429 and 503 were retried")
    with steps.step("Usage dashboard"):
        result.dashboard = Path(render_dashboard(spark, table=ledger.table, output=folder / "usage_dashboard.html"))
    with steps.step("Outputs"):
        result.tables = [describe_table(spark, name) for name in DEMO_TABLES]
        result.usage_table = describe_table(spark, ledger.table)
    write_manifest(
        folder / "outputs.json",
        tables=result.tables,
        usage_table=result.usage_table,
        dashboard=result.dashboard,
        query_tag=result.query_tag,
        warehouse=folder / "warehouse",
        config=folder / "aiquery.toml",
        spark_log=folder / "logs" / "spark.log",
    )
    result.ok = True


def _print_outputs(result: DemoResult, out: IO[str]) -> None:
    folder = result.output
    if not result.ok:
        out.write(f"\naiquery demo did not finish ({result.seconds:.0f} s); Spark's log: {folder / 'logs'}\n")
        return
    lines = ["", f"Demo finished in {result.seconds:.0f} s. Outputs:"]
    for table in [*result.tables, *([result.usage_table] if result.usage_table else [])]:
        lines.append(f"  {table.name:<18} {table.rows:>6,} rows   {table.location}")
    lines += [
        f"  {'dashboard':<18} {'':>11}   {result.dashboard}",
        f"  {'endpoints config':<18} {'':>11}   {folder / 'aiquery.toml'}",
        f"  {'manifest':<18} {'':>11}   {folder / 'outputs.json'}",
        f"  {'Spark log':<18} {'':>11}   {folder / 'logs' / 'spark.log'}",
        "",
        f"Open the dashboard:  file://{result.dashboard}",
        f"Read a table:        spark.read.format('delta').load('{result.tables[0].location}')",
        f"Usage of this run:   SELECT * FROM ai_gateway.usage WHERE query_tag = '{result.query_tag}'",
        f"Render it again:     aiquery dashboard --warehouse {folder / 'warehouse'} --output usage_dashboard.html",
    ]
    out.write("\n".join(lines) + "\n")
    out.flush()
