"""Batch mode's passes in Spark SQL. The collect pass (``SET aiquery.batch.collect``): nothing is sent, store
misses of calls to ``batch = true`` endpoints reach the driver's collector, store hits give their rows real values
without a usage record, other calls are counted as skipped, and no row is an error whatever failOnError says. The
run pass (``SET aiquery.batch.run``): the batch's answers are hits paid in the batch, its failed lines fail their
rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from ledgers import own_ledger_settings

import aiquery
from aiquery.apis.base import TokenUsage
from aiquery.apis.request_json import request_from_json
from aiquery.engine.governor import CollectCounts
from aiquery.engine.prepared import PreparedSite
from aiquery.spark.call_context import BATCH_COLLECT_SETTING, BATCH_RUN_SETTING
from aiquery.spark.coordination import running_coordinator
from aiquery.spark.registry import context_for
from aiquery.store.base import StoredAnswer

pytestmark = pytest.mark.spark

DOCS = """
CREATE OR REPLACE TEMP VIEW collect_docs AS
SELECT id, CASE WHEN id % 10 = 0 THEN NULL ELSE 'parcel ' || CAST(id % 15 AS STRING) END AS prompt
FROM range(0, 40, 1, 3)
"""
# 36 non-NULL rows, 15 distinct prompts ('parcel 0' ... 'parcel 14').
CALLS = """
SELECT id, ai_query('bc-chat', prompt) AS batched,
       ai_query('bc-live', prompt, failOnError => false) AS live
FROM collect_docs
"""


def test_a_collect_pass_sends_nothing_and_hands_its_misses_to_the_driver(
    spark: Any, gateway: Any, tmp_path: Path
) -> None:
    settings = own_ledger_settings(gateway, tmp_path, "collect")
    settings = settings.with_endpoint(
        "bc-chat", api="chat", model="gpt-6.2-sol", base_url=gateway.url + "/v1", batch=True
    ).with_endpoint("bc-live", api="chat")
    aiquery.register(spark, settings=settings)
    spark.conf.set("aiquery.cache.enabled", "true")
    spark.sql(DOCS)
    spark.sql("SELECT ai_query('bc-live', 'one live call') AS a").collect()  # the only request of this test
    coordinator = running_coordinator(spark)
    assert coordinator is not None
    collected: dict[str, dict[str, Any]] = {}
    calls: list[str] = []

    def collector(endpoint: str, requests: list[tuple[str, dict[str, Any]]]) -> None:
        calls.append(endpoint)
        collected.update(requests)

    try:
        for run in ("run-a", "run-b"):
            coordinator.set_collector(run, collector)
        spark.conf.set(BATCH_COLLECT_SETTING, "run-a")
        # An estimate's sample setting left on too: the collect pass still sees every row.
        spark.conf.set("aiquery.estimate.run", "estimate-too")
        spark.conf.set("aiquery.estimate.fraction", "0.0")
        first = spark.sql(CALLS).collect()
        spark.conf.unset("aiquery.estimate.run")
        spark.conf.unset("aiquery.estimate.fraction")
        # ai_agg runs live in batch mode (its layers need answers of the layer below): here NULL, nothing collected.
        assert spark.sql("SELECT ai_agg(prompt, 'List the parcels') AS a FROM collect_docs").collect()[0].a is None
        assert gateway.stats()["requests"] == 1
        assert all(row.batched is None and row.live.result is None and row.live.errorMessage is None for row in first)
        prompts = {request_from_json(request).prompt: fingerprint for fingerprint, request in collected.items()}
        assert sorted(prompts) == sorted(f"parcel {n}" for n in range(15)) and set(calls) == {"bc-chat"}
        assert coordinator.collect_counts("run-a") == {
            "bc-chat": CollectCounts(rows=36, misses=36),
            "bc-live": CollectCounts(rows=36, skipped=36),
        }

        # Answers for five prompts arrive in the store (as a batch's would): the next pass reads them.
        store = coordinator.answers.store(str(context_for(spark).store))
        assert store is not None
        usage = TokenUsage(input_tokens=4, output_tokens=2, total_tokens=6)
        stored = {f"parcel {n}": f"answer {n}" for n in range(1, 6)}
        store.put_many({prompts[p]: StoredAnswer.of(v, usage, batch_id="batch_1").encode() for p, v in stored.items()})
        assert store.flush(10)
        collected.clear()
        spark.conf.set(BATCH_COLLECT_SETTING, "run-b")
        second = spark.sql(CALLS).collect()
    finally:
        for setting in (BATCH_COLLECT_SETTING, "aiquery.estimate.run", "aiquery.estimate.fraction"):
            spark.conf.unset(setting)
        for run in ("run-a", "run-b"):
            coordinator.set_collector(run, None)
    assert gateway.stats()["requests"] == 1
    for row in second:
        prompt = None if row.id % 10 == 0 else f"parcel {row.id % 15}"
        assert row.batched == stored.get(prompt or ""), row
    assert sorted(request_from_json(r).prompt for r in collected.values()) == sorted(
        f"parcel {n}" for n in (0, *range(6, 15))
    )
    hits = sum(1 for row in second if row.batched is not None)
    assert coordinator.collect_counts("run-b")["bc-chat"] == CollectCounts(rows=36, hits=hits, misses=36 - hits)
    # Neither pass left a usage record: the live call's is the ledger's only one.
    aiquery.flush_usage(spark)
    assert spark.read.format("delta").load(str(tmp_path / "usage_table")).count() == 1


class RunResults:
    """A batch run's results as the flow would hand them over: one answer and one failed line."""

    def __init__(self, answers: dict[str, str], failures: dict[str, str]) -> None:
        self._answers, self._failures = answers, failures

    def answers(self, fingerprints: Sequence[str]) -> Mapping[str, str]:
        return {key: self._answers[key] for key in fingerprints if key in self._answers}

    def failures(self, fingerprints: Sequence[str]) -> Mapping[str, str]:
        return {key: self._failures[key] for key in fingerprints if key in self._failures}


