"""``aiquery run JOB.sql --remote sc://...``: a job run through an aiquery Spark Connect server.

The statements run in a Connect session of their own, so that what the run sets is its own: the query tag is the
session setting ``aiquery.query_tag`` and ``--max-cost``/``--max-tokens`` are its ``aiquery.budget.*`` settings,
which the server's builder reads from the session under analysis and enforces for that session's requests. A
session setting could be lifted by the job's own SQL; so that the job cannot lift the command line's cap, a job
that sets ``aiquery.budget.*`` or runs ``RESET`` is refused under a cap before anything runs.

The progress line polls ``aiquery_progress()`` (the server's counts for the run's query tag); the summary reads
the server's usage table after ``aiquery_flush_usage()``. Exit statuses are those of a local run (see
:mod:`aiquery.jobs.command`); "capped" means a statement failed with ``AI_QUERY_BUDGET_EXCEEDED`` (rows that
``failOnError => false`` turned into errors do not stop the job, and the server's cap book, not visible to a client,
would be needed to count them).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aiquery.connect import client
from aiquery.coordinator.cap import COST_SETTING, TOKENS_SETTING, CapSetting
from aiquery.coordinator.progress import QueryProgress, TaskCounts
from aiquery.jobs.progress import UsageCounts, coordinator_counts
from aiquery.jobs.script import Statement, without_comments
from aiquery.jobs.statements import QUERY_TAG_PROPERTY, JobOutput, JobResult, add_usage, execute_statements, report

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["CAPPED_ERROR", "cap_lifters", "run_remote"]

CAPPED_ERROR = "AI_QUERY_BUDGET_EXCEEDED"
_LIFTS_CAP = re.compile(r"\baiquery\s*\.\s*budget\b|\bRESET\b", re.IGNORECASE)
"""Anywhere outside comments, quoted text included (``EXECUTE IMMEDIATE 'SET ...'``), backticks aside: a false
alarm refuses a run the user can still make without the cap, a miss would let the job's SQL lift it."""


def cap_lifters(statements: Sequence[Statement]) -> list[Statement]:
    """The statements that could change or remove the session's cap (``SET aiquery.budget.*``, ``RESET``)."""
    return [s for s in statements if _LIFTS_CAP.search(without_comments(s.sql).replace("`", ""))]


class _RemoteControl:
    """A Spark Connect server: a statement's operations carry its tag (to interrupt them), the counts come from
    ``aiquery_progress()``."""

    counts_usage = True

    def __init__(self, spark: SparkSession) -> None:
        self.spark = spark
        self._tag: str | None = None

    def start(self, group: str, description: str) -> None:
        if self._tag is not None:
            self.spark.removeTag(self._tag)
        self._tag = _operation_tag(group)
        self.spark.addTag(self._tag)

    def progress(self) -> list[QueryProgress]:
        return client.progress(self.spark)

    def tasks(self, group: str) -> TaskCounts:
        query_tag = group.rpartition("#")[0]
        found = [query.tasks for query in self.progress() if query.query == query_tag]
        return found[0] if found else TaskCounts()

    def usage(self, query_tag: str) -> UsageCounts:
        return coordinator_counts(self, query_tag)

    def cancel(self, group: str) -> None:
        self.spark.interruptTag(_operation_tag(group))


def _operation_tag(group: str) -> str:
    # Connect's operation tags may not hold commas; a query tag is letters, digits, '_', '.', '-' and '#' here.
    return "aiquery-" + re.sub(r"[^A-Za-z0-9_.#-]", "-", group)


def run_remote(
    url: str,
    statements: Sequence[Statement],
    *,
    query_tag: str,
    cap: CapSetting,
    output: JobOutput,
) -> tuple[JobResult, bool]:
    """Run ``statements`` through the Connect server at ``url``; the result and whether the cap stopped it.

    Raises:
        ConfigError: the server is not an aiquery Connect server.
    """
    from pyspark.sql import SparkSession

    spark: Any = SparkSession.builder.remote(url).create()  # a session of its own: its settings are the run's
    try:
        client.register(spark)
        spark.conf.set(QUERY_TAG_PROPERTY, query_tag)
        if cap.max_cost is not None:
            spark.conf.set(COST_SETTING, f"{cap.max_cost} {cap.currency}")
        if cap.max_tokens is not None:
            spark.conf.set(TOKENS_SETTING, str(cap.max_tokens))
        output.out.write(f"aiquery run (remote): {len(statements)} statement(s), query tag {query_tag}\n")
        result = execute_statements(spark, statements, _RemoteControl(spark), query_tag, output)
        table = client.usage_table(spark)
        if table is not None:
            add_usage(spark, table, result, client.flush_usage)
        report(result, output.out, ledger_table=table)
    finally:
        spark.stop()
    capped = result.failed is not None and CAPPED_ERROR in (result.error or "")
    return result, capped
