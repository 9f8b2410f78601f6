"""The AI Functions through Spark SQL and the DataFrame API against the emulator (the ARRAY forms; issue 14)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

import aiquery
from aiquery.ai_functions.answer_types import SENTIMENTS
from aiquery.config import Settings, UsageSettings, load_settings

pytestmark = pytest.mark.spark


@pytest.fixture
def sql(spark: Any, gateway: Any) -> Any:
    settings = load_settings({"DATABRICKS_HOST": gateway.url, "DATABRICKS_TOKEN": gateway.token})
    aiquery.register(spark, settings=dataclasses.replace(settings, usage=UsageSettings(enabled=False)))
    spark.createDataFrame(
        [(1, "My password was leaked and John Doe from Acme Corp in New York is angry."), (2, None)],
        "id INT, text STRING",
    ).createOrReplaceTempView("tickets")
    return spark.sql


def test_each_function_answers_with_its_type_and_null_gives_null(sql: Any, gateway: Any) -> None:
    # (No ORDER BY: a sort samples its input first, which would call every function once more.)
    row, empty = sorted(
        sql(
            """SELECT id,
                  ai_summarize(text) AS summary,
                  ai_summarize(text, 5) AS short,
                  ai_classify(text, ARRAY('urgent', 'not urgent')) AS urgency,
                  ai_analyze_sentiment(text) AS sentiment,
                  ai_extract(text, ARRAY('person', 'location')) AS entities,
                  ai_translate(text, 'es') AS spanish,
                  ai_fix_grammar(text) AS fixed,
                  ai_mask(text, ARRAY('person')) AS masked,
                  ai_gen(text) AS generated
           FROM tickets"""
        ).collect(),
        key=lambda found: found.id,
    )
    assert all(isinstance(row[name], str) and row[name] for name in ("summary", "short", "spanish", "fixed"))
    assert row.urgency in ("urgent", "not urgent")
    assert row.sentiment in ("positive", "negative", "neutral", "mixed")
    assert set(row.entities.asDict()) == {"person", "location"}
    assert all(empty[name] is None for name in empty.asDict() if name != "id")
    assert gateway.stats()["requests"] == 9  # one per function for the row with text, none for NULL


@pytest.mark.parametrize(
    ("call", "error"),
    [
        ("ai_summarize(text, -1)", "AI_FUNCTION_INVALID_MAX_WORDS"),
        ("ai_classify(text, ARRAY('only'))", "2 to 20 labels, not 1"),
        ("ai_classify(text, labels)", "NON_FOLDABLE_INPUT"),
        ("ai_summarize(id)", "UNEXPECTED_INPUT_TYPE"),
        ("ai_translate(text)", "WRONG_NUM_ARGS"),
    ],
)
def test_literal_arguments_are_checked_at_analysis_time(sql: Any, gateway: Any, call: str, error: str) -> None:
    with pytest.raises(Exception, match=error):
        sql(f"SELECT {call} FROM (SELECT *, ARRAY('a', 'b') AS labels FROM tickets)")
    assert gateway.stats()["requests"] == 0


def test_usage_rows_carry_the_functions_name(spark: Any, gateway: Any, tmp_path: Any) -> None:
    from ledgers import own_ledger_settings

    from aiquery.spark.ai_function_sql import AI_FUNCTIONS

    aiquery.register(spark, settings=own_ledger_settings(gateway, tmp_path, "tasks"))
    spark.sql(
        """SELECT ai_summarize(t), ai_classify(t, ARRAY('a', 'b')), ai_extract(t, ARRAY('person')),
                  ai_analyze_sentiment(t), ai_translate(t, 'es'), ai_fix_grammar(t), ai_mask(t, ARRAY('person')),
                  ai_gen(t), ai_filter(t, 'is short'), ai_similarity(t, 'another text')
           FROM (SELECT 'Row one, by Ann' AS t)"""
    ).collect()
    spark.sql("SELECT ai_agg('Row ' || id, 'Sum up the rows') FROM range(3)").collect()
    aiquery.flush_usage(spark)
    rows = spark.read.format("delta").load(str(tmp_path / "usage_table")).collect()
    named = sorted(row.function_name for row in rows)
    assert set(named) == set(AI_FUNCTIONS)  # every function's requests, under its own name
    assert named.count("ai_similarity") == 2 and len(named) == len(AI_FUNCTIONS) + 1


@pytest.mark.compat
def test_ai_filter_keeps_the_rows_it_answers_true_for(sql: Any, gateway: Any) -> None:
    reviews = "SELECT id, 'Review ' || id || ': I want my money back.' AS review FROM range(12)"
    verdicts = sql(f"SELECT id, ai_filter(review, 'mentions a refund') AS keep FROM ({reviews})")
    assert verdicts.schema["keep"].dataType.simpleString() == "boolean"
    kept = {row.id for row in verdicts.collect() if row.keep}
    assert 0 < len(kept) < 12  # the emulator answers by a hash of the prompt: some rows each way
    where = sql(f"SELECT id FROM ({reviews}) WHERE ai_filter(review, 'mentions a refund')").collect()
    assert {row.id for row in where} == kept
    assert sql("SELECT ai_filter(CAST(NULL AS STRING), 'anything') AS keep").first().keep is None
    with pytest.raises(Exception, match="AI_FILTER_CONDITION"):
        sql("SELECT ai_filter(review, ' ') FROM (SELECT 'x' AS review)")
    with pytest.raises(Exception, match="NON_DETERMINISTIC"):  # as the README says: not as a join condition
        sql(f"SELECT * FROM ({reviews}) a JOIN ({reviews}) b ON ai_filter(a.review || b.review, 'agree')").collect()


@pytest.mark.compat
def test_ai_similarity_compares_embeddings(sql: Any, gateway: Any) -> None:
    row = sql(
        """SELECT ai_similarity('Apache Spark', 'Apache Spark') AS same,
                  ai_similarity('Apache Spark', 'a recipe for bread') AS other,
                  ai_similarity('Apache Spark', CAST(NULL AS STRING)) AS none"""
    )
    assert [f.dataType.simpleString() for f in row.schema.fields] == ["float", "float", "float"]
    found = row.first()
    assert found.same == 1.0
    assert -1.0 <= found.other < 0.9
    assert found.none is None
    routes = gateway.stats()["by_route"]
    assert set(routes) == {"mlflow/v1/embeddings"}
    assert gateway.stats()["requests"] == 3  # one for the equal pair, two for the other, none for NULL


def test_the_dataframe_api_gives_what_sql_gives(spark: Any, sql: Any, gateway: Any) -> None:
    from aiquery import functions as AI

    frame = spark.table("tickets").select(
        "id",
        AI.ai_summarize("text", 5).alias("short"),
        AI.ai_classify("text", ["urgent", "not urgent"]).alias("urgency"),
        AI.ai_extract("text", ["person", "location"]).alias("entities"),
        AI.ai_filter("text", "is a complaint").alias("complaint"),
        AI.ai_similarity("text", "text").alias("self_similarity"),
        AI.ai_analyze_sentiment("text").alias("sentiment"),
        AI.ai_translate("text", "es").alias("spanish"),
        AI.ai_mask("text", ["person"]).alias("masked"),
        AI.ai_fix_grammar("text").alias("fixed"),
        AI.ai_gen("text").alias("generated"),
    )
    from_api = {row.id: row for row in frame.collect()}
    from_sql = {
        row.id: row
        for row in sql(
            """SELECT id, ai_summarize(text, 5) AS short, ai_classify(text, ARRAY('urgent', 'not urgent')) AS urgency,
                      ai_extract(text, ARRAY('person', 'location')) AS entities,
                      ai_filter(text, 'is a complaint') AS complaint, ai_similarity(text, text) AS self_similarity,
                      ai_analyze_sentiment(text) AS sentiment, ai_translate(text, 'es') AS spanish,
                      ai_mask(text, ARRAY('person')) AS masked, ai_fix_grammar(text) AS fixed,
                      ai_gen(text) AS generated
               FROM tickets"""
        ).collect()
    }
    assert from_api == from_sql  # the emulator answers equal requests equally
    assert from_api[1].self_similarity == 1.0 and from_api[2].short is None
    assert frame.schema["entities"].dataType.simpleString() == "struct<person:string,location:string>"
    before = gateway.stats()["requests"]
    with pytest.raises(Exception, match="2 to 20 labels"):
        spark.table("tickets").select(AI.ai_classify("text", ["only"])).collect()
    assert gateway.stats()["requests"] == before


TEXT_APIS = {
    "fn-chat": "chat",
    "fn-responses": "responses",
    "fn-openai-responses": "openai-responses",
    "fn-anthropic": "anthropic",
    "fn-gemini": "gemini",
}


def functions_settings(gateway: Any, tmp_path: Path, table: str) -> Settings:
    endpoints = "".join(f'[endpoints.{name}]\napi = "{api}"\n\n' for name, api in TEXT_APIS.items())
    config = tmp_path / "aiquery.toml"
    config.write_text(f"{endpoints}[functions]\n{table}\n")
    settings = load_settings({"DATABRICKS_HOST": gateway.url, "DATABRICKS_TOKEN": gateway.token}, config_path=config)
    return dataclasses.replace(settings, usage=UsageSettings(enabled=False))


@pytest.mark.parametrize("loose", [False, True], ids=["structured", "loose-answers"])
@pytest.mark.parametrize("endpoint", list(TEXT_APIS))
def test_labels_and_fields_come_back_through_each_api(
    spark: Any, gateway: Any, tmp_path: Path, endpoint: str, loose: bool
) -> None:
    aiquery.register(spark, settings=functions_settings(gateway, tmp_path, f'chat_endpoint = "{endpoint}"'))
    gateway.configure(loose_answers=loose)
    rows = spark.sql(
        """SELECT ai_classify(text, ARRAY('billing', 'outage', 'billing dispute')) AS topic,
                  ai_analyze_sentiment(text) AS sentiment,
                  ai_extract(text, ARRAY('person', 'company')) AS entities,
                  ai_filter(text, 'mentions money') AS money
           FROM (SELECT 'Ticket ' || id || ': Jane Roe of Initech was charged twice.' AS text FROM range(6))"""
    ).collect()
    assert all(row.topic in ("billing", "outage", "billing dispute") for row in rows)
    assert all(row.sentiment in SENTIMENTS for row in rows)
    assert all(set(row.entities.asDict()) == {"person", "company"} for row in rows)
    assert all(isinstance(row.entities.person, str) for row in rows)
    assert all(isinstance(row.money, bool) for row in rows)
    assert set(gateway.stats()["by_route"]) == {route_of(TEXT_APIS[endpoint])}
    if loose:  # the answers really were loose: ai_query with the same structured output shows them raw
        raw = spark.sql(
            f"""SELECT ai_query('{endpoint}', 'Ticket 1', responseFormat =>
                '{{"type": "json_schema", "json_schema": {{"name": "label", "strict": true, "schema":
                {{"type": "object", "properties": {{"label": {{"type": "string", "enum": ["a", "b"]}}}},
                "required": ["label"], "additionalProperties": false}}}}}}') AS answer"""
        ).first()
        assert raw.answer.startswith("The answer is: ")


