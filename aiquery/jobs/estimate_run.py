"""How a job's statements run in an estimate: what each one reads, with nothing written to the user's tables.

Each statement runs in a form that reads what the original reads and writes nothing but session-scoped scratch
views, dropped at the end (the rules are listed in :mod:`aiquery.jobs.estimate`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiquery.errors import AIQueryError
from aiquery.jobs.script import Statement
from aiquery.jobs.statements import QUERY_TAG_PROPERTY, describe_error
from aiquery.spark.call_context import ESTIMATE_FRACTION_SETTING, ESTIMATE_RUN_SETTING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["AGGREGATE_CALL", "EstimateError", "PlannedStatement", "plan_statement", "run_dry_pass", "run_estimate_pass"]

AGGREGATE_CALL = re.compile(r"\bai_agg\s*\(", re.IGNORECASE)
"""An ``ai_agg`` call: its requests depend on the groups' sizes, so an estimate run sends none of them."""
_LEADING = re.compile(r"\A(?:\s+|--[^\n]*(?:\n|\Z)|/\*.*?\*/)*", re.S)
_NAME = r"(?P<name>(?:`[^`]+`|[\w$]+)(?:\s*\.\s*(?:`[^`]+`|[\w$]+))*)"
_QUERY_START = r"(?P<query>(?:SELECT|WITH|VALUES|FROM|TABLE|\()[\s\S]*)"
_CTAS = re.compile(
    r"(?:CREATE\s+(?:OR\s+REPLACE\s+)?|REPLACE\s+)TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?"
    + _NAME
    + r"(?P<rest>[\s\S]*?)\bAS\s*"
    + _QUERY_START
    + r"\Z",
    re.I,
)
_INSERT = re.compile(
    r"INSERT\s+(?:INTO|OVERWRITE)\s+(?:TABLE\s+)?"
    + _NAME
    + r"\s*(?:PARTITION\s*\([^)]*\)\s*)?(?:\([^)]*\)\s*)?(?:BY\s+NAME\s+)?"
    + _QUERY_START
    + r"\Z",
    re.I,
)
_MERGE = re.compile(r"MERGE\s+INTO\s+" + _NAME + r"[\s\S]*?\bUSING\s*\(", re.I)
_QUERY = re.compile(r"(?:SELECT|WITH|VALUES|FROM|TABLE)\b|\(", re.I)
_AS_IS = re.compile(
    r"(?:CREATE\s+(?:OR\s+REPLACE\s+)?(?:GLOBAL\s+)?TEMP(?:ORARY)?\s+VIEW|SET|RESET|USE|SHOW|DESCRIBE|DESC|EXPLAIN)\b",
    re.I,
)


class EstimateError(AIQueryError):
    """An estimate could not be made (a statement failed, or the usage ledger is off)."""


@dataclass(frozen=True)
class PlannedStatement:
    """How one statement runs in an estimate: ``kind`` is query, view (a scratch view), as-is, or skip."""

    statement: Statement
    kind: str
    sql: str = ""
    name: str = ""
    note: str = ""


def plan_statement(statement: Statement) -> PlannedStatement:
    """How ``statement`` runs in an estimate, without writing the user's tables."""
    code = _LEADING.sub("", statement.sql, count=1).strip()
    match = _CTAS.match(code)
    if match:
        parts = _name_parts(match.group("name"))
        note = ""
        if len(parts) > 1:
            note = (
                f"{statement.describe()} creates {match.group('name')}; the estimate reads its rows as the "
                f"temporary view `{parts[-1]}`, so a later statement naming it with its schema reads the real table"
            )
        return PlannedStatement(statement, "view", match.group("query"), parts[-1], note)
    match = _INSERT.match(code)
    if match:
        return PlannedStatement(statement, "query", match.group("query"))
    match = _MERGE.match(code)
    if match:
        source = _parenthesised(code, match.end() - 1)
        if source is not None:
            return PlannedStatement(statement, "query", source)
        note = f"{statement.describe()} was not run: its MERGE source is not a query"
        return PlannedStatement(statement, "skip", note=note)
    if _AS_IS.match(code):
        return PlannedStatement(statement, "as-is", code)
    if _QUERY.match(code):
        return PlannedStatement(statement, "query", code)
    return PlannedStatement(
        statement,
        "skip",
        note=f"{statement.describe()} was not run: it would change the user's tables; ai_query calls in it are "
        "not counted",
    )


def _name_parts(name: str) -> list[str]:
    return [part.strip().strip("`") for part in re.findall(r"`[^`]+`|[^.\s]+", name)]


def _parenthesised(text: str, start: int) -> str | None:
    """The text inside the parenthesis that opens at ``start`` (quotes and nesting respected), or None."""
    depth, index, quote = 0, start, ""
    while index < len(text):
        char = text[index]
        if quote:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = ""
        elif char in "'\"`":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                inner = text[start + 1 : index].strip()
                return inner if _QUERY.match(inner) else None
        index += 1
    return None


def run_estimate_pass(spark: SparkSession, actions: Sequence[PlannedStatement], run: str, fraction: float) -> None:
    """Run the statements once in estimate mode; drop the scratch views and restore the session after."""
    run_dry_pass(spark, actions, run, {ESTIMATE_RUN_SETTING: run, ESTIMATE_FRACTION_SETTING: repr(fraction)})


def run_dry_pass(
    spark: SparkSession, actions: Sequence[PlannedStatement], run: str, settings: Mapping[str, str]
) -> None:
    """Run the statements once with the session ``settings`` set (an estimate's, a batch run's collect pass),
    tagged ``run``, writing no user table; drop the scratch views and restore the session after."""
    context = spark.sparkContext
    previous_tag = context.getLocalProperty(QUERY_TAG_PROPERTY)
    database = spark.catalog.currentDatabase()
    before = {table.name for table in spark.catalog.listTables() if table.isTemporary}
    for name, value in settings.items():
        spark.conf.set(name, value)
    context.setLocalProperty(QUERY_TAG_PROPERTY, run)
    views: list[str] = []
    try:
        for action in actions:
            try:
                if action.kind == "query":
                    spark.sql(action.sql).write.format("noop").mode("overwrite").save()
                elif action.kind == "view":
                    quoted = "`" + action.name.replace("`", "``") + "`"
                    spark.sql(f"DROP VIEW IF EXISTS {quoted}")
                    spark.sql(f"CACHE TABLE {quoted} AS {action.sql}")
                    views.append(quoted)
                elif action.kind == "as-is":
                    spark.sql(action.sql)
            except Exception as error:
                raise EstimateError(f"{action.statement.describe()} failed: {describe_error(error)}") from None
    finally:
        for name in settings:
            spark.conf.unset(name)
        context.setLocalProperty(QUERY_TAG_PROPERTY, previous_tag)  # type: ignore[arg-type]
        # Last made first: uncaching a view analyses its plan, which may read a view made before it.
        for view in reversed(views):
            spark.sql(f"UNCACHE TABLE IF EXISTS {view}")
            spark.sql(f"DROP VIEW IF EXISTS {view}")
        # Temporary views the job's own statements made hold plans analysed in this mode: drop them too.
        for table in spark.catalog.listTables():
            if table.isTemporary and table.name not in before:
                spark.catalog.dropTempView(table.name)
        spark.catalog.setCurrentDatabase(database)
