"""The DataFrame API: ``ai_query`` and the AI Functions as Column functions with the SQL functions' semantics.

Example:
    >>> from aiquery.functions import ai_classify, ai_query, ai_summarize
    >>> df.select(ai_query("my-chat", F.col("text"), failOnError=False, modelParameters={"max_tokens": 64}))
    >>> df.select(ai_summarize("text", 20), ai_classify("text", ["urgent", "not urgent"]))

The AI Functions call the SQL functions ``aiquery.register`` puts in the session (registering it with the default
settings first if needed), so their arguments are checked the same way, at analysis time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import Column

from aiquery.config import TEXT_FUNCTIONS
from aiquery.connect.client import connect_in_use, function_column, named_arguments_supported, sql_call_column
from aiquery.errors import ArgumentError

__all__ = ["ai_query", "ai_similarity", *TEXT_FUNCTIONS]


def ai_query(
    endpoint: str,
    request: Column | str,
    *,
    # Databricks' argument names, camelCase as in SQL.
    returnType: str | None = None,
    failOnError: bool = True,
    modelParameters: Mapping[str, Any] | None = None,
    responseFormat: str | None = None,
    requestTags: Mapping[str, str] | str | None = None,
) -> Column:
    """Query an endpoint for each row, like SQL's ``ai_query``.

    Args:
        endpoint: the endpoint name.
        request: the prompt column (a Column, or a column name).
        returnType: a Spark DDL type to parse the answer into (embeddings: ARRAY<FLOAT> or ARRAY<DOUBLE>).
        failOnError: False returns STRUCT<result, errorMessage> instead of failing the query on a row's error.
        modelParameters: e.g. ``{"max_tokens": 256, "temperature": 0.1}``.
        responseFormat: a JSON response_format string or a one-field STRUCT DDL string (chat endpoints).
        requestTags: tags for cost attribution, a dict or a JSON object string.

    Returns:
        A Column: STRING for chat, ARRAY<FLOAT> for embeddings, the returnType, or the failOnError struct.

    Raises:
        ArgumentError: an argument is invalid (Databricks' error class in the message).
        ConfigError: the endpoint cannot be resolved.
    """
    if connect_in_use(request):  # the server's ai_query, with these options as named arguments
        options = dict(returnType=returnType, failOnError=failOnError, modelParameters=modelParameters)
        options.update(responseFormat=responseFormat, requestTags=requestTags)
        if not named_arguments_supported():
            return _connect_ai_query_by_position(endpoint, request, options).alias("ai_query")
        return _connect_call("ai_query", [endpoint, _column(request)], options).alias("ai_query")
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    from aiquery.spark.registry import context_for
    from aiquery.spark.udf import make_udf

    spark = SparkSession.getActiveSession()
    if spark is None:
        raise RuntimeError("ai_query needs an active SparkSession; create one first")
    plan = context_for(spark).plan(
        endpoint=endpoint,
        return_type=returnType,
        fail_on_error=failOnError,
        model_parameters=dict(modelParameters) if modelParameters is not None else None,
        response_format=responseFormat,
        request_tags=dict(requestTags) if isinstance(requestTags, Mapping) else requestTags,
    )
    column = F.col(request) if isinstance(request, str) else request
    # As in SQL, the request travels as bytes so that one invalid UTF-8 value fails only its row (through STRING,
    # so that a number is sent as its text, not as its binary encoding).
    result = make_udf(plan)(column.cast("string").cast("binary"))
    if plan.extract_result:
        result = result.getField("result")
    return result.alias("ai_query")


def _call(function: str, *arguments: Any) -> Column:
    """``function(arguments...)`` as registered in the active session: Columns and column names per row, Python
    values (a label list, a number, a string) as literals."""
    if connect_in_use(*arguments):
        return _connect_call(function, list(arguments), {})
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    from aiquery.spark.registry import context_for

    spark = SparkSession.getActiveSession()
    if spark is None:
        raise RuntimeError(f"{function} needs an active SparkSession; create one first")
    context_for(spark)  # registers the functions in this session if it has not been done
    return F.call_function(function, *[_value(F, argument) for argument in arguments])


def _connect_call(function: str, positional: list[Any], named: Mapping[str, Any]) -> Column:
    """The Spark Connect Column of ``function``: the server resolves it; named options (None: left out) go as
    named arguments, as SQL's ``name => value``."""
    from pyspark.sql.connect import functions as CF

    options = {name: _value(CF, value, structs=True) for name, value in named.items() if value is not None}
    return function_column(function, [_value(CF, argument) for argument in positional], options)


def _connect_ai_query_by_position(endpoint: str, request: Column | str, options: dict[str, Any]) -> Column:
    """ai_query for a Connect client without named arguments (Spark 3.5): ``returnType`` and ``failOnError`` go by
    position; the other options only as SQL text, which needs the request as a column's name."""
    named = {name: value for name, value in options.items() if value is not None}
    by_name = {name: value for name, value in named.items() if name not in ("returnType", "failOnError")}
    if not by_name:
        positional = [endpoint, _column(request), options["returnType"], options["failOnError"]]
        return _connect_call("ai_query", positional, {})
    if not isinstance(request, str):
        raise ArgumentError(
            "UNSUPPORTED_FEATURE.NAMED_ARGUMENTS",
            f"Spark 3.5's Spark Connect protocol cannot send named arguments ({', '.join(by_name)}) with a Column; "
            "pass the request as a column name (ai_query('e', 'text', ...)), or use SQL: "
            "df.selectExpr(\"ai_query('e', text, modelParameters => named_struct(...))\")",
            sqlstate="0A000",
        )
    return sql_call_column("ai_query", [endpoint], request, named)


def _value(F: Any, value: Any, *, structs: bool = False) -> Column:
    """A Column as is; a list as an ARRAY literal; a dict as a MAP literal, or with ``structs`` as a STRUCT literal
    (what SQL's ``named_struct`` gives ``modelParameters``); any other Python value as a literal."""
    if isinstance(value, (list, tuple)):
        return F.array(*[F.lit(item) for item in value])
    if isinstance(value, Mapping):
        if structs:
            # named_struct, not struct(value AS name): the analyzer removes that alias only after ai_query's
            # builder has run, and an alias is not a constant to it.
            parts = [part for key, item in value.items() for part in (F.lit(str(key)), _value(F, item, structs=True))]
            return F.named_struct(*parts)
        return F.create_map(*[F.lit(str(part)) for item in value.items() for part in item])
    if type(value).__name__ == "Column" and type(value).__module__.startswith("pyspark."):
        # Classic, Connect (and on Spark 3.5 the two are unrelated classes): whichever the session builds.
        return value  # type: ignore[no-any-return]
    return F.lit(value)  # type: ignore[no-any-return]


def _column(value: Column | str) -> Column:
    if not isinstance(value, str):
        return value
    if connect_in_use():
        from pyspark.sql.connect import functions as CF

        return CF.col(value)  # type: ignore[no-any-return]
    from pyspark.sql import functions as F

    return F.col(value)


def ai_agg(content: Column | str, instruction: str) -> Column:
    """An aggregate: one answer to ``instruction`` for all of a group's ``content`` (aiquery's own), reduced in
    layers when the group does not fit the endpoint's context (``df.groupBy("product").agg(ai_agg("review",
    "Summarize the complaints"))``)."""
    return _call("ai_agg", _column(content), instruction)


def ai_analyze_sentiment(content: Column | str) -> Column:
    """positive, negative, neutral or mixed (NULL when the answer names none)."""
    return _call("ai_analyze_sentiment", _column(content))


def ai_classify(
    content: Column | str, labels: Sequence[str] | Mapping[str, str] | str, options: Mapping[str, Any] | None = None
) -> Column:
    """One of ``labels`` (a list of 2 to 20: STRING, NULL when the answer names none of them), or, with the labels
    as JSON (a JSON string, or a dict of label to description: 2 to 500 labels) and ``options`` (``instructions``,
    ``multilabel``, ``version``), a VARIANT ``{"response": [labels], "error_message": ...}`` (Spark 4.0 or later)."""
    return _call("ai_classify", _column(content), *_labels_and_options(labels, options))


def ai_extract(
    content: Column | str, labels: Sequence[str] | Mapping[str, Any] | str, options: Mapping[str, Any] | None = None
) -> Column:
    """A STRUCT with one STRING field per label (a list), or, with a JSON schema (a JSON string, or a dict of field
    to ``{"type": ..., "description": ...}``) and ``options``, a VARIANT ``{"response": {...}, "error_message":
    ...}`` (Spark 4.0 or later)."""
    return _call("ai_extract", _column(content), *_labels_and_options(labels, options))


def _labels_and_options(labels: Any, options: Mapping[str, Any] | None) -> list[Any]:
    if isinstance(labels, Mapping):
        labels = json.dumps(labels)
    if options is None:
        return [labels]
    return [labels, {key: str(value).lower() if isinstance(value, bool) else value for key, value in options.items()}]


def ai_filter(content: Column | str, condition: str) -> Column:
    """BOOLEAN: whether ``condition`` holds for ``content`` (``df.where(ai_filter("review", "mentions a refund"))``)."""
    return _call("ai_filter", _column(content), condition)


def ai_fix_grammar(content: Column | str) -> Column:
    """``content`` with its grammar corrected."""
    return _call("ai_fix_grammar", _column(content))


def ai_gen(prompt: Column | str) -> Column:
    """The chat endpoint's answer to ``prompt``."""
    return _call("ai_gen", _column(prompt))


def ai_mask(content: Column | str, labels: Sequence[str]) -> Column:
    """``content`` with every entity of the ``labels`` types replaced by ``[MASKED]``."""
    return _call("ai_mask", _column(content), list(labels))


def ai_similarity(expr1: Column | str, expr2: Column | str) -> Column:
    """FLOAT: the cosine of the two texts' embeddings (1.0 for equal texts); for ranking."""
    return _call("ai_similarity", _column(expr1), _column(expr2))


def ai_summarize(content: Column | str, max_words: int = 50) -> Column:
    """A summary of at most about ``max_words`` words (0: no limit)."""
    return _call("ai_summarize", _column(content), max_words)


def ai_translate(content: Column | str, to_lang: str) -> Column:
    """``content`` translated into ``to_lang`` (a language code or name)."""
    return _call("ai_translate", _column(content), to_lang)
