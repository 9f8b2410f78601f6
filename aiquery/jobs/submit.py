"""The spark-submit launcher of ``aiquery run``: spark-submit takes a Python file, and this is that file.

    spark-submit --packages "$(python -m aiquery.spark.versions)" \\
        --conf spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension \\
        --conf spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog \\
        --conf spark.sql.sources.default=delta \\
        "$(python -m aiquery.jobs.submit --path)" job.sql --var day=2024-06-01

``python -m aiquery.jobs.submit --path`` prints this file's location. The options are those of ``aiquery run``
except ``--master``, ``--warehouse`` and ``--spark-log``, which spark-submit's own options replace.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):
    # spark-submit runs this file as a script: make the package it belongs to importable by its full name.
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from aiquery.jobs.command import add_run_arguments, guarded, run_command

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    """The launcher's argument parser."""
    parser = argparse.ArgumentParser(
        prog="spark-submit ... aiquery/jobs/submit.py",
        description="Run a SQL job file with ai_query registered, in the SparkSession spark-submit provides.",
    )
    parser.add_argument("--path", action="store_true", help="print this launcher's file path and exit")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    add_run_arguments(parser, submitted=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the job; the exit status (0 ok, 1 a statement failed, 2 nothing ran)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments == ["--path"]:
        print(Path(__file__).resolve())
        return 0
    args = build_parser().parse_args(arguments)
    return guarded("aiquery run", lambda: run_command(args, submitted=True), debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
