"""The answer store through Spark: re-runs, show() then write(), identical prompts in every partition, control."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ledgers import own_ledger_settings

import aiquery
from aiquery.spark.pipeline import CHUNK_ROWS

pytestmark = pytest.mark.spark


def register(spark: Any, gateway: Any, tmp_path: Path, **endpoint: Any) -> None:
    """ai_query with a usage folder (so an answer store) of this test's own, and the store on for the session."""
    settings = own_ledger_settings(gateway, tmp_path, "store")
    aiquery.register(spark, settings=settings.with_endpoint("store-chat", api="chat", **endpoint))
    spark.conf.set("aiquery.cache.enabled", "true")


def test_a_rerun_is_answered_from_the_store_and_the_ledger_shows_it(spark: Any, gateway: Any, tmp_path: Path) -> None:
    register(spark, gateway, tmp_path)
    # (No ORDER BY: a sort samples its input first, which evaluates ai_query once more; from the store, but the
    # test counts those rows.)
    query = "SELECT id, ai_query('store-chat', 'Summarize item ' || id) AS s FROM range(0, 300, 1, 3)"
    first = sorted(spark.sql(query).collect())
    assert gateway.stats()["requests"] == 300
    again = sorted(spark.sql(query).collect())
    assert gateway.stats()["requests"] == 300  # nothing sent
    assert [r.s for r in again] == [r.s for r in first]
    aiquery.flush_usage(spark)
    counts = spark.sql(
        "SELECT cache_hit, count(*) AS n, count(status_code) AS statuses, sum(total_tokens) AS tokens "
        f"FROM delta.`{tmp_path / 'usage_table'}` GROUP BY cache_hit ORDER BY cache_hit"
    ).collect()
    paid, served = counts[0], counts[1]
    assert (paid.cache_hit, paid.n, paid.statuses) == (False, 300, 300)
    assert (served.cache_hit, served.n, served.statuses) == (True, 300, 0)  # no HTTP status: no request
    assert served.tokens == paid.tokens  # the tokens the answers would have used again


def test_the_store_can_be_turned_off_per_session_and_per_endpoint(spark: Any, gateway: Any, tmp_path: Path) -> None:
    register(spark, gateway, tmp_path)
    same = "SELECT ai_query('store-chat', 'The same prompt') FROM range(0, 40, 1, 2)"
    spark.sql(same).collect()
    assert gateway.stats()["requests"] == 1  # identical prompts: one request
    spark.sql("SET aiquery.cache.enabled = false")
    spark.sql(same).collect()
    assert gateway.stats()["requests"] == 41  # every row, identical prompts included (for sampling on purpose)
    register(spark, gateway, tmp_path, cache=False)  # the store on for the session, off for this endpoint
    spark.sql(same).collect()
    assert gateway.stats()["requests"] == 81


def test_show_then_write_pays_once_per_row(spark: Any, gateway: Any, tmp_path: Path) -> None:
    register(spark, gateway, tmp_path, max_concurrency=8)
    rows = 4 * CHUNK_ROWS  # more rows than a worker's window holds at once (4 x 8 calls, at least 2 chunks)
    frame = spark.range(0, rows, 1, 2).selectExpr("id", "ai_query('store-chat', 'Describe ' || id) AS d")
    frame.show(5)  # Spark computes part of the first partition (and the UDF's window sends a little further)
    shown = gateway.stats()["requests"]
    assert 5 <= shown < rows
    frame.write.format("delta").mode("overwrite").save(str(tmp_path / "described"))
    assert gateway.stats()["requests"] == rows  # the rows show() paid for were not paid again
    assert spark.read.format("delta").load(str(tmp_path / "described")).where("d IS NOT NULL").count() == rows


def test_identical_prompts_in_flight_in_every_partition_are_sent_once(spark: Any, gateway: Any, tmp_path: Path) -> None:
    register(spark, gateway, tmp_path, max_concurrency=16)
    gateway.configure(latency_ms=500)
    # The first 10 rows of each of 4 partitions ask the same 10 questions, all at the same time.
    answers = spark.sql(
        "SELECT ai_query('store-chat', CASE WHEN id % 100 < 10 THEN 'Common question ' || (id % 100) "
        "ELSE 'Own question ' || id END) AS a FROM range(0, 400, 1, 4)"
    ).collect()
    assert len(answers) == 400 and all(row.a for row in answers)
    assert gateway.stats()["requests"] == 10 + 360
