"""``aiquery.estimate``: a 1 % sample at each ai_query call estimates the whole job's requests, tokens and cost
within 15 %, its ranges hold the real values, the user's tables are not written, and the real run does not pay
again for the sample's answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ledgers import own_ledger_settings

import aiquery
from aiquery.jobs.estimate import JobEstimate
from aiquery.jobs.estimate_run import plan_statement
from aiquery.jobs.script import prepare_job
from aiquery.jobs.statements import run_statements

pytestmark = pytest.mark.spark

PRICE = {"input_per_million": 3.0, "output_per_million": 15.0}
# 20,000 rows; the prompt's length (0-59 filler words) and the answer's ([[tokens:N]], 10-199 tokens) vary with
# the row, independently: only a fair sample of the rows gets both right. A filter leaves 18,000 rows for the call.
JOB = """\
CREATE OR REPLACE TEMP VIEW est_docs AS
SELECT id, 'Row ' || id || ': ' || repeat('lorem ', CAST(pmod(id * 37, 60) AS INT))
       || '[[tokens:' || CAST(10 + pmod(id * 7919, 190) AS STRING) || ']]' AS prompt
FROM range(0, 20000, 1, 4);

CREATE TABLE ${table} AS
SELECT id, ai_query('est-chat', prompt) AS answer FROM est_docs WHERE id % 10 != 3;

SELECT count(*) AS answered FROM ${table};
"""


def test_a_one_percent_sample_estimates_the_whole_job(spark: Any, gateway: Any, tmp_path: Path) -> None:
    settings = own_ledger_settings(gateway, tmp_path, "estimate")
    aiquery.register(spark, settings=settings.with_endpoint("est-chat", api="chat", price=PRICE))
    spark.conf.set("aiquery.cache.enabled", "true")

    table = f"est_answers_{tmp_path.name[-12:].replace('-', '_')}"  # the shared session's warehouse outlives the test
    found: JobEstimate = aiquery.estimate(spark, JOB, variables={"table": table})
    print("\n" + found.format())
    [chat] = found.endpoints
    assert (chat.endpoint, chat.rows) == ("est-chat", 18000)  # every row that reached the call, counted
    assert 100 <= chat.sampled <= 300
    sample_sent = gateway.stats()["requests"]
    assert sample_sent == chat.sampled == found.sample_requests
    # Nothing of the job's is left: no table, no view.
    assert not spark.catalog.tableExists(table)
    assert not [view for view in spark.catalog.listTables() if view.name in (table, "est_docs")]
    assert spark.conf.get("aiquery.estimate.run", None) is None

    # The real run: it pays for every row but the sample's (those come from the answer store).
    result = run_statements(spark, prepare_job(JOB, {"table": table}), query_tag="est-real", show_rows=0)
    spark.sql(f"DROP TABLE IF EXISTS {table}")
    assert result.ok, result.error
    assert gateway.stats()["requests"] == sample_sent + 18000 - chat.sampled
    aiquery.flush_usage(spark)
    real = spark.sql(
        "SELECT count(*) AS calls, sum(input_tokens) AS input, sum(output_tokens) AS output, "
        "sum(coalesce(cost, 0) + coalesce(avoided_cost, 0)) AS cost "
        f"FROM delta.`{tmp_path / 'usage_table'}` WHERE query_tag = 'est-real'"
    ).collect()[0]
    assert real.calls == 18000
    assert chat.cost is not None and chat.currency == "USD"
    for name, span, actual in (
        ("requests", chat.requests, real.calls),
        ("input tokens", chat.input_tokens, real.input),
        ("output tokens", chat.output_tokens, real.output),
        ("cost", chat.cost, real.cost),
    ):
        assert abs(span.value - actual) <= 0.15 * actual, (name, span, actual)
        assert span.low <= actual <= span.high, (name, span, actual)
        assert span.high - span.value <= 0.30 * span.value and span.value - span.low <= 0.30 * span.value, name
    assert chat.seconds is not None and chat.seconds.value > 0
    print(f"real run: {real.calls} calls, {real.input} input and {real.output} output tokens, {real.cost:.4f} USD")
    # The sample's requests are in the ledger, marked as an estimate's.
    marked = spark.sql(
        f"SELECT count(*) AS n FROM delta.`{tmp_path / 'usage_table'}` WHERE estimate AND query_tag = "
        f"'{found.query_tag}' AND NOT cache_hit"
    ).collect()[0]
    assert marked.n == sample_sent


def test_statements_that_would_write_are_rewritten_or_skipped() -> None:
    statements = prepare_job(
        "CREATE OR REPLACE TABLE db.out USING delta AS SELECT ai_query('e', x) FROM t;\n"
        "INSERT INTO out PARTITION (day='1') SELECT 1;\n"
        "MERGE INTO tgt USING (SELECT id, ai_query('e', x) AS y FROM src) s ON tgt.id = s.id "
        "WHEN MATCHED THEN UPDATE SET *;\n"
        "DELETE FROM tgt WHERE id = 1;\n"
        "-- a comment first\nWITH a AS (SELECT 1) SELECT * FROM a;\n"
        "CREATE TEMP VIEW v AS SELECT 1",
        {},
    )
    actions = [plan_statement(statement) for statement in statements]
    assert [(action.kind, action.name) for action in actions] == [
        ("view", "out"),
        ("query", ""),
        ("query", ""),
        ("skip", ""),
        ("query", ""),
        ("as-is", ""),
    ]
    assert actions[0].sql == "SELECT ai_query('e', x) FROM t" and "db.out" in actions[0].note
    assert actions[1].sql == "SELECT 1"
    assert actions[2].sql == "SELECT id, ai_query('e', x) AS y FROM src"
    assert "statement 4" in actions[3].note and "not run" in actions[3].note
