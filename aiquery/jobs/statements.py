"""Running a job's statements in order in one SparkSession, with progress, a usage summary, and a clear failure.

Every request a job makes carries one query tag (the ``aiquery.query_tag`` local property, which the UDF reads
into the usage table's ``query_tag``), so the summary, and any later query of the usage table, can tell this
run's requests from all others. Each statement also gets its own Spark job group, which names it in Spark's UI
and gives the progress line its task counts.
"""

from __future__ import annotations

import functools
import re
import secrets
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import IO, TYPE_CHECKING, Any, Protocol

from aiquery.coordinator.progress import TaskCounts
from aiquery.jobs.progress import (
    POLL_INTERVAL_S,
    ProgressReporter,
    UsageCounts,
    coordinator_counts,
    spark_tasks,
)
from aiquery.jobs.script import Statement
from aiquery.jobs.session import INTERRUPTED
from aiquery.jobs.summary import EndpointUsage, format_summary, usage_summary

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = [
    "JobControl",
    "JobOutput",
    "JobResult",
    "add_usage",
    "describe_error",
    "execute_statements",
    "new_query_tag",
    "run_statements",
    "wait_until_settled",
]

QUERY_TAG_PROPERTY = "aiquery.query_tag"
CANCEL_WAIT_S = 30.0
"""How long a failed or interrupted job waits for its cancelled tasks to end before ingesting their usage."""
MAX_ERROR_CHARS = 600
MAX_CELL_CHARS = 60
_PYTHON_ERROR = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?([A-Z]\w*(?:Error|Exception|Exceeded|Timeout)): (.+)$", re.M)
_JAVA_ERROR = re.compile(r"^(?:Caused by: )?(?:[\w$]+\.)*([\w$]+(?:Exception|Error)): (.*)$")


@dataclass
class JobResult:
    """What happened when a job ran.

    Attributes:
        query_tag: the tag its requests carry in the usage table.
        statements: how many statements the job has.
        completed: how many ran to the end.
        failed: the statement that failed (or was running when the job was interrupted), or None.
        error: why it failed, in one or a few lines.
        interrupted: the user stopped the job (Ctrl-C); its running Spark jobs were cancelled.
        usage: per-endpoint totals from the usage table; None when the ledger is off or could not be read.
        seconds: wall time of the statements.
        notes: anything else worth saying at the end (e.g. why there is no usage summary).
        cap: where the spending cap stood at the end: the application's (``--max-cost``), or a session's set by the
            job's SQL, a reached one first (see :meth:`aiquery.coordinator.cap_book.CapBook.snapshot`); None
            without a cap.
    """

    query_tag: str
    statements: int
    completed: int = 0
    failed: Statement | None = None
    error: str | None = None
    interrupted: bool = False
    usage: list[EndpointUsage] | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    cap: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        """True when every statement ran."""
        return self.failed is None

    @property
    def capped(self) -> bool:
        """The spending cap was reached and kept requests from being sent."""
        return bool(self.cap and self.cap["reached"] and self.cap["refused"])


