"""The Connect client's pure parts: the progress JSON read back, SQL literals for a 3.5 client, the cap guard of
``aiquery run --remote``. No Spark."""

from __future__ import annotations

import dataclasses
import json

from aiquery.connect.client import is_connect_session, parse_progress, sql_literal
from aiquery.coordinator.progress import QueryProgress, TaskCounts
from aiquery.jobs.remote import cap_lifters
from aiquery.jobs.script import prepare_job


def test_progress_comes_back_as_the_classic_type_and_ignores_fields_it_does_not_know() -> None:
    query = QueryProgress(
        query="nightly",
        description=None,
        running=True,
        seconds=3.5,
        rows_answered=10,
        rows_failed=1,
        requests=12,
        requests_per_second=4.0,
        errors=2,
        rate_limited=1,
        tokens=345,
        from_store=0,
        tasks=TaskCounts(done=1, running=1, total=4),
        eta_seconds=None,
        cost={"USD": 0.25},
    )
    sent = [{**dataclasses.asdict(query), "added_by_a_newer_server": 1}]
    assert parse_progress(json.dumps(sent, default=str)) == [query]
    assert parse_progress(None) == [] and parse_progress("[]") == []


def test_sql_literals_for_a_client_without_named_arguments() -> None:
    assert sql_literal({"max_tokens": 16, "temperature": 0.5, "stop": ["a", "b"]}) == (
        "named_struct('max_tokens', 16, 'temperature', 0.5D, 'stop', array('a', 'b'))"
    )
    assert sql_literal("it's a \\ path") == "'it\\'s a \\\\ path'"
    assert (sql_literal(True), sql_literal(None)) == ("true", "NULL")


def test_a_job_that_could_lift_the_run_s_cap_is_found() -> None:
    job = prepare_job("SET aiquery.budget.max_cost = 100;\nSELECT 1;\n  reset;\nSET spark.sql.ansi.enabled = true", {})
    assert [statement.number for statement in cap_lifters(job)] == [1, 3]
    # A comment before it, quoted names, or a statement the SQL builds: the cap could be lifted all the same.
    hidden = (
        "-- nightly\nSET aiquery.budget.max_tokens = 1;/* x */ SET `aiquery`.`budget`.max_cost = 1;"
        "EXECUTE IMMEDIATE 'SET aiquery.budget.max_tokens = 1';SELECT '-- aiquery.budget' AS note;"
        "SELECT 1 -- SET aiquery.budget.max_tokens = 1\n"
    )
    assert [statement.number for statement in cap_lifters(prepare_job(hidden, {}))] == [1, 2, 3, 4]


def test_a_classic_looking_object_is_not_a_connect_session() -> None:
    assert not is_connect_session(object())
