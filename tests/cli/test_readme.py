"""The reference in the README and docs/ agrees with the code: endpoint options and defaults, command options,
spark-submit, Spark versions."""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

from aiquery import config
from aiquery.cli import build_parser
from aiquery.gateway.command import build_parser as gateway_parser
from aiquery.jobs.submit import build_parser as submit_parser
from aiquery.spark.session import delta_configs
from aiquery.spark.versions import DELTA_JARS, OLDEST_SPARK

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = {page.name: page.read_text(encoding="utf-8") for page in sorted((ROOT / "docs").glob("*.md"))}
CONFIGURATION = DOCS["configuration.md"]
BATCH_JOBS = DOCS["batch_jobs.md"]
CLUSTERS = DOCS["clusters.md"]


def table_rows(page: str, heading: str) -> dict[str, list[str]]:
    """The first column of the table under ``heading`` in ``page`` (without backticks) to the other columns."""
    section = page.split(heading, 1)[1]
    rows = {}
    for line in section.splitlines()[2:]:
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [cell.strip() for cell in line.strip("|").split(" | ")]
        if set(line) <= {"|", "-"}:  # the separator row
            continue
        rows[cells[0].strip("`")] = cells[1:]
    return rows


def test_endpoint_options_table_lists_every_option_with_its_default() -> None:
    rows = table_rows(CONFIGURATION, "## Endpoint options")
    rows.pop("Option", None)
    # The price's currency is an option of its own in the file.
    assert set(rows) == {f.name for f in dataclasses.fields(config.Endpoint)} - {"name", "token"} | {"currency"}
    assert rows["max_concurrency"][0] == f"`{config.DEFAULT_MAX_CONCURRENCY}`"
    assert rows["timeout"][0] == f"`{config.DEFAULT_TIMEOUT_S:g}`"
    assert rows["deadline"][0] == f"`{config.DEFAULT_DEADLINE_S:g}`"
    assert rows["max_retries"][0] == f"`{config.DEFAULT_MAX_RETRIES}`"
    assert rows["max_retry_after"][0] == f"`{config.DEFAULT_MAX_RETRY_AFTER_S:g}`"
    assert rows["token_env"][0] == f'`"{config.DEFAULT_TOKEN_ENV}"`'


def test_api_table_gives_each_apis_gateway_path() -> None:
    rows = table_rows(CONFIGURATION, "| `api` | Default `base_url` |")
    assert {name: cells[0].strip("`") for name, cells in rows.items()} == {
        api: f"$DATABRICKS_HOST{path}" for api, path in config.APIS.items()
    }


def test_usage_options_table_matches_the_settings() -> None:
    rows = table_rows(CONFIGURATION, "## `[usage]` options")
    rows.pop("Option", None)
    assert set(rows) == {f.name for f in dataclasses.fields(config.UsageSettings)}
    assert rows["table"][0] == f'`"{config.DEFAULT_USAGE_TABLE}"`'


def options(parser: argparse.ArgumentParser) -> set[str]:
    found = {flag for action in parser._actions for flag in action.option_strings}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= options(sub)
    return found


def test_every_command_option_in_the_readme_and_docs_exists() -> None:
    known = options(build_parser()) | options(submit_parser()) | options(gateway_parser())
    known |= {"--master", "--packages", "--conf"}  # spark-submit's own
    # development.md quotes ruff's and pytest's options, coordinator.md and reliability.md the benchmarks'
    others = {"development.md", "coordinator.md", "reliability.md"}
    commands = README + "".join(text for name, text in DOCS.items() if name not in others)
    mentioned = set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", commands))
    assert mentioned <= known, mentioned - known


def test_spark_submit_command_has_the_delta_settings() -> None:
    block = BATCH_JOBS.split("## The same job through spark-submit", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    assert '--packages "$(.venv/bin/python -m aiquery.spark.versions)"' in block
    for key, value in delta_configs().items():
        if key != "spark.jars.packages":
            assert f"--conf {key}={value}" in block
    assert '"$(.venv/bin/python -m aiquery.jobs.submit --path)"' in block


def test_spark_versions_table_gives_the_delta_coordinate_of_each_supported_line() -> None:
    rows = table_rows(CLUSTERS, "## Spark versions and Delta Lake")
    rows.pop("Spark", None)
    found = {}
    for spark, cells in rows.items():
        major, minor = spark.split()[0].split(".")[:2]
        found[(int(major), int(minor))] = cells[0].split("`")[1]
    assert found == {line: jar.coordinate(jar.scala[0]) for line, jar in DELTA_JARS.items()}
    oldest = ".".join(map(str, OLDEST_SPARK))
    assert f"| {oldest} to " in CLUSTERS
