"""``SET aiquery.query_tag`` in a classic session tags its requests in the ledger; unset, the job description does,
as before; outside a Spark Connect server the ledger's ``session_id`` is NULL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ledgers import own_ledger_settings

import aiquery

pytestmark = pytest.mark.spark


def test_the_sessions_query_tag_setting_tags_its_requests(spark: Any, gateway: Any, tmp_path: Path) -> None:
    aiquery.register(spark, settings=own_ledger_settings(gateway, tmp_path, "tags"))
    spark.sql("SET aiquery.query_tag = tagged-by-set")
    try:
        spark.sql("SELECT ai_query('databricks-gpt-5-4', 'tagged ' || id) FROM range(2)").collect()
    finally:
        spark.sql("RESET aiquery.query_tag")
    spark.sparkContext.setJobDescription("described job")
    try:
        spark.sql("SELECT ai_query('databricks-gpt-5-4', 'described')").collect()
    finally:
        spark.sparkContext.setJobDescription(None)  # type: ignore[arg-type]
    aiquery.flush_usage(spark)
    rows = spark.read.format("delta").load(str(tmp_path / "usage_table")).collect()
    assert sorted(row.query_tag for row in rows) == ["described job", "tagged-by-set", "tagged-by-set"]
    assert {row.session_id for row in rows} == {None}
    assert len(gateway.requests()) == 3
