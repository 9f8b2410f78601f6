"""ai_query in Spark SQL and the DataFrame API against the emulator: types, values, forms, errors, request counts."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

import aiquery
from aiquery.config import UsageSettings, load_settings

pytestmark = [pytest.mark.spark, pytest.mark.compat]

CONFIG = """
[endpoints.my-chat]
api = "chat"
model = "databricks-gpt-5-4"
max_concurrency = 16

[endpoints.my-anthropic]
api = "anthropic"
model = "claude-sonnet"

[endpoints.new-anthropic]
api = "anthropic"
model = "claude-sonnet"
anthropic_version = "2026-10-21"

[endpoints.my-gemini]
api = "gemini"

[endpoints.my-responses]
api = "responses"
"""


@pytest.fixture
def sql(spark: Any, gateway: Any, tmp_path: Path) -> Any:
    """Register ai_query against the emulator (usage ledger off: these tests are about the function)."""
    config = tmp_path / "aiquery.toml"
    config.write_text(CONFIG)
    settings = load_settings({"DATABRICKS_HOST": gateway.url, "DATABRICKS_TOKEN": gateway.token}, config_path=config)
    settings = dataclasses.replace(settings, usage=UsageSettings(enabled=False))
    aiquery.register(spark, settings=settings)
    spark.createDataFrame(
        [(i, f"Document {i} talks about topic {i % 3}.") for i in range(12)] + [(99, None)],
        "id INT, text STRING",
    ).createOrReplaceTempView("docs")
    return spark.sql


def served(gateway: Any) -> int:
    return int(gateway.stats()["requests"])


def test_databricks_summary_example(sql: Any, gateway: Any) -> None:
    df = sql("SELECT id, ai_query('my-chat', 'Summarize the following text: ' || text) AS summary FROM docs")
    assert df.schema["summary"].dataType.simpleString() == "string"
    rows = {r.id: r.summary for r in df.collect()}
    assert rows[99] is None
    assert all(isinstance(rows[i], str) and rows[i] for i in range(12))
    assert len({rows[i] for i in range(12)}) == 12
    assert served(gateway) == 12  # one per non-NULL row, none for NULL


def test_positional_named_and_mixed_forms_agree(sql: Any, gateway: Any) -> None:
    forms = [
        "ai_query('my-chat', text)",
        "ai_query('my-chat', text, 'STRING')",
        "ai_query('my-chat', text, 'STRING', true)",
        "ai_query(endpoint => 'my-chat', request => text)",
        "ai_query(request => text, endpoint => 'my-chat')",
        "ai_query('my-chat', request => text, failOnError => true)",
        "ai_query('my-chat', text, modelParameters => named_struct('max_tokens', 64))",
    ]
    results = [sorted(r[0] for r in sql(f"SELECT {form} FROM docs WHERE id < 4").collect()) for form in forms]
    assert all(result == results[0] for result in results[:6])
    assert all(isinstance(v, str) for v in results[6])


def test_fail_on_error_false_returns_struct_and_keeps_other_rows(sql: Any, gateway: Any) -> None:
    df = sql("""
        SELECT id, ai_query('my-chat', CASE WHEN id = 2 THEN 'boom [[fault:400]]' ELSE text END,
                            failOnError => false) AS r
        FROM docs""")
    assert df.schema["r"].dataType.simpleString() == "struct<result:string,errorMessage:string>"
    rows = {row.id: row.r for row in df.collect()}
    assert rows[2].result is None and "HTTP 400" in rows[2].errorMessage and "my-chat" in rows[2].errorMessage
    assert all(rows[i].result and rows[i].errorMessage is None for i in range(12) if i != 2)
    assert rows[99] is not None and rows[99].result is None and rows[99].errorMessage is None


def test_reading_both_fields_costs_one_call_per_row(sql: Any, gateway: Any) -> None:
    rows = sql("""
        SELECT r.result, r.errorMessage
        FROM (SELECT ai_query('my-chat', text, failOnError => false) AS r FROM docs)""").collect()
    assert len(rows) == 13
    assert served(gateway) == 12


def test_fail_on_error_true_fails_the_query_with_the_cause(sql: Any, gateway: Any) -> None:
    with pytest.raises(Exception) as raised:
        sql("SELECT ai_query('my-chat', CASE WHEN id = 5 THEN 'x [[fault:400]]' ELSE text END) FROM docs").collect()
    message = str(raised.value)
    assert "my-chat" in message and "HTTP 400" in message


def test_embeddings_return_array_of_float(sql: Any, gateway: Any) -> None:
    df = sql("SELECT ai_query('databricks-gte-large-en', text) AS v FROM docs")
    assert df.schema["v"].dataType.simpleString() == "array<float>"
    vectors = [r.v for r in df.collect() if r.v is not None]
    assert len(vectors) == 12 and all(len(v) == len(vectors[0]) > 10 for v in vectors)
    assert sum(x * x for x in vectors[0]) == pytest.approx(1.0, abs=1e-3)


def test_response_format_json_schema_then_from_json(sql: Any, spark: Any) -> None:
    schema = {
        "type": "object",
        "properties": {"topic": {"type": "string"}, "score": {"type": "integer"}},
        "required": ["topic", "score"],
    }
    fmt = json.dumps({"type": "json_schema", "json_schema": {"name": "doc", "schema": schema, "strict": True}})
    df = (
        spark.table("docs")
        .where("id < 5")
        .selectExpr(
            "id",
            f"""ai_query(endpoint => 'my-chat', request => CONCAT('Extract: ', text),
                     responseFormat => '{fmt}', modelParameters => named_struct('temperature', 0.),
                     failOnError => false) AS response""",
        )
    )
    parsed = df.selectExpr("from_json(response.result, 'topic STRING, score INT') AS p").collect()
    assert all(isinstance(r.p.topic, str) and isinstance(r.p.score, int) for r in parsed)


def test_response_format_ddl_and_return_type_parse_into_a_struct(sql: Any) -> None:
    df = sql("""
        SELECT ai_query('my-chat', text,
                        returnType => 'STRUCT<product: STRING, rating: INT>',
                        responseFormat => 'STRUCT<review: STRUCT<product: STRING, rating: INT>>') AS r
        FROM docs WHERE id < 3""")
    assert df.schema["r"].dataType.simpleString() == "struct<product:string,rating:int>"
    rows = df.collect()
    assert all(isinstance(r.r.product, str) and isinstance(r.r.rating, int) for r in rows)


@pytest.mark.parametrize("endpoint", ["my-anthropic", "new-anthropic", "my-gemini", "my-responses"])
def test_other_wire_formats_through_sql(sql: Any, gateway: Any, endpoint: str) -> None:
    rows = sql(
        f"SELECT ai_query('{endpoint}', text, modelParameters => named_struct('max_tokens', 32)) AS s "
        "FROM docs WHERE id < 3"
    ).collect()
    assert all(isinstance(r.s, str) and r.s for r in rows)
    assert served(gateway) == 3


@pytest.mark.parametrize(
    ("query", "error_class"),
    [
        ("ai_query(text, text)", "DATATYPE_MISMATCH.NON_FOLDABLE_INPUT"),
        ("ai_query('my-chat', id)", "DATATYPE_MISMATCH.UNEXPECTED_INPUT_TYPE"),
        ("ai_query('my-chat', text, failOnError => 'yes')", "DATATYPE_MISMATCH.UNEXPECTED_INPUT_TYPE"),
        ("ai_query('my-chat', text, failOnError => id > 1)", "DATATYPE_MISMATCH.NON_FOLDABLE_INPUT"),
        (
            "ai_query('my-chat', text, modelParameters => named_struct('messages', 'x'))",
            "AI_FUNCTION_INVALID_MODEL_PARAMETERS.FOUND_RESERVED_PARAMETER_NAME",
        ),
        (
            "ai_query('my-chat', text, modelParameters => named_struct('temperature', 'hot'))",
            "AI_FUNCTION_INVALID_MODEL_PARAMETERS.INVALID_PARAMETER_DATA_TYPE",
        ),
        (
            "ai_query('my-chat', text, modelParameters => named_struct('temperature', 7))",
            "AI_FUNCTION_INVALID_MODEL_PARAMETERS.INVALID_NUMERIC_PARAMETER",
        ),
        (
            "ai_query('my-chat', text, modelParameters => named_struct('max_tokens', id))",
            "AI_FUNCTION_INVALID_MODEL_PARAMETERS",
        ),
        (
            "ai_query('my-chat', text, responseFormat => '{\"type\": \"xml\"}')",
            "AI_FUNCTION_UNSUPPORTED_RESPONSE_FORMAT.JSON_STRING",
        ),
        (
            "ai_query('my-chat', text, responseFormat => 'STRUCT<a: INT, b: INT>')",
            "AI_FUNCTION_UNSUPPORTED_RESPONSE_FORMAT.DDL_STRING",
        ),
        ("ai_query('my-chat', text, returnType => 'STRUCT<a: NOPE>')", "INVALID_SCHEMA.PARSE_ERROR"),
        ("ai_query('my-chat', text, requestTags => '[1, 2]')", "AI_FUNCTION_INVALID_REQUEST_TAGS"),
        ("ai_query('my-chat', text, colour => 'red')", "UNRECOGNIZED_PARAMETER_NAME"),
        ("ai_query('my-chat')", "REQUIRED_PARAMETER_NOT_FOUND"),
        (
            "ai_query('new-anthropic', text, modelParameters => named_struct('temperature', 0.2))",
            "AI_FUNCTION_INVALID_MODEL_PARAMETERS.UNSUPPORTED_MODEL_PARAMETER",
        ),
    ],
)
def test_validation_errors_at_analysis_time(sql: Any, gateway: Any, query: str, error_class: str) -> None:
    with pytest.raises(Exception) as raised:
        sql(f"SELECT {query} FROM docs")
    assert f"[{error_class}" in str(raised.value)
    assert served(gateway) == 0


def test_an_anthropic_endpoint_sends_its_api_version_and_the_sampling_rules_follow_it(sql: Any, gateway: Any) -> None:
    with pytest.raises(Exception, match=r"UNSUPPORTED_MODEL_PARAMETER.*'new-anthropic'.*version 2026-10-21"):
        sql("SELECT ai_query('new-anthropic', text, modelParameters => named_struct('top_p', 0.9)) FROM docs")
    assert served(gateway) == 0  # refused at analysis time: nothing sent
    # Under the default version (2023-06-01) the same parameter is sent and answered.
    rows = sql(
        "SELECT ai_query('my-anthropic', text, modelParameters => named_struct('top_p', 0.9)) AS s FROM docs "
        "WHERE id < 2"
    ).collect()
    assert all(row.s for row in rows) and served(gateway) == 2


def test_request_tags_reach_the_gateway(sql: Any, gateway: Any) -> None:
    sql("SELECT ai_query('my-chat', text, requestTags => map('project', 'nightly')) FROM docs WHERE id < 2").collect()
    sql("""SELECT ai_query('my-chat', text, requestTags => '{"team": "ml"}') FROM docs WHERE id = 3""").collect()
    tags = [entry["request_tags"] for entry in gateway.requests()]
    assert tags == [{"project": "nightly"}, {"project": "nightly"}, {"team": "ml"}]


def test_usual_forms_around_aggregates_work(sql: Any, gateway: Any) -> None:
    with pytest.raises(Exception, match=r"(?i)nondeterministic"):
        sql("SELECT count(ai_query('my-chat', text)) FROM docs").collect()
    assert sql("SELECT count(s) FROM (SELECT ai_query('my-chat', text) AS s FROM docs)").first()[0] == 12
    groups = sql("""
        SELECT length(s) > 0 AS answered, count(*) AS n
        FROM (SELECT ai_query('my-chat', text) AS s FROM docs) GROUP BY 1""").collect()
    assert {r.answered: r.n for r in groups} == {True: 12, None: 1}


def test_ctas_into_delta_views_joins_filters(sql: Any, spark: Any, gateway: Any, tmp_path: Path) -> None:
    location = tmp_path / "summaries"
    sql(f"""CREATE OR REPLACE TABLE summaries USING delta LOCATION '{location}' AS
            SELECT id, AI_QUERY("my-chat", CONCAT("Summarize: ", text), failOnError => True,
                                modelParameters => named_struct('max_tokens', 100, 'temperature', 0.5)) AS response
            FROM docs WHERE text IS NOT NULL""")
    assert served(gateway) == 12
    assert spark.read.format("delta").load(str(location)).where("response IS NOT NULL").count() == 12
    sql("CREATE OR REPLACE TEMP VIEW v AS SELECT id, ai_query('my-chat', text) AS s FROM docs")
    joined = sql("SELECT d.id, v.s FROM docs d JOIN v ON d.id = v.id WHERE d.id IN (1, 2)").collect()
    assert len(joined) == 2 and all(r.s for r in joined)
    sql("DROP TABLE summaries")


def test_limit_sends_few_requests(sql: Any, gateway: Any, spark: Any) -> None:
    spark.range(5000).selectExpr("CAST(id AS STRING) AS t").createOrReplaceTempView("many")
    rows = sql("SELECT ai_query('my-chat', 'Summarize the following text: ' || t) AS s FROM many LIMIT 10").collect()
    assert len(rows) == 10
    assert served(gateway) <= 1100  # at most a chunk window, never the whole partition


def test_dataframe_api_matches_sql(sql: Any, spark: Any, gateway: Any) -> None:
    from pyspark.sql import functions as F

    from aiquery.functions import ai_query

    docs = spark.table("docs").where("id < 4")
    df = docs.select(
        "id", ai_query("my-chat", F.col("text"), failOnError=False, modelParameters={"max_tokens": 64}).alias("r")
    )
    assert df.schema["r"].dataType.simpleString() == "struct<result:string,errorMessage:string>"
    api_rows = {r.id: r.r.result for r in df.collect()}
    sql_rows = {
        r.id: r.s
        for r in sql(
            "SELECT id, ai_query('my-chat', text, "
            "modelParameters => named_struct('max_tokens', 64)) AS s "
            "FROM docs WHERE id < 4"
        ).collect()
    }
    assert api_rows == sql_rows
    vectors = docs.select(ai_query("databricks-gte-large-en", "text").alias("v"))
    assert vectors.schema["v"].dataType.simpleString() == "array<float>"
    with pytest.raises(aiquery.ArgumentError, match="INVALID_NUMERIC_PARAMETER"):
        ai_query("my-chat", F.col("text"), modelParameters={"temperature": -1})
    expr_rows = docs.select(F.expr("ai_query('my-chat', text) AS s")).collect()
    assert len(expr_rows) == 4
