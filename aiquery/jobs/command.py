"""``aiquery run JOB.sql``: the scheduled batch job, from the command line or through spark-submit.

Exit status: 0 when every statement ran; 1 when a statement failed (the message names it) or Spark failed;
2 when nothing ran because the command line, the job file, a variable or the configuration is wrong; 3 when the
spending cap (``--max-cost``, ``--max-tokens``) stopped requests from being sent (the summary says how many).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from aiquery.errors import AIQueryError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from aiquery.coordinator.cap import CapSetting

__all__ = [
    "EXIT_CAPPED",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "UsageProblem",
    "add_estimate_arguments",
    "add_run_arguments",
    "estimate_command",
    "guarded",
    "run_command",
    "spark_log_path",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CAPPED = 3
"""The spending cap was reached and requests were not sent."""
EXIT_INTERRUPTED = 130
"""The shell's status for a command ended by Ctrl-C (128 + SIGINT)."""


class UsageProblem(Exception):
    """The command cannot start: a missing file, a bad option (exit status 2)."""


def add_run_arguments(parser: argparse.ArgumentParser, *, submitted: bool) -> None:
    """The options of ``aiquery run`` (``submitted``: the spark-submit launcher, where Spark is given)."""
    parser.add_argument("job", metavar="JOB.sql", help="SQL file of one or more statements separated by ';'")
    parser.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="value for ${NAME} in the job file (repeatable); every variable the file uses must be given",
    )
    parser.add_argument(
        "--config", metavar="FILE", help="endpoints file (default: $AIQUERY_CONFIG, else ./conf/aiquery.toml)"
    )
    parser.add_argument(
        "--query-tag", metavar="TAG", help="tag for this run's rows in the usage table (default: <job>-<time>-<id>)"
    )
    parser.add_argument(
        "--show-rows", type=int, default=20, metavar="N", help="rows of each result to print (default 20; 0: none)"
    )
    parser.add_argument(
        "--progress-interval", type=float, default=2.0, metavar="SECONDS", help="seconds between progress updates"
    )
    parser.add_argument(
        "--max-cost",
        metavar="AMOUNT",
        help="spending cap for this run, e.g. 20 (USD) or '20 DBU': once reached no new request is sent, and the "
        "job exits with status 3 (every endpoint it calls needs a price in that currency)",
    )
    parser.add_argument(
        "--max-tokens",
        metavar="N",
        help="cap on the tokens (input plus output) this run's requests may use; exit status 3 once reached",
    )
    from aiquery.jobs.batch_command import add_batch_run_arguments

    add_batch_run_arguments(parser)
    if not submitted:
        parser.add_argument(
            "--remote",
            metavar="sc://HOST:PORT",
            help="run the job through an aiquery Spark Connect server (aiquery connect-server) instead of a local "
            "Spark; the endpoints are the server's, the query tag and the cap this run's session settings. Give "
            "the server's token in SPARK_CONNECT_AUTHENTICATE_TOKEN: a token in the URL shows in the process list",
        )
        parser.add_argument("--master", default="local[*]", help="Spark master URL (default local[*])")
        parser.add_argument(
            "--warehouse",
            default="spark-warehouse",
            metavar="DIR",
            help="warehouse folder; its Delta tables are available to the job (default ./spark-warehouse)",
        )
        parser.add_argument(
            "--spark-log",
            metavar="FILE",
            help="file for Spark's own output, appended to (default <warehouse>/_logs/spark.log; '-': stderr)",
        )


def run_command(
    args: argparse.Namespace, *, submitted: bool, out: IO[str] | None = None, err: IO[str] | None = None
) -> int:
    """Run a job as ``aiquery run`` (``submitted=False``) or under spark-submit; the exit status."""
    from aiquery.config import load_settings
    from aiquery.jobs.session import plain_ctrl_c, quiet_pyspark_loggers
    from aiquery.jobs.statements import new_query_tag, report, run_statements
    from aiquery.spark.registry import ledger_for, register

    out = out or sys.stdout
    err = err or sys.stderr
    path, statements = _read_job(args)
    if args.show_rows < 0 or not 0 < args.progress_interval < float("inf"):  # NaN fails both comparisons
        raise UsageProblem("--show-rows must be 0 or more and --progress-interval a number of seconds more than 0")
    cap = _cap_settings(args)
    batch = _batch_options(args, cap)
    query_tag = args.query_tag or new_query_tag(path.stem)
    if getattr(args, "remote", None):
        if batch is not None:
            raise UsageProblem("--batch runs the job in this process's Spark; it cannot go with --remote")
        return _run_remote(args, statements, cap, query_tag, out, err)
    settings = load_settings(config_path=args.config)
    spark = _submitted_spark(settings.usage.enabled) if submitted else _local_spark(args, err)
    try:
        quiet_pyspark_loggers()
        plain_ctrl_c(spark.sparkContext)
        register(spark, settings=settings)
        if cap:
            _cap_application(spark, cap)
        ledger = ledger_for(spark)
        if ledger is not None:
            # Now, before any statement: created later by the background ingestion, a Ctrl-C that cancels every
            # job could cut the table's creation short and leave a folder that is not a Delta table yet.
            ledger.ensure_table()
        out.write(f"aiquery run {path}: {len(statements)} statement(s), query tag {query_tag}\n")
        if batch is not None:
            result = _run_batch(spark, statements, batch, cap, query_tag, out, err, args)
        else:
            result = run_statements(
                spark,
                statements,
                query_tag=query_tag,
                out=out,
                progress=err,
                show_rows=args.show_rows,
                progress_interval=args.progress_interval,
            )
        report(result, out, ledger_table=ledger.table if ledger is not None else None)
    finally:
        spark.stop()
    return _exit_status(result, err, capped=result.capped)


