"""The demo's data, job and endpoints file are consistent with each other and with what the README says."""

from __future__ import annotations

import json
import re

from aiquery.config import load_settings
from aiquery.demo.run import BOOK_ROWS, BOOKS, DEMO_CONFIG, DEMO_JOB, GENRES
from aiquery.jobs.script import prepare_job


def test_sample_dataset_is_a_few_hundred_small_rows() -> None:
    rows = [json.loads(line) for line in BOOKS.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == BOOK_ROWS == 430
    assert [row["id"] for row in rows] == list(range(1, 431))
    assert all(set(row) == {"id", "title", "author", "year", "kind", "text"} for row in rows)
    assert {row["kind"] for row in rows} == {"synopsis", "note"}
    assert len({row["text"] for row in rows}) == 430 and all(20 < len(row["text"]) < 400 for row in rows)
    assert BOOKS.stat().st_size < 200_000


def test_classification_labels_match_the_jobs_json_schema() -> None:
    job = DEMO_JOB.read_text(encoding="utf-8")
    enum = re.search(r'"enum": \[(.*?)\]', job, re.S)
    assert enum is not None
    assert tuple(json.loads("[" + enum.group(1) + "]")) == GENRES


def test_demo_job_prepares_with_the_demos_variables() -> None:
    statements = prepare_job(DEMO_JOB.read_text(encoding="utf-8"), {"books": str(BOOKS), "rows": "430"})
    assert [s.first_line.split(" AS")[0] for s in statements] == [
        "CREATE DATABASE IF NOT EXISTS demo",
        "CREATE OR REPLACE TEMP VIEW books",
        "CREATE OR REPLACE TABLE demo.summaries",
        "CREATE OR REPLACE TABLE demo.genres",
        "CREATE OR REPLACE TABLE demo.embeddings",
        "CREATE OR REPLACE TABLE demo.triage",
    ]
    assert f"json.`{BOOKS}`" in statements[1].sql and "id <= 430" in statements[1].sql


def test_demo_endpoints_resolve_against_a_gateway() -> None:
    settings = load_settings(
        {"DATABRICKS_HOST": "http://127.0.0.1:1", "DATABRICKS_TOKEN": "t"}, config_path=DEMO_CONFIG
    )
    assert settings.endpoint("demo-summarizer").api == "chat"
    assert settings.endpoint("demo-classifier").api == "chat"
    assert settings.endpoint("databricks-gte-large-en").api == "embeddings"
    assert settings.functions.endpoint_for("ai_classify") == "demo-functions"
    assert settings.usage.table == "ai_gateway.usage"


def test_every_demo_endpoint_has_a_price() -> None:
    settings = load_settings(
        {"DATABRICKS_HOST": "http://127.0.0.1:1", "DATABRICKS_TOKEN": "t"}, config_path=DEMO_CONFIG
    )
    names = ["demo-summarizer", "demo-classifier", "databricks-gte-large-en", "demo-functions"]
    assert set(names) <= set(settings.endpoints)
    unpriced = [name for name in settings.endpoints if settings.endpoint(name).price is None]
    assert unpriced == []  # the demo's cost table would print "no price" for these
