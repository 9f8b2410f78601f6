"""The schema is defined once: the DDL file, the Spark types and the dashboard SQL all agree with it."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from usage_helpers import finish, record

from aiquery.usage.dashboard import load_queries, with_table
from aiquery.usage.schema import (
    SPOOL_FIELDS,
    USAGE_COLUMNS,
    create_table_sql,
    parse_type,
    spool_ddl,
    usage_struct_type,
)
from aiquery.usage.spool import SpoolWriter

ROOT = Path(__file__).resolve().parents[2]
DDL_FILE = ROOT / "sql" / "usage_table.sql"


def ddl_file_create_table() -> str:
    text = DDL_FILE.read_text(encoding="utf-8")
    match = re.search(r"CREATE TABLE IF NOT EXISTS .*?(?=;[ \t]*(?:\n|$))", text, re.S)
    assert match, f"{DDL_FILE} has no CREATE TABLE statement"
    return match.group(0)


def test_ddl_file_is_the_code_schema() -> None:
    assert ddl_file_create_table() == create_table_sql("ai_gateway.usage")


def test_columns_are_unique_and_follow_the_gateway_table() -> None:
    names = [c.name for c in USAGE_COLUMNS]
    assert len(names) == len(set(names))
    # The system.ai_gateway.usage columns we keep, in their order, come first.
    gateway = [
        "account_id", "workspace_id", "request_id", "schema_version", "endpoint_id", "endpoint_name",
        "endpoint_tags", "event_time", "latency_ms", "time_to_first_byte_ms", "destination_type",
        "destination_name", "destination_model", "requester", "requester_type", "ip_address", "url",
        "user_agent", "api_type", "request_tags", "input_tokens", "output_tokens", "total_tokens",
        "token_details", "response_content_type", "status_code",
    ]  # fmt: skip
    assert names[: len(gateway)] == gateway


def test_every_column_is_filled_from_spool_fields_only() -> None:
    spool = {name for name, _ in SPOOL_FIELDS}
    for column in USAGE_COLUMNS:
        without_strings = re.sub(r"'[^']*'", "", column.source)
        words = set(re.findall(r"\b[a-z_][a-z0-9_]*\b(?!\s*\()", without_strings))
        sql_words = {"as", "null", "string", "map", "int", "false", "cast", "bigint"}
        assert words - sql_words <= spool, column.name


@pytest.mark.spark
def test_spark_parses_our_types_the_same(spark: Any) -> None:
    for column in USAGE_COLUMNS:
        parsed = spark.sql(f"SELECT CAST(NULL AS {column.type}) AS v").schema["v"].dataType
        assert parse_type(column.type) == parsed, column.name
    assert spark.createDataFrame([], spool_ddl()).schema.simpleString() == (
        "struct<" + ",".join(f"{n}:{parse_type(t).simpleString()}" for n, t in SPOOL_FIELDS) + ">"
    )


@pytest.fixture
def ddl_table(spark: Any, tmp_path: Path) -> Any:
    """A table created by running sql/usage_table.sql (renamed, at a temporary location)."""
    name = f"ai_gateway.usage_ddl_{uuid.uuid4().hex[:8]}"
    spark.sql("CREATE DATABASE IF NOT EXISTS ai_gateway")
    statement = ddl_file_create_table().replace("ai_gateway.usage (", f"{name} (", 1)
    statement = statement.replace("\nTBLPROPERTIES", f"\nLOCATION '{tmp_path / 'ddl'}'\nTBLPROPERTIES", 1)
    spark.sql(statement)
    yield name
    spark.sql(f"DROP TABLE IF EXISTS {name}")


@pytest.mark.spark
def test_table_from_ddl_file_has_the_code_schema(spark: Any, ddl_table: str) -> None:
    actual = spark.table(ddl_table).schema
    expected = usage_struct_type()
    assert [(f.name, f.dataType) for f in actual] == [(f.name, f.dataType) for f in expected]
    assert [f.metadata.get("comment") for f in actual] == [c.comment for c in USAGE_COLUMNS]


@pytest.mark.spark
def test_every_dashboard_query_uses_only_table_columns(spark: Any, ddl_table: str) -> None:
    queries = load_queries()
    assert {q.section for q in queries} == {"overview", "performance", "usage", "cost", "tokens", "errors", "store"}
    for query in queries:
        assert "ai_gateway.usage" in query.sql, query.name
        # Analysis resolves every column: an unknown one raises UNRESOLVED_COLUMN here.
        frame = spark.sql(with_table(query.sql, ddl_table))
        columns = frame.columns
        for option in ("x", "series"):
            if option in query.options:
                assert query.options[option] in columns, (query.name, option)
        for y in query.options.get("y", "").split(","):
            assert not y or y in columns, (query.name, y)


@pytest.mark.spark
@pytest.mark.parametrize(("old_version", "last_old_column"), [("aiquery-1", "event_date"), ("aiquery-3", "session_id")])
def test_an_older_table_gains_the_new_columns_and_keeps_its_rows(
    spark: Any, make_ledger: Callable[..., Any], tmp_path: Path, old_version: str, last_old_column: str
) -> None:
    # A usage table as an older aiquery made it: every column up to last_old_column, one row in it.
    old_columns = USAGE_COLUMNS[: [c.name for c in USAGE_COLUMNS].index(last_old_column) + 1]
    name = f"ai_gateway.usage_{old_version.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
    location = tmp_path / old_version
    columns = ", ".join(f"{c.name} {c.type}" for c in old_columns)
    spark.sql("CREATE DATABASE IF NOT EXISTS ai_gateway")
    spark.sql(f"CREATE TABLE {name} ({columns}) USING delta LOCATION '{location}'")
    spark.sql(
        f"INSERT INTO {name} (request_id, schema_version, endpoint_name, status_code, total_tokens) "
        f"VALUES ('old-1', '{old_version}', 'old-chat', 200, 42)"
    )
    ledger = make_ledger(name, path=str(location))
    with SpoolWriter(ledger.spool_dir) as writer:
        item = record("new-1", function_name="ai_query", session_id="connect-session-1", batch_id="batch_abc")
        writer.begin(item)
        writer.end(finish(item))
    assert ledger.ingest() == 1
    table = spark.table(name)
    assert table.columns == [c.name for c in USAGE_COLUMNS]
    rows = {r.request_id: r for r in table.collect()}
    old, new = rows["old-1"], rows["new-1"]
    assert (old.schema_version, old.total_tokens, old.session_id, old.batch_id) == (old_version, 42, None, None)
    assert (new.schema_version, new.cache_hit, new.function_name, new.estimate, new.session_id, new.batch_id) == (
        "aiquery-4",
        False,
        "ai_query",
        False,
        "connect-session-1",
        "batch_abc",
    )
    # Every dashboard query reads the migrated table, old rows included.
    for query in load_queries():
        spark.sql(with_table(query.sql, name)).collect()
