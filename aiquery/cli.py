"""The ``aiquery`` command: ``demo``, ``run``, ``estimate``, ``batch``, ``dashboard`` and ``gateway``.

    aiquery demo                       # the main job on embedded defaults: emulator, local Spark, Delta
    aiquery run job.sql --var day=2024-06-01
    aiquery dashboard --warehouse spark-warehouse --output usage_dashboard.html
    aiquery gateway --port 8080        # the local gateway emulator, until Ctrl-C
    aiquery connect-server --port 15002  # a Spark Connect server with aiquery built in, until Ctrl-C
    aiquery batch status STATE_DIR     # a batch run's batches (also: batch list, batch cancel)

Errors a user can fix print one line and exit with status 2; a failed statement or Spark failure exits 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from aiquery.jobs.command import (
    EXIT_USAGE,
    UsageProblem,
    add_estimate_arguments,
    add_run_arguments,
    estimate_command,
    guarded,
    run_command,
    spark_log_path,
)
from aiquery.version import __version__

__all__ = ["build_parser", "main"]

DEFAULT_DEMO_OUTPUT = Path("output") / "demo"


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    parser = argparse.ArgumentParser(
        prog="aiquery", description="Databricks' ai_query for any Apache Spark: demo, batch jobs, usage dashboard."
    )
    parser.add_argument("--version", action="version", version=f"aiquery {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_demo(commands)
    run = commands.add_parser(
        "run",
        help="run a SQL job file with ai_query registered",
        description="Run the statements of a SQL file in order with ai_query registered; show progress; "
        "print a usage summary; exit 1 naming the statement that failed.",
    )
    add_run_arguments(run, submitted=False)
    estimate = commands.add_parser(
        "estimate",
        help="estimate what a SQL job will send and cost, from a sample of its rows",
        description="Run a job file with each ai_query call sending a deterministic sample of the rows it gets "
        "(1 %%, at least 100 rows) and counting the rest; print per endpoint the rows, requests, tokens, cost and "
        "wall time expected for the whole job, with ranges. The job's tables are not written.",
    )
    add_estimate_arguments(estimate)
    _add_dashboard(commands)
    from aiquery.jobs.batch_command import add_batch_arguments

    add_batch_arguments(
        commands.add_parser(
            "batch",
            help="a batch run's state, the providers' batches, cancelling a run's batches",
            description="Show what a batch run's state folder holds (status), list each batch endpoint's batches "
            "at its provider (list), or cancel a run's running batches (cancel).",
        )
    )
    from aiquery.connect.command import add_connect_server_arguments

    add_connect_server_arguments(
        commands.add_parser(
            "connect-server",
            help="serve Spark Connect clients from a Spark driver with aiquery built in",
            description="Start a Spark driver with ai_query, the AI Functions, budgets and the usage ledger for "
            "every session, serve Spark Connect clients until SIGTERM or Ctrl-C, and print the URL they use.",
        )
    )
    # Only listed here: its arguments go unparsed to the emulator's own command (see main).
    commands.add_parser(
        "gateway", help="run the local gateway emulator (aiquery gateway --help for its options)", add_help=False
    )
    return parser


def _add_demo(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser(
        "demo",
        help="run the demo job on local Spark against the gateway emulator (no credentials)",
        description="Start the local gateway emulator and Spark with Delta, run ai_query over the sample "
        "dataset (summaries, a classification with responseFormat, embeddings), write Delta tables, flush the "
        "usage ledger and render the usage dashboard.",
    )
    demo.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_DEMO_OUTPUT,
        metavar="DIR",
        help=f"folder for the tables, dashboard and logs (default ./{DEFAULT_DEMO_OUTPUT})",
    )
    demo.add_argument("--rows", type=int, default=None, metavar="N", help="use the first N rows of the sample")
    demo.add_argument("--no-faults", action="store_true", help="no injected 429/503 errors (retries) in the demo")


def _add_dashboard(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dashboard = commands.add_parser(
        "dashboard",
        help="render the usage dashboard (HTML) from the usage table",
        description="Ingest any pending usage records, then render the dashboard queries of sql/dashboard over "
        "the usage table into one self-contained HTML file.",
    )
    dashboard.add_argument("--warehouse", default="spark-warehouse", metavar="DIR", help="warehouse folder")
    dashboard.add_argument("--table", metavar="NAME", help="usage table (default: [usage] table, ai_gateway.usage)")
    dashboard.add_argument("--output", default="usage_dashboard.html", metavar="FILE", help="HTML file to write")
    dashboard.add_argument("--config", metavar="FILE", help="aiquery TOML file (for its [usage] section)")
    dashboard.add_argument(
        "--spark-log",
        metavar="FILE",
        help="file for Spark's own output (default <warehouse>/_logs/spark.log; '-': stderr)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status.

    Args:
        argv: the arguments after the program name; ``sys.argv[1:]`` when None.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["gateway"]:
        from aiquery.gateway import main as gateway_main

        return gateway_main(arguments[1:])
    parser = build_parser()
    args = parser.parse_args(arguments)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    prog = f"aiquery {args.command}"
    if args.command == "run":
        return guarded(prog, lambda: run_command(args, submitted=False), debug=args.debug)
    if args.command == "estimate":
        return guarded(prog, lambda: estimate_command(args), debug=args.debug)
    if args.command == "demo":
        return guarded(prog, lambda: _demo(args), debug=args.debug)
    if args.command == "batch":
        from aiquery.jobs.batch_command import batch_command

        return guarded(prog, lambda: batch_command(args, out=sys.stdout, err=sys.stderr), debug=args.debug)
    if args.command == "connect-server":
        from aiquery.connect.command import connect_server_command

        return guarded(prog, lambda: connect_server_command(args, out=sys.stdout, err=sys.stderr), debug=args.debug)
    return guarded(prog, lambda: _dashboard(args), debug=args.debug)


def _demo(args: argparse.Namespace) -> int:
    from aiquery.demo import run_demo

    if args.rows is not None and args.rows < 1:
        raise UsageProblem("--rows must be at least 1")
    result = run_demo(args.output, rows=args.rows, faults=not args.no_faults)
    return 0 if result.ok else 1


def _dashboard(args: argparse.Namespace) -> int:
    import dataclasses

    from aiquery.config import load_settings
    from aiquery.jobs.session import quiet_pyspark_loggers, start_local_spark
    from aiquery.usage.dashboard import render_dashboard
    from aiquery.usage.ingest import UsageLedger

    settings = load_settings(config_path=args.config)
    usage = dataclasses.replace(settings.usage, table=args.table) if args.table else settings.usage
    warehouse = Path(args.warehouse)
    if not warehouse.is_dir():
        raise UsageProblem(f"no warehouse folder {warehouse}: give the one your jobs used with --warehouse")
    spark_log = spark_log_path(args.spark_log, warehouse)
    spark = start_local_spark("aiquery-dashboard", warehouse_dir=warehouse, spark_log=spark_log)
    try:
        quiet_pyspark_loggers()
        ledger = UsageLedger(spark, usage)
        added = ledger.ingest()  # records a crashed or unflushed job left in the spool belong in the picture
        rows = spark.table(usage.table).count()
        path = render_dashboard(spark, table=usage.table, output=args.output)
    finally:
        spark.stop()
    note = f", {added:,} of them ingested just now" if added else ""
    print(f"Dashboard of {usage.table} ({rows:,} requests{note}): {Path(path).resolve()}")
    if rows == 0:
        print("The usage table is empty: run a job with ai_query first (aiquery run, aiquery demo).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
