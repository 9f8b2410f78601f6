"""The DataFrame API: ``ai_query`` as a Column function with the SQL function's semantics.

Example:
    >>> from aiquery.functions import ai_query
    >>> df.select(ai_query("my-chat", F.col("text"), failOnError=False, modelParameters={"max_tokens": 64}))
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import Column

__all__ = ["ai_query"]


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
