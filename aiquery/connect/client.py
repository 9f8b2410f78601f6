"""aiquery on a Spark Connect session: the client side of ``aiquery connect-server``.

A Connect client has no driver JVM and no coordinator: the server has registered ``ai_query``, the AI Functions
and three SQL functions for every session, and the client asks through SQL.

- ``aiquery_server_version()`` -> STRING: :func:`register` compares it with the client's version;
- ``aiquery_flush_usage()`` -> BIGINT: :func:`flush_usage`;
- ``aiquery_progress()`` -> STRING (JSON): :func:`progress`.

A different aiquery version on the server is a warning, not an error: the client sends only SQL and Connect plans
(no pickled aiquery code), so what must match is the SQL functions' signatures, and a server usually moves ahead of
its clients. The warning names both versions so that a changed argument's error is easy to place.

The DataFrame functions build their Columns here (:func:`function_column`): ``call_function`` passes arguments by
position only, so a named option (``failOnError``, ``modelParameters``, ...) goes as Spark Connect's
``NamedArgumentExpression``, the expression Python UDTFs use for keyword arguments; the server's analyzer then sees
the same tree as for SQL's ``name => value``. Spark 3.5's Connect protocol has no such expression (it came with
4.0): there a call with named options is sent as SQL text (:func:`sql_call_column`), which is possible only when
every argument is a literal or a column's name; with a Column object the call is refused, naming the way out.

This module imports nothing of classic PySpark (no py4j, no ``pyspark.java_gateway``, no ``pyspark.sql.classic``)
and nothing of aiquery's Spark layer, so that it runs where only ``pyspark-client`` is installed.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aiquery.coordinator.progress import QueryProgress, TaskCounts
from aiquery.errors import ConfigError
from aiquery.version import __version__

if TYPE_CHECKING:
    from pyspark.sql import Column, SparkSession

__all__ = [
    "connect_in_use",
    "flush_usage",
    "function_column",
    "is_connect_session",
    "named_arguments_supported",
    "parse_progress",
    "progress",
    "register",
    "server_version",
    "sql_call_column",
    "sql_literal",
    "usage_table",
]

SERVER_COMMAND = "aiquery connect-server"
VERSION_FUNCTION = "aiquery_server_version"
FLUSH_FUNCTION = "aiquery_flush_usage"
PROGRESS_FUNCTION = "aiquery_progress"
TABLE_FUNCTION = "aiquery_usage_table"
DEFAULT_TABLE = "ai_gateway.usage"
"""The usage table of a server too old to say which it writes."""
_UNRESOLVED = ("UNRESOLVED_ROUTINE", "CANNOT_RESOLVE_FUNCTION", "Undefined function")
"""How Spark says a function does not exist (4.x's error class, 3.5's older class and message)."""


def is_connect_session(spark: object) -> bool:
    """Whether ``spark`` is a Spark Connect session (``sc://`` or ``spark.api.mode=connect``), judged by its class
    alone so that nothing classic is imported to tell."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def connect_in_use(*values: object) -> bool:
    """Whether a DataFrame function called with ``values`` builds a Connect Column: one of them is a Connect
    Column, the active session is a Connect one, or only the Connect client is installed (``pyspark-client``)."""
    if any(type(value).__module__.startswith("pyspark.sql.connect") for value in values):
        return True
    import pyspark.util

    remote_only = getattr(pyspark.util, "is_remote_only", None)  # Spark 4.0 and later
    if remote_only is not None and remote_only():
        return True
    from pyspark.sql import SparkSession

    return is_connect_session(SparkSession.getActiveSession())


def register(spark: SparkSession, *, settings: object = None) -> None:
    """Check that the Connect server behind ``spark`` has aiquery (a different version warns).

    Raises:
        ConfigError: the server has no aiquery (start it with ``aiquery connect-server``), or ``settings`` were
            given (on Connect the server's configuration applies).
    """
    if settings is not None:
        raise ConfigError(
            f"aiquery.register(spark, settings=...) on a Spark Connect session: the endpoints and settings are the "
            f"server's; give them to `{SERVER_COMMAND}` (--config or AIQUERY_CONFIG where it runs)"
        )
    version = server_version(spark)
    if version != __version__:
        warnings.warn(
            f"the aiquery Connect server runs aiquery {version}, this client {__version__}: an argument one of them "
            f"does not know fails at analysis",
            RuntimeWarning,
            stacklevel=2,
        )


def server_version(spark: SparkSession, *, function: str = VERSION_FUNCTION) -> str:
    """The aiquery version of the Connect server behind ``spark`` (``function()``'s answer).

    Raises:
        ConfigError: the server does not know ``function``: it is not an aiquery server.
    """
    from pyspark.errors import AnalysisException

    try:
        row = spark.sql(f"SELECT {function}()").first()
    except AnalysisException as error:
        if not any(marker in str(error) for marker in _UNRESOLVED):
            raise
        raise ConfigError(
            f"this Spark Connect server has no aiquery ({function}() is not defined there): start the "
            f"server with `{SERVER_COMMAND}`, which registers ai_query and the AI Functions for every session"
        ) from None
    assert row is not None
    return str(row[0])


def flush_usage(spark: SparkSession) -> int:
    """The server writes every request made so far to its usage table; the number of rows it added."""
    # Not spark.sql(...): Connect analyses a SQL statement twice (to see whether it is a command, then to run it), so
    # the first analysis would flush and the second answer 0. A DataFrame's plan is analysed once.
    row = spark.range(1).selectExpr(f"{FLUSH_FUNCTION}()").first()
    return int(row[0]) if row is not None and row[0] is not None else 0


def usage_table(spark: SparkSession) -> str | None:
    """The server's usage table (None when its ledger is off)."""
    from pyspark.errors import AnalysisException

    try:
        row = spark.range(1).selectExpr(f"{TABLE_FUNCTION}()").first()
    except AnalysisException as error:
        if not any(marker in str(error) for marker in _UNRESOLVED):
            raise
        return DEFAULT_TABLE
    return (row[0] or None) if row is not None else DEFAULT_TABLE


def progress(spark: SparkSession) -> list[QueryProgress]:
    """Where each recent ``ai_query`` query of the server's application stands, as ``aiquery.progress`` gives it
    on a classic session."""
    row = spark.sql(f"SELECT {PROGRESS_FUNCTION}()").first()
    return parse_progress(row[0] if row is not None else None)


_PROGRESS_FIELDS = {field.name for field in dataclasses.fields(QueryProgress)}
_TASK_FIELDS = {field.name for field in dataclasses.fields(TaskCounts)}


def parse_progress(text: str | None) -> list[QueryProgress]:
    """``aiquery_progress()``'s JSON (a list of :class:`QueryProgress` as dicts) as :class:`QueryProgress`; fields
    this client does not know are dropped, so that a newer server's additions do not break an older client."""
    if not text:
        return []
    found = []
    for item in json.loads(text):
        values = {key: value for key, value in item.items() if key in _PROGRESS_FIELDS}
        tasks = item.get("tasks") or {}
        values["tasks"] = TaskCounts(**{key: int(value) for key, value in tasks.items() if key in _TASK_FIELDS})
        values["cost"] = {str(key): float(value) for key, value in (item.get("cost") or {}).items()}
        found.append(QueryProgress(**values))
    return found


def function_column(function: str, positional: Sequence[Column], named: Mapping[str, Column]) -> Column:
    """``function(positional..., name => value...)`` as a Connect Column, resolved on the server."""
    from pyspark.sql.connect.column import Column as ConnectColumn
    from pyspark.sql.connect.expressions import UnresolvedFunction

    arguments = [_expression(column) for column in positional]
    if named:
        from pyspark.sql.connect.expressions import NamedArgumentExpression  # Spark 4.0 and later

        arguments += [NamedArgumentExpression(name, _expression(column)) for name, column in named.items()]
    column: Column = ConnectColumn(UnresolvedFunction(function, arguments))  # type: ignore[assignment]
    return column


def _expression(column: Column) -> Any:
    expression = getattr(column, "_expr", None)
    if expression is None:
        raise TypeError(f"a Spark Connect function takes Spark Connect Columns, not {type(column).__name__}")
    return expression


def named_arguments_supported() -> bool:
    """Whether this client's Connect protocol carries named arguments (Spark 4.0 and later)."""
    try:
        from pyspark.sql.connect.expressions import NamedArgumentExpression  # noqa: F401
    except ImportError:
        return False
    return True


def sql_call_column(function: str, literals: Sequence[Any], column: str, named: Mapping[str, Any]) -> Column:
    """``function(literals..., column, name => value...)`` as a Connect Column made of SQL text (``expr``): for a
    client whose protocol has no named arguments. ``column`` is a column's name; every other value a literal."""
    from pyspark.sql.connect import functions as CF

    identifier = ".".join("`" + part.replace("`", "``") + "`" for part in column.split("."))
    arguments = [*(sql_literal(value) for value in literals), identifier]
    arguments += [f"{name} => {sql_literal(value)}" for name, value in named.items()]
    result: Column = CF.expr(f"{function}({', '.join(arguments)})")  # type: ignore[assignment]
    return result


def sql_literal(value: Any) -> str:
    """A Python value as a SQL literal: a dict as ``named_struct`` (as SQL gives ``modelParameters``), a list as
    ``array``, a string quoted (Spark's parser reads backslash escapes: a quote and a backslash are escaped)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, int) else f"{float(value)!r}D"
    if isinstance(value, Mapping):
        return "named_struct(" + ", ".join(f"{sql_literal(str(k))}, {sql_literal(v)}" for k, v in value.items()) + ")"
    if isinstance(value, (list, tuple)):
        return "array(" + ", ".join(sql_literal(item) for item in value) + ")"
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"