RUN_QUERY = (
    "SELECT prompt, ai_query('br-chat', prompt{options}) AS r FROM VALUES ('doc 1'), ('doc 2'), ('doc 1') AS t(prompt)"
)


def test_a_run_pass_answers_from_the_batch_and_fails_its_failed_lines(spark: Any, gateway: Any, tmp_path: Path) -> None:
    settings = own_ledger_settings(gateway, tmp_path, "batchrun").with_endpoint(
        "br-chat", api="chat", price={"input_per_million": 2.0, "output_per_million": 8.0}
    )
    aiquery.register(spark, settings=settings)
    spark.conf.set("aiquery.cache.enabled", "true")
    site = PreparedSite(context_for(spark).plan(endpoint="br-chat").site, "")
    key = {prompt: site.fingerprint(site.body(site.request(prompt))) for prompt in ("doc 1", "doc 2")}
    usage = TokenUsage(input_tokens=1000, output_tokens=500, total_tokens=1500)
    coordinator = running_coordinator(spark)
    assert coordinator is not None
    coordinator.set_batch_results(
        RunResults(
            {key["doc 1"]: StoredAnswer.of("batched answer", usage, batch_id="batch_9").encode()},
            {key["doc 2"]: "line expired"},
        )
    )
    try:
        spark.conf.set(BATCH_RUN_SETTING, "run-r")
        spark.conf.set("aiquery.query_tag", "batch-run-pass")
        rows = spark.sql(RUN_QUERY.format(options=", failOnError => false")).collect()
        with pytest.raises(Exception, match="AI_QUERY_BATCH_LINE_FAILED"):
            spark.sql(RUN_QUERY.format(options="")).collect()
        assert gateway.stats()["requests"] == 0
        spark.conf.unset(BATCH_RUN_SETTING)
        spark.conf.set("aiquery.query_tag", "batch-after")
        after = spark.sql(RUN_QUERY.format(options=", failOnError => false")).collect()
    finally:
        coordinator.set_batch_results(None)
        spark.conf.unset(BATCH_RUN_SETTING)
        spark.conf.unset("aiquery.query_tag")
    answers = {row.prompt: (row.r.result, row.r.errorMessage) for row in rows}
    assert answers["doc 1"] == ("batched answer", None)
    assert answers["doc 2"][0] is None and "[AI_QUERY_BATCH_LINE_FAILED]" in answers["doc 2"][1]
    assert "line expired" in answers["doc 2"][1]
    # Outside the run pass the failed line is an ordinary miss (sent), the batch's answer an ordinary hit.
    assert gateway.stats()["requests"] == 1 and all(row.r.errorMessage is None for row in after)
    aiquery.flush_usage(spark)
    ledger = spark.read.format("delta").load(str(tmp_path / "usage_table"))
    found = {
        (row.query_tag, row.cache_hit, row.batch_id, row.cost, round(row.avoided_cost, 6))
        for row in ledger.where(f"request_hash = '{key['doc 1']}'").collect()
    }
    assert ("batch-run-pass", True, "batch_9", 0.0, 0.0) in found
    assert ("batch-after", True, None, 0.0, 0.006) in found
