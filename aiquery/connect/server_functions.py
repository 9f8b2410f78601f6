"""The SQL functions a Spark Connect server adds for its clients, which have no driver of their own to ask.

``aiquery_server_version()`` (STRING), ``aiquery_flush_usage()`` (BIGINT), ``aiquery_progress()`` (STRING of JSON)
and ``aiquery_usage_table()`` (STRING: the usage table's name, '' with the ledger off). Each is a builder in Spark's
built-in registry that answers at analysis, on the server's driver, with a literal: what :func:`aiquery.flush_usage`
and :func:`aiquery.progress` would return there. Being literals, they run once per statement, whatever the rows.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiquery.spark.coordination import progress
from aiquery.spark.flush import flush_usage
from aiquery.spark.registry import ledger_for
from aiquery.version import __version__

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["ServerFunction", "server_functions"]

logger = logging.getLogger("aiquery.connect")


class ServerFunction:
    """``scala.Function1[Seq[Expression], Expression]``: a function without arguments answered by a literal."""

    def __init__(self, spark: SparkSession, name: str, answer: Callable[[], Any], sql_type: str) -> None:
        self.name = name
        self._answer = answer
        self._sql_type = sql_type
        jvm = spark.sparkContext._jvm
        assert jvm is not None
        self._jvm = jvm

    def apply(self, children: Any) -> Any:
        """Called by the JVM at analysis time; the answer as a literal of the function's type."""
        from py4j.protocol import Py4JJavaError

        try:
            if children.size() != 0:
                raise ValueError(f"{self.name}() takes no arguments")
            value = self._answer()
            expressions = self._jvm.org.apache.spark.sql.catalyst.expressions
            types = self._jvm.org.apache.spark.sql.types
            # As text, cast to the function's type: py4j would send a small int as a Java Integer, not a BIGINT.
            literal = expressions.Literal.create(str(value), types.DataTypes.StringType)
            data_type = types.DataType.fromDDL(self._sql_type)
            return expressions.Cast(literal, data_type, self._jvm.scala.Option.empty(), expressions.EvalMode.LEGACY())
        except Exception as error:
            logger.warning("%s() failed: %s", self.name, error)
            message = f"{self.name}() failed: {type(error).__name__}: {error}"
            raise Py4JJavaError(message, self._jvm.java.lang.IllegalArgumentException(message)) from None

    class Java:
        implements = ["scala.Function1"]


def progress_json(spark: SparkSession) -> str:
    """``aiquery_progress()``: :func:`aiquery.progress` as JSON, a list with one object per recent ai_query query
    (the fields of :class:`~aiquery.coordinator.progress.QueryProgress`; values JSON cannot hold become strings)."""
    return json.dumps([dataclasses.asdict(query) for query in progress(spark)], default=str)


def server_functions(spark: SparkSession) -> list[ServerFunction]:
    """The server's functions, answering for ``spark``'s application (its coordinator, its ledger)."""
    return [
        ServerFunction(spark, "aiquery_server_version", lambda: __version__, "STRING"),
        ServerFunction(spark, "aiquery_flush_usage", lambda: flush_usage(spark), "BIGINT"),
        ServerFunction(spark, "aiquery_progress", lambda: progress_json(spark), "STRING"),
        ServerFunction(spark, "aiquery_usage_table", lambda: usage_table(spark), "STRING"),
    ]


def usage_table(spark: SparkSession) -> str:
    """``aiquery_usage_table()``: the table the server's ledger writes ([usage] table), '' when the ledger is off."""
    ledger = ledger_for(spark)
    return ledger.table if ledger is not None else ""