def route_of(api: str) -> str:
    return {
        "chat": "mlflow/v1/chat/completions",
        "responses": "mlflow/v1/responses",
        "openai-responses": "openai/v1/responses",
        "anthropic": "anthropic/v1/messages",
        "gemini": "gemini/v1beta/models/{model}:generateContent",
    }[api]


def test_the_functions_table_picks_each_functions_endpoint(spark: Any, gateway: Any, tmp_path: Path) -> None:
    table = 'chat_endpoint = "fn-chat"\nai_summarize = "fn-anthropic"'
    aiquery.register(spark, settings=functions_settings(gateway, tmp_path, table))
    spark.sql("SELECT ai_summarize('a long text') AS s, ai_gen('a question') AS g").collect()
    assert {route: sum(counts.values()) for route, counts in gateway.stats()["by_route"].items()} == {
        "anthropic/v1/messages": 1,
        "mlflow/v1/chat/completions": 1,
    }


def test_an_endpoint_of_the_wrong_kind_fails_at_analysis_time(spark: Any, gateway: Any, tmp_path: Path) -> None:
    aiquery.register(spark, settings=functions_settings(gateway, tmp_path, 'embedding_endpoint = "fn-chat"'))
    with pytest.raises(Exception, match=r"AI_FUNCTION_INVALID_ENDPOINT.*needs an embeddings endpoint"):
        spark.sql("SELECT ai_similarity('a', 'b')").collect()
    aiquery.register(spark, settings=functions_settings(gateway, tmp_path, 'ai_gen = "databricks-gte-large-en"'))
    with pytest.raises(Exception, match="ai_gen needs a text-generation endpoint"):
        spark.sql("SELECT ai_gen('a')").collect()
    assert gateway.stats()["requests"] == 0


