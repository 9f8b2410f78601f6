"""Job files: statements split where Spark would end them, variables filled in, errors before anything runs."""

from __future__ import annotations

import pytest

from aiquery.jobs.script import JobScriptError, parse_variables, prepare_job, split_statements

JOB = """-- nightly summaries
-- ${not_needed} in a comment is never asked for

CREATE OR REPLACE TABLE out AS
SELECT 'a;b' AS s, "c;\\";d" AS t, `odd;name`, 'it''s;' AS u
FROM src WHERE day = '${day}';  /* a ; in a block comment */
INSERT INTO out SELECT ${n}, 'x', 'y', 'z'
;
;   -- an empty statement is skipped
SELECT /*+ REPARTITION(2) */ count(*) FROM out"""


def test_statements_end_only_at_semicolons_outside_strings_and_comments() -> None:
    statements = split_statements(JOB)
    assert [s.number for s in statements] == [1, 2, 3]
    assert statements[0].sql.endswith("FROM src WHERE day = '${day}'")
    assert "'a;b'" in statements[0].sql and '"c;\\";d"' in statements[0].sql and "`odd;name`" in statements[0].sql
    assert statements[1].sql.startswith("/* a ; in a block comment */")
    assert statements[1].first_line == "INSERT INTO out SELECT ${n}, 'x', 'y', 'z'"
    assert "/*+ REPARTITION(2) */" in statements[2].sql  # hints are comments Spark reads: kept


def test_statement_lines_point_at_their_first_code() -> None:
    statements = split_statements(JOB)
    assert [s.line for s in statements] == [4, 7, 10]
    assert statements[0].describe() == "statement 1 (line 4: CREATE OR REPLACE TABLE out AS)"


def test_variables_are_filled_in_code_and_strings_not_comments() -> None:
    statements = prepare_job(JOB, {"day": "2024-06-01", "n": "3"})
    assert "day = '2024-06-01'" in statements[0].sql
    assert "${not_needed}" in statements[0].sql  # the comment is left alone
    assert statements[1].sql.endswith("SELECT 3, 'x', 'y', 'z'")


def test_a_value_with_a_semicolon_or_quote_does_not_move_statement_boundaries() -> None:
    statements = prepare_job("SELECT '${a}'; SELECT ${b}", {"a": "x; y", "b": "'q;'"})
    assert [s.sql for s in statements] == ["SELECT 'x; y'", "SELECT 'q;'"]


def test_every_missing_variable_is_named_with_its_line() -> None:
    with pytest.raises(JobScriptError) as raised:
        prepare_job(JOB, {})
    message = str(raised.value)
    assert "${day} (line 6)" in message and "${n} (line 7)" in message
    assert "--var day=..." in message and "not_needed" not in message


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("SELECT 'open", "line 1: a ' quote is never closed"),
        ("SELECT 1;\nSELECT /* open", "line 2: a /* comment is never closed"),
        ("-- only a comment\n;\n", "holds no SQL statement"),
    ],
)
def test_malformed_files_fail_with_the_line(text: str, error: str) -> None:
    with pytest.raises(JobScriptError, match=error.replace("*", r"\*")):
        prepare_job(text, {})


def test_parse_variables() -> None:
    assert parse_variables(["day=2024-06-01", "where=a=b", "day=2024-06-02", "empty="]) == {
        "day": "2024-06-02",
        "where": "a=b",
        "empty": "",
    }
    with pytest.raises(JobScriptError, match="expected name=value"):
        parse_variables(["day"])
    with pytest.raises(JobScriptError, match="not a variable name"):
        parse_variables(["1day=x"])