def _batch_options(args: argparse.Namespace, cap: CapSetting) -> Any:
    from aiquery.jobs.batch_command import batch_options

    try:
        return batch_options(args, cap.max_cost, cap.currency)
    except ValueError as error:
        raise UsageProblem(str(error)) from None


def _run_batch(spark: Any, statements: list[Any], batch: Any, cap: CapSetting, query_tag: str, *streams: Any) -> Any:
    """``--batch``: the batch phase, then the job from its answers (see :mod:`aiquery.jobs.batch_run`)."""
    from aiquery.jobs.batch_run import run_batch_job
    from aiquery.jobs.statements import JobOutput

    out, err, args = streams
    output = JobOutput(out, err, args.show_rows, args.progress_interval)
    result, _ = run_batch_job(spark, statements, batch, query_tag=query_tag, output=output, cap=cap)
    return result


def _run_remote(
    args: argparse.Namespace, statements: list[Any], cap: CapSetting, query_tag: str, out: IO[str], err: IO[str]
) -> int:
    """``aiquery run --remote``: the job through a Spark Connect server (see :mod:`aiquery.jobs.remote`)."""
    from aiquery.jobs.remote import cap_lifters, run_remote
    from aiquery.jobs.statements import JobOutput

    if args.config is not None:
        raise UsageProblem("--config names local endpoints; with --remote the endpoints are the server's")
    shown = str(args.remote).split(";", 1)[0][:60]  # parameters after ';' may hold the token
    if not str(args.remote).startswith("sc://"):
        raise UsageProblem(f"--remote takes a Spark Connect URL (sc://host:port), not {shown!r}")
    if "token=" in str(args.remote).lower():
        err.write(
            "aiquery run: warning: the --remote URL holds the server's token, which any user of this machine can "
            "read in the process list; give it in SPARK_CONNECT_AUTHENTICATE_TOKEN instead\n"
        )
    lifting = cap_lifters(statements) if cap else []
    if lifting:
        raise UsageProblem(
            f"{lifting[0].describe()} would change the session's spending cap that --max-cost/--max-tokens set; "
            "over --remote the cap is a session setting, so the job may not SET aiquery.budget.* or RESET"
        )
    output = JobOutput(out, err, args.show_rows, args.progress_interval)
    result, capped = run_remote(args.remote, statements, query_tag=query_tag, cap=cap, output=output)
    return _exit_status(result, err, capped=capped)


def _exit_status(result: Any, err: IO[str], *, capped: bool) -> int:
    """The exit status of a finished run, its reason on ``err``."""
    if result.interrupted:
        err.write(f"aiquery run: interrupted during {result.failed.describe() if result.failed else 'the job'}\n")
        return EXIT_INTERRUPTED
    if capped:
        if result.failed is not None:
            err.write(f"aiquery run: {result.failed.describe()} stopped by the spending cap: {result.error}\n")
        return EXIT_CAPPED
    if result.failed is not None:
        err.write(f"aiquery run: {result.failed.describe()} failed: {result.error}\n")
        return EXIT_FAILED
    return EXIT_OK


def _read_job(args: argparse.Namespace) -> tuple[Path, list[Any]]:
    """The job file's statements, variables filled in.

    Raises:
        UsageProblem: the file cannot be read.
        JobScriptError: a variable is missing or the file cannot be split.
    """
    from aiquery.jobs.script import parse_variables, prepare_job

    path = Path(args.job)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise UsageProblem(f"cannot read the job file {path}: {error.strerror}") from None
    return path, prepare_job(text, parse_variables(args.var))


