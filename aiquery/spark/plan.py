"""From ai_query's literal arguments to a call plan: endpoint, validated parameters, and the result type.

Pure Python: the SQL builder and the DataFrame API both turn their arguments into Python values and call
:func:`plan_call`. The one Spark-specific step, parsing DDL, is passed in as a function.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiquery.ai_functions.call import AIFunctionCall
from aiquery.apis import Adapter, ResponseFormat, get_adapter
from aiquery.apis.parameters import prepare_model_parameters
from aiquery.apis.response_format import (
    DDLResponseFormat,
    parse_response_format,
    reject_response_format,
    response_format_from_spark_type,
)
from aiquery.config import Settings
from aiquery.coordinator.protocol import CoordinatorAddress
from aiquery.engine.prepared import CallSite
from aiquery.errors import ArgumentError

__all__ = ["CallPlan", "ParseDDL", "parse_request_tags", "plan_call"]

ParseDDL = Callable[[str], tuple[Any, str]]
"""Parses a DDL string with Spark: returns (the type's jsonValue(), its SQL spelling); raises ArgumentError."""

VECTOR_TYPES = {"ARRAY<FLOAT>": "float", "ARRAY<DOUBLE>": "double"}


@dataclass(frozen=True, kw_only=True)
class CallPlan:
    """One call site, ready to ship to the workers (pickled into the UDF)."""

    site: CallSite
    fail_on_error: bool = True
    result_sql: str = "STRING"
    """Spark SQL type of the result the user sees (before the failOnError struct)."""
    result_json: Any = "string"
    """The same type as Spark's jsonValue(), used to convert parsed JSON answers."""
    parse_json: bool = False
    """Answers are JSON text to convert into ``result_sql`` (a ``returnType`` other than STRING)."""
    journal: str | None = None
    """The driver's usage journal for this call's records (its ledger's spool folder); None with the ledger off."""
    coordinator: CoordinatorAddress | None = None
    """How workers reach the application's coordinator; None to run each worker on its own."""
    store: str | None = None
    """The coordinator's answer store for this call (its key), or None when the answer store is off for it."""
    requester: str = ""
    """Who the usage table says made the requests: the configured requester, or the Spark Connect user id of the
    session under analysis. Carried with each record, not in the worker runtime's key."""
    session_id: str | None = None
    """The Spark Connect session under analysis (the usage table's ``session_id``); None outside Connect."""
    query_tag: str | None = None
    """The analysed session's ``aiquery.query_tag`` SQL setting; None when unset."""
    spark_app_id: str | None = None
    capped: bool = False
    """Planned under a spending cap: a worker that cannot reach the coordinator to check it sends nothing."""
    cap_owner: str = ""
    """The session whose spending cap counts this call's requests (its id), or empty when it has no cap of its own
    (the application's cap, if any, counts every request)."""
    sample: tuple[str, float] | None = None
    """Planned by an estimate run: (its id, the fraction of rows to send); the other rows are only counted."""
    ai_function: AIFunctionCall | None = None
    """An AI Function's call (ai_summarize, ai_classify, ...): how its answers become values."""
    files: bool = False
    """``files =>``: the UDF takes a second column, each row's image bytes, sent with its request."""
    batch_collect: str | None = None
    """Planned by a batch-mode collect pass (``aiquery.batch.collect``): its run id. Nothing is sent: store misses
    go to the driver for a provider batch (see :mod:`aiquery.engine.collection`)."""

    @property
    def batchable(self) -> bool:
        """Whether this call's requests may go into a provider batch: its endpoint says ``batch = true`` and the
        answer store is on for it (a batch's answers reach the run pass through the store)."""
        return self.site.endpoint.batch and self.store is not None

    @property
    def wrapped(self) -> bool:
        """Whether the UDF returns STRUCT<result, errorMessage> (always for failOnError => false)."""
        return not self.fail_on_error or self.result_sql.upper().startswith("STRUCT")

    @property
    def udf_type(self) -> str:
        """The UDF's declared return type."""
        if self.wrapped:
            return f"STRUCT<result: {self.result_sql}, errorMessage: STRING>"
        return self.result_sql

    @property
    def extract_result(self) -> bool:
        """Whether the caller must take the ``result`` field of the UDF's struct (failOnError => true)."""
        return self.wrapped and self.fail_on_error


def parse_request_tags(value: Any) -> dict[str, str]:
    """Request tags from a MAP literal (a dict) or a JSON object string.

    Raises:
        ArgumentError: ``AI_FUNCTION_INVALID_REQUEST_TAGS`` when not a string-to-string object.
    """
    if value is None:
        return {}
    tags = value
    if isinstance(value, str):
        try:
            tags = json.loads(value)
        except ValueError:
            raise _tags_error(value, "it is not valid JSON") from None
    if not isinstance(tags, Mapping):
        raise _tags_error(value, "it is not a JSON object")
    for key, item in tags.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise _tags_error(value, f"the value of {key!r} is {type(item).__name__}, not a string")
    return dict(tags)


def _tags_error(value: Any, reason: str) -> ArgumentError:
    return ArgumentError(
        "AI_FUNCTION_INVALID_REQUEST_TAGS",
        f"requestTags must be a MAP<STRING, STRING> or a JSON object of string to string, like "
        f'\'{{"team": "ml"}}\'; {reason}: {str(value)[:200]!r}.',
        sqlstate="22023",
    )


def plan_call(
    settings: Settings,
    *,
    endpoint: str,
    parse_ddl: ParseDDL,
    return_type: str | None = None,
    fail_on_error: bool = True,
    model_parameters: Mapping[str, Any] | None = None,
    response_format: str | None = None,
    request_tags: Any = None,
    journal: str | None = None,
    coordinator: CoordinatorAddress | None = None,
    store: str | None = None,
    cache: bool = True,
    spark_app_id: str | None = None,
    budget_share: float = 1.0,
    function: str = "ai_query",
) -> CallPlan:
    """Validate ai_query's literal arguments and decide the result type.

    Raises:
        ArgumentError: an argument is invalid (with Databricks' error class).
        ConfigError: the endpoint cannot be resolved (missing host or token, bad configuration).
    """
    resolved = settings.endpoint(endpoint)
    adapter = get_adapter(resolved.api)
    parameters = prepare_model_parameters(resolved.api, model_parameters, endpoint=endpoint)
    adapter.check_call(resolved, parameters)
    fmt = None if response_format is None else _response_format(adapter, response_format, parse_ddl)
    result_sql, result_json, parse_json = _result_type(adapter, return_type, parse_ddl, endpoint)
    site = CallSite(
        endpoint=resolved,
        parameters=parameters,
        response_format=fmt,
        request_tags=parse_request_tags(request_tags),
        budget_share=budget_share,
        cache=cache and resolved.cache and settings.cache.enabled,
        function=function,
    )
    return CallPlan(
        site=site,
        fail_on_error=fail_on_error,
        result_sql=result_sql,
        result_json=result_json,
        parse_json=parse_json,
        journal=journal if settings.usage.enabled else None,
        coordinator=coordinator,
        store=store if site.cache else None,
        requester=settings.requester,
        spark_app_id=spark_app_id,
    )


def _response_format(adapter: Adapter, text: str, parse_ddl: ParseDDL) -> ResponseFormat:
    """The parsed ``responseFormat`` (a DDL one parsed by Spark), refused for an API that answers with vectors."""
    if adapter.output == "vector":
        reject_response_format(adapter.api)
    parsed = parse_response_format(text)
    if isinstance(parsed, DDLResponseFormat):
        type_json, _ = parse_ddl(parsed.ddl)
        return response_format_from_spark_type(type_json, parsed.ddl)
    return parsed


def _result_type(
    adapter: Adapter, return_type: str | None, parse_ddl: ParseDDL, endpoint: str
) -> tuple[str, Any, bool]:
    """The result's SQL type, its jsonValue(), and whether answers are JSON to convert into it."""
    if return_type is not None:
        type_json, type_sql = parse_ddl(return_type)
        return _result_for_return_type(adapter.output, type_json, type_sql, return_type, endpoint)
    if adapter.output == "vector":
        return "ARRAY<FLOAT>", {"type": "array", "elementType": "float", "containsNull": True}, False
    return "STRING", "string", False


def _result_for_return_type(
    output: str, type_json: Any, type_sql: str, text: str, endpoint: str
) -> tuple[str, Any, bool]:
    if output == "vector":
        if type_sql.upper().replace(" ", "") not in VECTOR_TYPES:
            raise ArgumentError(
                "DATATYPE_MISMATCH.INVALID_RETURN_TYPE",
                f"endpoint '{endpoint}' returns embeddings: returnType must be ARRAY<FLOAT> or ARRAY<DOUBLE>, "
                f"not {text!r}.",
            )
        return type_sql, type_json, False
    if type_json == "string":
        return "STRING", "string", False
    return type_sql, type_json, True