@pytest.mark.compat
def test_the_json_forms_return_variant_on_spark_4_and_fail_before(spark: Any, sql: Any, gateway: Any) -> None:
    from aiquery.spark.versions import parse_spark_version

    calls = """SELECT ai_classify(text, '["urgent", "not urgent"]') AS urgency,
                      ai_classify(text, '{"billing": "about money", "security": "about accounts"}',
                                  map('multilabel', 'true', 'instructions', 'Tickets of a bank.')) AS topics,
                      ai_extract(text, '{"person": {"type": "string", "description": "a full name"},
                                         "age": "integer", "city": {"type": "enum", "enum": ["New York", "Paris"]}}')
                        AS facts
               FROM tickets"""
    if parse_spark_version(spark.version)[:2] < (4, 0):
        with pytest.raises(Exception, match=r"UNSUPPORTED_FEATURE.SPARK_VERSION.*needs Spark 4.0"):
            sql(calls)
        assert gateway.stats()["requests"] == 0
        return
    frame = sql(calls)
    assert [field.dataType.simpleString() for field in frame.schema.fields] == ["variant"] * 3
    rows = sql(
        f"""SELECT urgency:response[0]::string AS urgency, urgency:error_message::string AS error,
                   CAST(topics:response AS ARRAY<STRING>) AS topics,
                   facts:response.person::string AS person, facts:response.age AS age, facts:response.city AS city
            FROM ({calls})"""
    ).collect()
    answered = next(row for row in rows if row.urgency is not None)
    assert answered.urgency in ("urgent", "not urgent") and answered.error is None
    assert answered.topics and set(answered.topics) <= {"billing", "security"}
    assert isinstance(answered.person, str)
    assert sum(row.urgency is None and row.topics is None for row in rows) == 1  # the NULL text's row


