"""The live progress line of ``aiquery run``: task counts from Spark, counts from the coordinator."""

from __future__ import annotations

import io
from typing import Any

from aiquery.coordinator.progress import QueryProgress, TaskCounts, format_clock
from aiquery.jobs.progress import ProgressReporter, UsageCounts, spark_tasks


class Counts:
    """What the coordinator reports for the job's tag, moved forward by the test."""

    def __init__(self) -> None:
        self.now = UsageCounts()

    def __call__(self) -> UsageCounts:
        return self.now


def test_progress_line_shows_tasks_rows_rate_429s_errors_tokens_and_eta() -> None:
    counts = Counts()
    counts.now = UsageCounts(rows=7, requests=9, errors=2, rate_limited=1, tokens=50)  # before the statement
    stream = io.StringIO()
    reporter = ProgressReporter(
        "statement 2/3", usage=counts, tasks=lambda: TaskCounts(done=3, running=1, total=8), stream=stream, interval=60
    )
    with reporter:
        counts.now = UsageCounts(rows=47, requests=59, errors=4, rate_limited=6, tokens=350, cost={"USD": 0.75})
        live = reporter.line()
    line = stream.getvalue().strip()
    assert line.startswith("statement 2/3  00:00  tasks 3/8")
    assert "rows 40  requests 50 (" in line and "429s 10.0%  errors 2  tokens 300  cost 0.7500 USD" in line
    assert "ETA" in live and "ETA" not in line  # the final line has no time left to show
    # Live, the cost so far and the whole statement's, from the share of its tasks done (3 of 8).
    assert "cost 0.7500 USD (projected 2.0000 USD)" in live and "projected" not in line


def test_the_run_line_and_aiquery_progress_show_429s_cost_and_projection_alike() -> None:
    tasks = TaskCounts(done=3, running=1, total=8)
    query = QueryProgress(
        query="q",
        description=None,
        running=True,
        seconds=30.0,
        rows_answered=40,
        rows_failed=0,
        requests=50,
        requests_per_second=0.0,
        errors=2,
        rate_limited=5,
        tokens=300,
        from_store=0,
        tasks=tasks,
        eta_seconds=tasks.eta(30.0),
        cost={"USD": 0.75},
    )
    counts = Counts()
    stream = io.StringIO()
    with ProgressReporter("statement 1/1", usage=counts, tasks=lambda: tasks, stream=stream, interval=60) as reporter:
        counts.now = UsageCounts(rows=40, requests=50, errors=2, rate_limited=5, tokens=300, cost={"USD": 0.75})
        live = reporter.line()
    for line in (live, query.line()):
        assert "requests 50 (0.0/s)  429s 10.0%" in line
        assert "cost 0.7500 USD (projected 2.0000 USD)" in line
    assert "ETA 00:50" in query.line()  # 30 s for 3 of 8 tasks: 50 s for the other 5
    assert format_clock(3725) == "1:02:05" and format_clock(65) == "01:05"


def test_no_progress_line_for_a_quick_statement_without_requests() -> None:
    stream = io.StringIO()
    with ProgressReporter("statement 1/1", usage=Counts(), tasks=None, stream=stream, interval=60):
        pass
    assert stream.getvalue() == ""


def test_a_statements_task_counts_add_up_the_stages_of_its_job_group(spark: Any) -> None:
    context = spark.sparkContext
    context.setJobGroup("progress-test-group", "two jobs of one statement")
    try:
        context.parallelize(range(6), 3).count()
        context.parallelize(range(4), 2).count()
    finally:
        context.setLocalProperty("spark.jobGroup.id", None)  # None removes a local property
    assert spark_tasks(context, "progress-test-group") == TaskCounts(done=5, running=0, total=5)
    assert spark_tasks(context, "no-such-group") == TaskCounts()