def new_query_tag(job_name: str) -> str:
    """A tag unique to one run, e.g. ``nightly-20240601T020000Z-3f9a``."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", job_name).strip("-") or "job"
    return f"{stem}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"


def describe_error(error: BaseException) -> str:
    """The useful part of an error raised by ``spark.sql``: a worker's Python error, or Spark's own message."""
    text = str(error)
    if "Traceback (most recent call last)" in text:
        found = list(_PYTHON_ERROR.finditer(text))
        if found:
            name, message = found[-1].groups()
            return _shorten(f"{name}: {message.removesuffix(' SQLSTATE: 38000').strip()}")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("at ")]
    lines = [line.removeprefix(": ") for line in lines if not line.startswith("An error occurred while calling")]
    caused = [line for line in lines if line.startswith("Caused by: ")]
    chosen = caused[-1] if caused else (lines[0] if lines else type(error).__name__)
    match = _JAVA_ERROR.match(chosen)
    if match is not None:
        name, message = match.groups()
        # "[ERROR_CLASS] message" says it all; a bare message is clearer with its exception's short name.
        chosen = message if message.startswith("[") else f"{name}: {message}"
    return _shorten(chosen)


def _shorten(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


def run_statements(
    spark: SparkSession,
    statements: Sequence[Statement],
    *,
    query_tag: str,
    out: IO[str] = sys.stdout,
    progress: IO[str] = sys.stderr,
    show_rows: int = 20,
    progress_interval: float = POLL_INTERVAL_S,
    indent: str = "",
) -> JobResult:
    """Run ``statements`` in order, stopping at the first failure; then flush usage and summarise it.

    ``ai_query`` must already be registered in ``spark`` (see :func:`aiquery.register`).

    Args:
        spark: the session.
        statements: what to run (see :func:`aiquery.jobs.script.prepare_job`).
        query_tag: the tag every request of this run carries.
        out: where statement headers, result rows and the summary go.
        progress: where the live progress line goes.
        show_rows: rows of a statement's result to print (a SELECT computes only those, as with LIMIT).
        progress_interval: seconds between progress updates.
        indent: put before every line printed (the demo nests the job's lines under its own steps).

    Returns:
        The outcome; it never raises for a failing statement.
    """
    # Imported here, not above: the command line starts (and checks a job file) without the Spark layer.
    from aiquery.spark.coordination import running_coordinator
    from aiquery.spark.registry import ledger_for

    ledger: Any = ledger_for(spark)
    coordinator = running_coordinator(spark)
    context = spark.sparkContext
    previous_tag = context.getLocalProperty(QUERY_TAG_PROPERTY)
    context.setLocalProperty(QUERY_TAG_PROPERTY, query_tag)
    output = JobOutput(out, progress, show_rows, progress_interval, indent)
    try:
        result = execute_statements(spark, statements, _ClassicControl(context, coordinator), query_tag, output)
    finally:
        # pyspark types the value as str, but None is how the JVM removes a local property.
        context.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]
        context.setLocalProperty("spark.job.description", None)  # type: ignore[arg-type]
        context.setLocalProperty(QUERY_TAG_PROPERTY, previous_tag)  # type: ignore[arg-type]
    if coordinator is not None:
        result.cap = coordinator.cap_state()
    if ledger is not None:
        from aiquery.spark.flush import flush_usage

        add_usage(spark, ledger.table, result, flush_usage)
    return result


def add_usage(spark: SparkSession, table: str, result: JobResult, flush: Callable[[Any], object]) -> None:
    """Flush the usage ledger (``flush(spark)``) and put the run's totals in ``result`` (or a note on why there are
    none)."""
    try:
        flush(spark)
        result.usage = usage_summary(spark, table, result.query_tag)
    except Exception as error:  # the job's own outcome matters more than its bill; say why there is none
        result.notes.append(f"usage summary unavailable: {describe_error(error)}")


@dataclass(frozen=True)
class JobOutput:
    """Where a run's output goes and how much of it: statement headers and rows (``out``), the progress line."""

    out: IO[str] = sys.stdout
    progress: IO[str] = sys.stderr
    show_rows: int = 20
    progress_interval: float = POLL_INTERVAL_S
    indent: str = ""


class JobControl(Protocol):
    """What a run asks of the application its statements run in, per statement (a ``group``): a local one through
    its SparkContext and coordinator, a Spark Connect server through its session (:mod:`aiquery.jobs.remote`)."""

    counts_usage: bool
    """Whether :meth:`usage` has counts to give (a local run without a coordinator has none)."""

    def start(self, group: str, description: str) -> None: ...

    def tasks(self, group: str) -> TaskCounts: ...

    def usage(self, query_tag: str) -> UsageCounts: ...

    def cancel(self, group: str) -> None: ...


def execute_statements(
    spark: SparkSession, statements: Sequence[Statement], control: JobControl, query_tag: str, output: JobOutput
) -> JobResult:
    """Run ``statements`` in order, stopping at the first failure (the result says which and why)."""
    run = _StatementRun(spark, query_tag, len(statements), control, output)
    result = JobResult(query_tag=query_tag, statements=len(statements))
    started = time.monotonic()
    try:
        for statement in statements:
            if not run.statement(statement, result):
                break
            result.completed += 1
    finally:
        result.seconds = time.monotonic() - started
    return result


class _ClassicControl:
    """A local application: job groups on its SparkContext, counts from its coordinator."""

    def __init__(self, context: Any, coordinator: Any) -> None:
        self.context = context
        self.coordinator = coordinator
        self.counts_usage = coordinator is not None

    def start(self, group: str, description: str) -> None:
        self.context.setJobGroup(group, description)

    def tasks(self, group: str) -> TaskCounts:
        return spark_tasks(self.context, group)

    def usage(self, query_tag: str) -> UsageCounts:
        return coordinator_counts(self.coordinator, query_tag)

    def cancel(self, group: str) -> None:
        self.context.cancelJobGroup(group)
        wait_until_settled(self.context, self.coordinator, CANCEL_WAIT_S)