@pytest.mark.parametrize(
    ("call", "error"),
    [
        ("""ai_classify(text, '["only"]')""", "2 to 500 distinct labels, not 1"),
        ("ai_classify(text, 'not json')", "labels is not valid JSON"),
        ("ai_classify(text, ARRAY('a', 'b'), map('multilabel', 'true'))", "options only with its labels as a JSON"),
        ("""ai_classify(text, '["a", "b"]', map('multilabel', 'often'))""", "multilabel is 'true' or 'false'"),
        ("""ai_extract(text, '["a"]', map('enable_citations', 'true'))""", "'enable_citations' is not supported"),
        ("""ai_extract(text, '{"a": "date"}')""", "field 'a' has type 'date'"),
    ],
)
def test_the_json_forms_check_their_literals_at_analysis_time(sql: Any, gateway: Any, call: str, error: str) -> None:
    with pytest.raises(Exception, match=re.escape(error)):
        sql(f"SELECT {call} FROM tickets")
    assert gateway.stats()["requests"] == 0


def test_where_ai_filter_and_group_by_ai_agg_on_ten_thousand_rows(spark: Any, gateway: Any, tmp_path: Path) -> None:
    context = 2_000
    config = tmp_path / "aiquery.toml"
    config.write_text(
        f'[endpoints.agg-chat]\napi = "chat"\ncontext_tokens = {context}\n\n[functions]\nchat_endpoint = "agg-chat"\n'
    )
    settings = load_settings({"DATABRICKS_HOST": gateway.url, "DATABRICKS_TOKEN": gateway.token}, config_path=config)
    aiquery.register(spark, settings=dataclasses.replace(settings, usage=UsageSettings(enabled=False)))
    gateway.configure(context_tokens=context)  # a longer prompt would be answered 400
    reviews = """SELECT id % 4 AS product,
                        CASE WHEN id % 4 = 3 THEN NULL
                             ELSE 'Review ' || id || ': ' || repeat('the parcel came late, the box torn. ', 1 + id % 3)
                        END AS review
                 FROM range(10000)"""
    rows = spark.sql(
        f"""SELECT product, count(*) AS reviews, count(review) AS texts,
                   ai_agg(review, 'Summarize the complaints in one paragraph') AS complaints
            FROM ({reviews})
            WHERE review IS NULL OR ai_filter(review, 'mentions a delivery problem')
            GROUP BY product"""
    ).collect()
    by_product = {row.product: row for row in rows}
    assert set(by_product) == {0, 1, 2, 3}
    assert all(isinstance(by_product[p].complaints, str) and by_product[p].complaints for p in (0, 1, 2))
    assert by_product[3].complaints is None and by_product[3].texts == 0  # a group of NULLs: NULL
    filtered = sum(by_product[p].texts for p in (0, 1, 2))
    assert 0 < filtered < 7_500
    stats = gateway.stats()
    assert stats["by_status"] == {"200": stats["requests"]}  # no prompt went past the context
    aggregate_requests = stats["requests"] - 7_500  # one ai_filter request per non-NULL review
    # Each group's texts (about 100,000 tokens in all) do not fit one 2,000-token request: several layers.
    assert 3 * 2 < aggregate_requests < filtered


@pytest.mark.compat
def test_ai_agg_in_the_dataframe_api_beside_other_aggregates(spark: Any, sql: Any, gateway: Any) -> None:
    from pyspark.sql import functions as F

    from aiquery import functions as AI

    frame = spark.range(20).selectExpr("id % 2 AS parity", "'note ' || id AS note")
    rows = frame.groupBy("parity").agg(F.count("*").alias("n"), AI.ai_agg("note", "List the notes").alias("all"))
    found = {row.parity: row for row in rows.collect()}
    assert {parity: row.n for parity, row in found.items()} == {0: 10, 1: 10}
    assert all(isinstance(row["all"], str) and row["all"] for row in found.values())
    assert gateway.stats()["requests"] == 2  # each group fits one request
    with pytest.raises(Exception, match="AI_AGG_INSTRUCTION"):
        frame.groupBy("parity").agg(AI.ai_agg("note", "")).collect()
