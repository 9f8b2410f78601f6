"""What a job prints: the cause of a failure in a line, result rows, the usage summary, query tags."""

from __future__ import annotations

import re

from aiquery.jobs.script import Statement
from aiquery.jobs.statements import JobResult, describe_error, format_rows, new_query_tag, report
from aiquery.jobs.summary import EndpointUsage, format_summary

# Shapes of the errors spark.sql raises, as seen from PySpark 4.2 (trimmed).
WORKER_ERROR = """An error occurred while calling o52.sql.
: org.apache.spark.SparkException: [TASK_WRITE_FAILED] Task failed while writing rows to file:/w/t. SQLSTATE: 58030
\tat org.apache.spark.sql.errors.QueryExecutionErrors$.taskFailedWhileWritingRowsError(QueryExecutionErrors.scala:843)
Caused by: org.apache.spark.api.python.PythonException: [PYTHON_EXCEPTION] An exception was thrown from the Python \
worker: Traceback (most recent call last):
  File "/work/main/aiquery/engine/engine.py", line 219, in run
    raise failed.result()
aiquery.errors.ClientError: endpoint 'ep': HTTP 400: The request is invalid.
 SQLSTATE: 38000
\t... 1 more
"""
ANALYSIS_ERROR = """[UNRESOLVED_COLUMN.WITH_SUGGESTION] A column, variable, or function parameter with name `nope` \
cannot be resolved. Did you mean one of the following? [`id`]. SQLSTATE: 42703; line 1 pos 7;
'Project ['nope]
+- Range (0, 3, step=1)
"""
JAVA_CAUSE = """An error occurred while calling o50.sql.
: org.apache.spark.SparkException: Job aborted.
\tat org.apache.spark.SparkContext.runJob(SparkContext.scala:2496)
Caused by: java.io.IOException: No space left on device
\tat java.io.FileOutputStream.writeBytes(Native Method)
"""


def test_describe_error_finds_the_cause() -> None:
    assert describe_error(RuntimeError(WORKER_ERROR)) == "ClientError: endpoint 'ep': HTTP 400: The request is invalid."
    assert describe_error(RuntimeError(ANALYSIS_ERROR)).startswith("[UNRESOLVED_COLUMN.WITH_SUGGESTION] A column")
    assert "Project" not in describe_error(RuntimeError(ANALYSIS_ERROR))
    assert describe_error(RuntimeError(JAVA_CAUSE)) == "IOException: No space left on device"
    assert len(describe_error(RuntimeError("x" * 5000))) <= 600


def test_format_rows_cuts_long_values_and_vectors() -> None:
    text = format_rows(["id", "v", "s"], [(1, [0.5] * 1024, "a" * 200), (2, None, "b")], limit=1)
    lines = text.splitlines()
    assert lines[0].split() == ["id", "v", "s"]
    assert "[0.5, 0.5, 0.5, ... (1024 values)]" in lines[1] and "a" * 57 + "..." in lines[1]
    assert lines[-1].strip() == "(first 1 rows shown)"


def test_summary_table_with_a_total_line() -> None:
    rows = [
        EndpointUsage("databricks-gte-large-en", 446, 430, 16, 14983, 0, 14983, 85, cost=0.0003, currency="USD"),
        EndpointUsage(
            "my-chat", 1200, 1000, 200, 20000, 5000, 25000, None, 300, cost=0.012, currency="USD", avoided_cost=0.003
        ),
    ]
    lines = format_summary(rows).splitlines()
    assert lines[0].split()[:3] == ["endpoint", "requests", "calls"]
    assert lines[0].split()[-4:] == ["from", "store", "cost", "avoided"]
    assert lines[1].split() == [
        "databricks-gte-large-en", "446", "430", "16", "14,983", "0", "14,983", "85", "0", "0.0003", "USD", "-"
    ]  # fmt: skip
    assert lines[2].split()[-6:] == ["-", "300", "0.0120", "USD", "0.0030", "USD"]
    assert lines[3].split() == [
        "total", "1,646", "1,430", "216", "34,983", "5,000", "39,983", "300", "0.0123", "USD", "0.0030", "USD"
    ]  # fmt: skip
    assert len(lines) == 4 and format_summary([]).strip() == "no ai_query request was made"


def test_summary_names_endpoints_without_a_price_and_never_adds_currencies() -> None:
    rows = [
        EndpointUsage("my-finetune", 10, 10, 0, 100, 50, 150, 20),
        EndpointUsage("openai-mini", 4, 4, 0, 40, 20, 60, 20, cost=0.25, currency="USD"),
        EndpointUsage("databricks-llama", 6, 6, 0, 60, 30, 90, 20, 2, cost=1.5, currency="DBU", avoided_cost=0.5),
    ]
    text = format_summary(rows)
    assert "my-finetune" in text.splitlines()[1] and text.splitlines()[1].endswith("no price           -")
    assert "total in DBU: 1.5000 DBU, avoided 0.5000 DBU" in text and "total in USD: 0.2500 USD" in text
    assert text.splitlines()[-1].startswith("  no price for my-finetune: their cost is not counted")


def test_report_names_outcome_and_tag() -> None:
    import io

    result = JobResult(query_tag="nightly-x", statements=3, completed=1, seconds=2.0)
    result.failed = Statement(2, 5, "SELECT 1", 5)
    result.usage = [EndpointUsage("my-chat", 3, 3, 1, 30, 10, 40, 12)]
    out = io.StringIO()
    report(result, out, ledger_table="ai_gateway.usage")
    text = out.getvalue()
    assert text.startswith("Job failed: 1 of 3 statement(s) in 2.0 s; query tag nightly-x")
    assert "Usage recorded in ai_gateway.usage for this run:" in text and "my-chat" in text


def test_query_tags_are_unique_and_readable() -> None:
    first, second = new_query_tag("nightly job.sql"), new_query_tag("nightly job.sql")
    assert first != second
    assert re.fullmatch(r"nightly-job\.sql-\d{8}T\d{6}Z-[0-9a-f]{4}", first)