@dataclass
class _StatementRun:
    """What every statement of one run shares: the session, the tag, the application's control, the output."""

    spark: SparkSession
    query_tag: str
    count: int
    control: JobControl
    output: JobOutput

    def statement(self, statement: Statement, result: JobResult) -> bool:
        """Run one statement and print its first rows; False when it failed (``result`` then says why)."""
        output, control = self.output, self.control
        out, indent, show_rows = output.out, output.indent, output.show_rows
        out.write(f"{indent}[{statement.number}/{self.count}] line {statement.line}: {statement.first_line}\n")
        out.flush()
        group = f"{self.query_tag}#{statement.number}"
        control.start(group, f"aiquery {self.query_tag}: {statement.describe()}")
        try:
            with ProgressReporter(
                f"{indent}statement {statement.number}/{self.count}",
                usage=functools.partial(control.usage, self.query_tag) if control.counts_usage else None,
                tasks=functools.partial(control.tasks, group),
                stream=output.progress,
                interval=output.progress_interval,
            ):
                frame: DataFrame = self.spark.sql(statement.sql)
                rows = frame.limit(show_rows + 1).collect() if show_rows > 0 and frame.columns else []
        except (Exception, KeyboardInterrupt) as error:  # any failure ends the job, reported, not raised
            result.failed = statement
            if isinstance(error, KeyboardInterrupt) or INTERRUPTED.is_set():
                # Ctrl-C (see jobs.session.plain_ctrl_c), raised here or surfacing as the cancelled job's error.
                result.interrupted = True
                result.error = "interrupted (Ctrl-C); its Spark jobs were cancelled"
            else:
                result.error = describe_error(error)
            # Either way the statement's other tasks are cut off, with requests in flight: those are failed
            # requests of this job too, and belong in its summary. Their usage is ingested once the tasks are gone
            # (a killed worker's requests are closed as lost then).
            control.cancel(group)
            return False
        if rows:
            out.write(textwrap.indent(format_rows(frame.columns, rows, show_rows), indent) + "\n")
        return True


def format_cap(cap: dict[str, Any]) -> str:
    """One line on the spending cap: spent since it was set, and whether it stopped requests."""
    spent = []
    if cap["max_cost"] is not None:
        spent.append(f"{cap['spent_cost']:.6g} {cap['currency']}")
    if cap["max_tokens"] is not None:
        spent.append(f"{cap['spent_tokens']:,} tokens")
    line = f"Spending cap {cap['cap']}: {' and '.join(spent)} spent since it was set"
    if cap["reached"]:
        line += (
            f"; REACHED: {cap['refused']:,} request(s) not sent (their rows failed with AI_QUERY_BUDGET_EXCEEDED). "
            "Run again with a higher cap to finish: answered rows come from the answer store, not paid again."
        )
    return line


def format_rows(columns: Sequence[str], rows: Sequence[Any], limit: int) -> str:
    """A small plain-text table of result rows (values cut to a readable width)."""
    shown = [[_cell(value) for value in row] for row in rows[:limit]]
    widths = [max([len(name)] + [len(row[i]) for row in shown]) for i, name in enumerate(columns)]
    lines = ["  " + "  ".join(name.ljust(width) for name, width in zip(columns, widths, strict=True)).rstrip()]
    lines += [
        "  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in shown
    ]
    if len(rows) > limit:
        lines.append(f"  (first {limit} rows shown)")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, list) and len(value) > 3:
        text = f"[{', '.join(_cell(v) for v in value[:3])}, ... ({len(value)} values)]"
    else:
        text = str(value)
    text = " ".join(text.split())
    return text if len(text) <= MAX_CELL_CHARS else text[: MAX_CELL_CHARS - 3] + "..."


def wait_until_settled(context: Any, coordinator: Any, timeout: float) -> None:
    """After a cancel: wait (at most ``timeout``) for the tasks to end, then for every request begun to end."""
    # A cancelled stage ends at once, but its tasks run on until their Python workers are killed
    # (spark.python.task.killTimeout, 2 s by default). Wait for the tasks to end, then for every request begun to
    # end: a Spark task can be reported killed while its Python worker, still connected, waits for the answers to
    # requests it sent before the cancel (their end records come a moment later), or the coordinator closes them
    # as lost once their worker is gone. Waiting only for the tasks would miss those records.
    deadline = time.monotonic() + timeout
    tracker = context._jsc.sc().statusTracker()
    while time.monotonic() < deadline:
        if not any(info.numRunningTasks() for info in tracker.getExecutorInfos()):
            break
        time.sleep(0.2)
    if coordinator is not None:
        coordinator.settle(max(0.0, deadline - time.monotonic()), idle=True)


def report(result: JobResult, out: IO[str], *, ledger_table: str | None, indent: str = "") -> None:
    """Print the end-of-job summary: outcome, time and the usage table's totals for this run."""
    status = "finished" if result.ok else "interrupted" if result.interrupted else "failed"
    lines = [
        f"Job {status}: {result.completed} of {result.statements} statement(s) in {result.seconds:.1f} s; "
        f"query tag {result.query_tag}"
    ]
    if result.usage is not None:
        lines += [f"Usage recorded in {ledger_table} for this run:", format_summary(result.usage)]
    if result.cap is not None:
        lines.append(format_cap(result.cap))
    lines += [f"  {note}" for note in result.notes]
    out.write(textwrap.indent("\n".join(lines), indent) + "\n")
    out.flush()
