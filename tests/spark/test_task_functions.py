"""The task AI Functions through Spark SQL against the emulator (work in progress: the ARRAY forms)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

import aiquery
from aiquery.config import UsageSettings, load_settings

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

    aiquery.register(spark, settings=own_ledger_settings(gateway, tmp_path, "tasks"))
    spark.sql("SELECT ai_summarize('Row ' || id) AS s FROM range(3)").collect()
    aiquery.flush_usage(spark)
    rows = spark.read.format("delta").load(str(tmp_path / "usage_table")).collect()
    assert sorted(row.function_name for row in rows) == ["ai_summarize"] * 3
