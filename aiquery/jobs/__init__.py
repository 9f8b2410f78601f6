"""Scheduled batch jobs: ``aiquery run JOB.sql`` runs a SQL file with ai_query registered.

- :mod:`aiquery.jobs.script`: splitting a file into statements and filling in ``${name}`` variables;
- :mod:`aiquery.jobs.statements`: running statements in order, with a query tag, progress and a failure report;
- :mod:`aiquery.jobs.progress`: the live progress line (Spark task counts, the coordinator's counts per query tag);
- :mod:`aiquery.jobs.summary`: the end-of-job totals, read from the usage table;
- :mod:`aiquery.jobs.estimate`: what a job will send and cost, from a sampled run; :mod:`aiquery.jobs.estimate_run`,
  how each statement runs in it without writing the user's tables;
- :mod:`aiquery.jobs.session`: local Spark for the command line, and a warehouse that keeps its tables;
- :mod:`aiquery.jobs.command`: the command's options and exit statuses; :mod:`aiquery.jobs.submit`, its
  spark-submit launcher.
"""

from __future__ import annotations

from aiquery.jobs.script import JobScriptError, Statement, parse_variables, prepare_job, split_statements
from aiquery.jobs.statements import JobResult, run_statements

__all__ = [
    "JobResult",
    "JobScriptError",
    "Statement",
    "parse_variables",
    "prepare_job",
    "run_statements",
    "split_statements",
]