def add_estimate_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``aiquery estimate``."""
    parser.add_argument("job", metavar="JOB.sql", help="the job file aiquery run would run")
    parser.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", help="as for aiquery run")
    parser.add_argument("--config", metavar="FILE", help="endpoints file, as for aiquery run")
    parser.add_argument(
        "--fraction", type=float, default=0.01, metavar="F", help="share of each call's rows to send (default 0.01)"
    )
    parser.add_argument(
        "--min-rows", type=int, default=100, metavar="N", help="send at least N rows per call (default 100)"
    )
    parser.add_argument("--master", default="local[*]", help="Spark master URL (default local[*])")
    parser.add_argument("--warehouse", default="spark-warehouse", metavar="DIR", help="warehouse folder, as for run")
    parser.add_argument("--spark-log", metavar="FILE", help="file for Spark's own output, as for run")


def estimate_command(args: argparse.Namespace, *, out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    """``aiquery estimate``: run the job on a sample of each call's rows and print the estimate; the exit status."""
    from aiquery.config import load_settings
    from aiquery.jobs.estimate import EstimateError, estimate_statements
    from aiquery.jobs.session import plain_ctrl_c, quiet_pyspark_loggers
    from aiquery.spark.registry import register

    out = out or sys.stdout
    err = err or sys.stderr
    path, statements = _read_job(args)
    if not 0 < args.fraction <= 1 or args.min_rows < 0:
        raise UsageProblem("--fraction must be more than 0 and at most 1, and --min-rows 0 or more")
    settings = load_settings(config_path=args.config)
    if not settings.usage.enabled:
        raise UsageProblem("an estimate reads its sample from the usage ledger: turn [usage] enabled back on")
    spark = _local_spark(args, err)
    try:
        quiet_pyspark_loggers()
        plain_ctrl_c(spark.sparkContext)
        register(spark, settings=settings)
        out.write(f"aiquery estimate {path}: {len(statements)} statement(s); your tables are not written\n")
        out.flush()
        try:
            found = estimate_statements(spark, statements, fraction=args.fraction, min_rows=args.min_rows)
        except EstimateError as error:
            err.write(f"aiquery estimate: {error}\n")
            return EXIT_FAILED
        out.write(found.format() + "\n")
    finally:
        spark.stop()
    return EXIT_OK


def _cap_settings(args: argparse.Namespace) -> CapSetting:
    """The application's cap of ``--max-cost`` and ``--max-tokens`` (empty without them).

    Raises:
        UsageProblem: a value is not a positive amount (with an optional currency) or number of tokens.
    """
    from aiquery.coordinator.cap import DEFAULT_CURRENCY, CapSetting, parse_max_cost, parse_max_tokens

    try:
        max_cost: float | None = None
        currency = DEFAULT_CURRENCY
        if args.max_cost is not None:
            max_cost, currency = parse_max_cost(args.max_cost, source="--max-cost")
        max_tokens = parse_max_tokens(args.max_tokens, source="--max-tokens") if args.max_tokens is not None else None
    except ValueError as error:
        raise UsageProblem(str(error)) from None
    return CapSetting(max_cost=max_cost, currency=currency, max_tokens=max_tokens)


def _cap_application(spark: Any, cap: CapSetting) -> None:
    """Put the application's cap in force on its coordinator: not a session setting, so the job's SQL can neither
    ``RESET`` nor raise it (a lower ``SET`` in the job adds a session cap)."""
    from aiquery.spark.coordination import running_coordinator

    coordinator = running_coordinator(spark)
    if coordinator is None:
        raise UsageProblem("--max-cost/--max-tokens need the application's coordinator, which is not running")
    coordinator.set_application_cap(cap)


def spark_log_path(option: str | None, warehouse: str | Path) -> Path | None:
    """Where Spark's output goes: the ``--spark-log`` file, ``<warehouse>/_logs/spark.log``, or None for stderr."""
    if option == "-":
        return None
    # Under the warehouse, in a folder whose name starts with "_": never taken for a table.
    return Path(option) if option else Path(warehouse) / "_logs" / "spark.log"


def _local_spark(args: argparse.Namespace, err: IO[str]) -> SparkSession:
    from aiquery.jobs.session import start_local_spark

    spark_log = spark_log_path(args.spark_log, args.warehouse)
    if spark_log is not None:
        err.write(f"Spark's own log: {spark_log}\n")
    return start_local_spark("aiquery-run", master=args.master, warehouse_dir=args.warehouse, spark_log=spark_log)


def _submitted_spark(usage_enabled: bool) -> SparkSession:
    from pyspark.sql import SparkSession

    from aiquery.jobs.session import attach_tables
    from aiquery.spark.session import ensure_delta

    spark = SparkSession.builder.appName("aiquery-run").getOrCreate()
    if usage_enabled:
        ensure_delta(spark)
    warehouse = spark.conf.get("spark.sql.warehouse.dir", "") or ""
    parsed = urlparse(warehouse)
    if parsed.scheme in ("", "file"):
        attach_tables(spark, unquote(parsed.path) if parsed.scheme else warehouse)
    return spark


def guarded(prog: str, action: Callable[[], int], *, debug: bool = False, err: IO[str] | None = None) -> int:
    """Run ``action``; a user error becomes one line on stderr and exit status 2, anything else status 1.

    Args:
        prog: the command's name, prefixed to messages (``aiquery run``).
        action: what to run; returns the exit status.
        debug: let unexpected errors raise, with their traceback.
        err: where messages go (default stderr).
    """
    from aiquery.jobs.script import JobScriptError

    err = err or sys.stderr
    try:
        return action()
    except (UsageProblem, JobScriptError, AIQueryError) as error:
        err.write(f"{prog}: {error}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        err.write(f"{prog}: interrupted\n")
        return EXIT_INTERRUPTED
    except Exception as error:
        if debug:
            raise
        from aiquery.jobs.statements import describe_error

        err.write(f"{prog}: {describe_error(error)} (run with --debug for the traceback)\n")
        return EXIT_FAILED
