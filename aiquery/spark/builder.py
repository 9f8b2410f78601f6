"""The SQL function builder: registers ``ai_query`` in a session's function registry through py4j.

Spark's ``spark.udf.register`` fixes one return type per name, but ai_query's type depends on its literal
arguments. So we register a *builder* (a Python object implementing ``scala.Function1``, called back by the
JVM at analysis time): it sees the argument expressions, validates them, and returns a UDF expression
specialised for that call site, with the literal arguments baked in and only the request column shipped per
row. Errors are thrown into the JVM as ``IllegalArgumentException`` so PySpark raises them with our message.

The Catalyst constructors used here (``Cast`` with an ``EvalMode``, ``StructsToJson(options, child, timeZoneId)``,
``GetStructField``, ``NamedArgumentExpression``) have the same signatures in every supported Spark (javap on
3.5.9, 4.0.0, 4.1.4 and 4.2.1); the compatibility suite runs them on 3.5 and 4.2.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

from aiquery.apis import get_adapter
from aiquery.errors import AIQueryError, ArgumentError
from aiquery.spark.call_context import SparkContextInfo
from aiquery.spark.plan import CallPlan
from aiquery.spark.udf import make_udf

__all__ = ["AIQueryBuilder", "require_string"]

logger = logging.getLogger("aiquery.spark")

POSITIONAL = ("endpoint", "request", "returnType", "failOnError")
NAMED = {name.lower(): name for name in (*POSITIONAL, "modelParameters", "responseFormat", "requestTags", "files")}


class AIQueryBuilder:
    """``scala.Function1[Seq[Expression], Expression]`` building one ai_query call site."""

    def __init__(self, info: SparkContextInfo) -> None:
        self.info = info
        jvm = info.spark.sparkContext._jvm
        assert jvm is not None
        self._jvm = jvm

    def apply(self, children: Any) -> Any:
        """Called by the JVM at analysis time with the argument expressions."""
        try:
            return self._build([children.apply(i) for i in range(children.size())])
        except AIQueryError as exc:
            raise self._java_error(str(exc)) from None
        except Exception as exc:
            logger.exception("ai_query could not be built")
            raise self._java_error(f"ai_query could not be built: {type(exc).__name__}: {exc}") from None

    def _java_error(self, message: str) -> Exception:
        from py4j.protocol import Py4JJavaError

        # With propagate_java_exceptions, py4j throws this Java exception in the JVM's analyzer thread.
        error: Exception = Py4JJavaError(message, self._jvm.java.lang.IllegalArgumentException(message))
        return error

    def _build(self, expressions: list[Any]) -> Any:
        arguments = self._bind(expressions)
        if "endpoint" not in arguments or "request" not in arguments:
            missing = "endpoint" if "endpoint" not in arguments else "request"
            raise ArgumentError(
                "REQUIRED_PARAMETER_NOT_FOUND",
                f"Cannot invoke routine `ai_query` because the parameter named `{missing}` is required.",
                sqlstate="4274K",
            )
        files = arguments.pop("files", None)
        if files is not None and str(files.dataType().typeName()) != "binary":
            raise ArgumentError(
                "DATATYPE_MISMATCH.UNEXPECTED_INPUT_TYPE",
                f"the `files` argument of ai_query must be a BINARY column of image bytes (JPEG, PNG, GIF or WEBP), "
                f"like the content column of read_files(..., format => 'binaryFile'), but {files.sql()} is "
                f"{files.dataType().sql()}.",
            )
        request = arguments.pop("request")
        require_string(request, "request", "ai_query", "; build the prompt with concat(), || or format_string()")
        values = {name: self._literal(name, expression) for name, expression in arguments.items()}
        plan = self.info.plan(
            endpoint=_require(values, "endpoint", str),
            return_type=_optional(values, "returnType", str),
            fail_on_error=_optional(values, "failOnError", bool, True),
            model_parameters=_optional(values, "modelParameters", dict),
            response_format=_optional(values, "responseFormat", str),
            request_tags=values.get("requestTags"),
        )
        if files is None:
            return self._expression(plan, request)
        if get_adapter(plan.site.endpoint.api).output != "text":
            raise ArgumentError(
                "AI_FUNCTION_UNSUPPORTED_REQUEST",
                f"files => sends images with the prompt, which needs a text-generation endpoint; "
                f"'{plan.site.endpoint.name}' is an embeddings endpoint.",
            )
        return self._expression(dataclasses.replace(plan, files=True), request, files=files)

    def _bind(self, expressions: list[Any]) -> dict[str, Any]:
        bound: dict[str, Any] = {}
        for position, expression in enumerate(expressions):
            if expression.getClass().getSimpleName() == "NamedArgumentExpression":
                key = str(expression.key())
                name = NAMED.get(key.lower())
                if name is None:
                    raise ArgumentError(
                        "UNRECOGNIZED_PARAMETER_NAME",
                        f"ai_query has no parameter named `{key}`; it takes {', '.join(NAMED.values())}.",
                        sqlstate="4274K",
                    )
                value = expression.value()
            else:
                if position >= len(POSITIONAL):
                    raise ArgumentError(
                        "WRONG_NUM_ARGS.WITHOUT_SUGGESTION",
                        f"ai_query takes at most {len(POSITIONAL)} positional arguments "
                        f"({', '.join(POSITIONAL)}); pass the others by name, e.g. modelParameters => ...",
                        sqlstate="42605",
                    )
                name, value = POSITIONAL[position], expression
            if name in bound:
                raise ArgumentError(
                    "DUPLICATE_ROUTINE_PARAMETER_ASSIGNMENT.BOTH_POSITIONAL_AND_NAMED",
                    f"ai_query's parameter `{name}` is given twice.",
                    sqlstate="4274K",
                )
            bound[name] = value
        return bound

    def _literal(self, name: str, expression: Any) -> Any:
        if not expression.foldable():
            error_class = (
                "AI_FUNCTION_INVALID_MODEL_PARAMETERS.INVALID_PARAMETER_DATA_TYPE"
                if name == "modelParameters"
                else "DATATYPE_MISMATCH.NON_FOLDABLE_INPUT"
            )
            raise ArgumentError(
                error_class,
                f"the `{name}` argument of ai_query must be a constant (a literal), but got {expression.sql()}.",
            )
        type_name = str(expression.dataType().typeName())
        if type_name in ("struct", "map"):
            return self._complex_literal(name, expression)
        value = expression.eval(None)
        if value is None:
            return None
        if type_name == "boolean":
            return bool(value)
        if type_name in ("string",) or type_name.startswith(("varchar", "char")):
            return str(value.toString())
        if type_name in ("integer", "long", "short", "byte"):
            return int(value)
        return str(value.toString()) if hasattr(value, "toString") else value

    def _complex_literal(self, name: str, expression: Any) -> Any:
        # Structs and maps come back through to_json: one JVM evaluation, no Row conversion.
        jvm = self._jvm
        expressions = jvm.org.apache.spark.sql.catalyst.expressions
        empty = jvm.org.apache.spark.api.python.PythonUtils.toScalaMap(jvm.java.util.HashMap())
        zone = jvm.scala.Option.apply(self.info.session_time_zone())
        json_text = expressions.StructsToJson(empty, expression, zone).eval(None)
        value = json.loads(str(json_text.toString())) if json_text is not None else None
        if name == "modelParameters" and not isinstance(value, dict):
            raise ArgumentError(
                "AI_FUNCTION_INVALID_MODEL_PARAMETERS.INVALID_PARAMETER_DATA_TYPE",
                "modelParameters must be a STRUCT literal, e.g. named_struct('max_tokens', 256).",
            )
        return value

    def _expression(self, plan: CallPlan, *requests: Any, collect: bool = False, files: Any = None) -> Any:
        """The UDF's expression over the request column(s) (two for ``ai_similarity``); with ``collect``, over the
        group's requests gathered by ``collect_list`` (``ai_agg``: a scalar UDF over an aggregate, which Spark
        evaluates above the aggregation, so it mixes with count(*) and every other aggregate); ``files``: a BINARY
        column of images sent with each row's request."""
        jvm = self._jvm
        udf = make_udf(plan)
        # The request goes to Python as bytes: a STRING holding invalid UTF-8 (CAST(X'FF' AS STRING)) would make
        # Arrow fail the whole task before any row is seen; as bytes, that row alone gets an error (udf._prompts).
        # Through STRING first, so that a number is sent as its text rather than its binary encoding.
        expressions = jvm.org.apache.spark.sql.catalyst.expressions
        types = jvm.org.apache.spark.sql.types.DataTypes
        inputs = []
        for request in requests:
            for target in (types.StringType, types.BinaryType):
                request = expressions.Cast(request, target, jvm.scala.Option.empty(), expressions.EvalMode.LEGACY())
            inputs.append(request)
        if collect:
            aggregates = expressions.aggregate
            inputs = [aggregates.CollectList(request).toAggregateExpression() for request in inputs]
        if files is not None:
            inputs.append(files)
        sequence = jvm.org.apache.spark.api.python.PythonUtils.toSeq(jvm.java.util.ArrayList(inputs))
        expression = udf._judf.builder(sequence)
        if plan.extract_result:
            expression = expressions.GetStructField(expression, 0, jvm.scala.Option.apply("result"))
        return expression

    class Java:
        implements = ["scala.Function1"]


def require_string(expression: Any, name: str, function: str, hint: str = "") -> None:
    """Refuse a per-row argument that is not a STRING (``DATATYPE_MISMATCH.UNEXPECTED_INPUT_TYPE``)."""
    type_name = str(expression.dataType().typeName())
    if type_name not in ("string", "void") and not type_name.startswith(("varchar", "char")):
        raise ArgumentError(
            "DATATYPE_MISMATCH.UNEXPECTED_INPUT_TYPE",
            f"the `{name}` argument of {function} must be a STRING, but {expression.sql()} is "
            f"{expression.dataType().sql()}{hint}.",
        )


def _require(values: dict[str, Any], name: str, kind: type) -> Any:
    value = values.get(name)
    if not isinstance(value, kind):
        raise ArgumentError(
            "DATATYPE_MISMATCH.UNEXPECTED_INPUT_TYPE",
            f"the `{name}` argument of ai_query must be a {kind.__name__.upper().replace('STR', 'STRING')} "
            f"literal, but got {value!r}.",
        )
    return value


def _optional(values: dict[str, Any], name: str, kind: type, default: Any = None) -> Any:
    if values.get(name) is None:
        return default
    return _require(values, name, kind)
