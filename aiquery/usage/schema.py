"""The usage table's schema, defined once: Delta columns, spool-file fields, and the mapping between them.

The table follows Databricks' ``system.ai_gateway.usage`` (columns, names and types), minus
``endpoint_metadata``, ``destination_id``, ``routing_information`` and ``service_type``, which describe gateway
internals a client cannot see. aiquery adds the columns after ``status_code`` (``call_id`` … ``estimate``).

``event_date`` is an ordinary column, not a partition: ingestion appends small files every few seconds, and
date partitions would multiply them, while Delta's per-file min/max statistics already let a filter on
``event_date`` or ``event_time`` skip files. It is the UTC date of ``event_time``, computed at ingestion (not a
generated column, because ``CAST(timestamp AS DATE)`` depends on the session time zone).

Spark types are built lazily (:func:`usage_struct_type`), so this module imports without a JVM.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql.types import DataType, StructType

__all__ = [
    "SCHEMA_VERSION",
    "SENT_FIELDS",
    "SPOOL_FIELDS",
    "TABLE_PROPERTIES",
    "USAGE_COLUMNS",
    "Column",
    "add_columns_sql",
    "create_table_sql",
    "missing_columns",
    "parse_type",
    "spool_ddl",
    "spool_struct_type",
    "table_projection",
    "usage_ddl",
    "usage_struct_type",
]

SCHEMA_VERSION = "aiquery-4"
"""Written to ``schema_version``, so a reader can tell rows of different layouts apart in one table: bump it when
a column's meaning changes or columns are added.

- ``aiquery-1``: the columns up to ``event_date``; ``request_hash`` is not the answer store's key.
- ``aiquery-2``: ``request_hash`` holds the request's fingerprint (the answer store's key); the columns after
  ``event_date`` (answers from the store, cost, the function, estimate runs). A table without them gains them
  when it is next ingested into (:func:`missing_columns`), NULL in its earlier rows.
- ``aiquery-3``: ``session_id``, the Spark Connect session that made the request (NULL outside a Connect server).
- ``aiquery-4``: ``batch_id``, the provider batch that answered the request (batch mode; NULL for live requests).
"""


@dataclass(frozen=True)
class Column:
    """One column of the usage table."""

    name: str
    type: str
    """Spark DDL type, upper-case, e.g. ``BIGINT`` or ``MAP<STRING, STRING>``."""
    comment: str
    source: str
    """Spark SQL expression over the spool fields that fills this column at ingestion."""


TABLE_PROPERTIES = {
    # Statistics for the columns the dashboard filters on, not all 32 Delta would pick: computing them for
    # every column of every small ingestion batch took about 0.7 s more per ingestion (measured, local[2]).
    "delta.dataSkippingStatsColumns": "event_date,event_time,endpoint_name,requester,status_code",
}

_TOKEN_DETAILS = (
    "STRUCT<cache_read_input_tokens: BIGINT, cache_creation_input_tokens: BIGINT, output_reasoning_tokens: BIGINT>"
)
_DAY_US = 86_400_000_000

USAGE_COLUMNS: tuple[Column, ...] = (
    Column("account_id", "STRING", "Databricks account (NULL outside Databricks)", "CAST(NULL AS STRING)"),
    Column("workspace_id", "STRING", "Databricks workspace (NULL outside Databricks)", "CAST(NULL AS STRING)"),
    Column("request_id", "STRING", "unique per HTTP request (per attempt)", "request_id"),
    Column("schema_version", "STRING", "version of the table layout", f"'{SCHEMA_VERSION}'"),
    Column("endpoint_id", "STRING", "gateway endpoint id (NULL when unknown)", "CAST(NULL AS STRING)"),
    Column("endpoint_name", "STRING", "endpoint name as written in ai_query", "endpoint_name"),
    Column("endpoint_tags", "MAP<STRING, STRING>", "endpoint-level tags", "CAST(NULL AS MAP<STRING, STRING>)"),
    Column("event_time", "TIMESTAMP", "when the request was sent", "timestamp_micros(event_time_us)"),
    Column("latency_ms", "BIGINT", "end-to-end request time", "latency_ms"),
    Column("time_to_first_byte_ms", "BIGINT", "time until the response began", "time_to_first_byte_ms"),
    Column("destination_type", "STRING", "kind of model served (NULL when unknown)", "CAST(NULL AS STRING)"),
    Column("destination_name", "STRING", "served entity (NULL when unknown)", "CAST(NULL AS STRING)"),
    Column("destination_model", "STRING", "model name sent to the endpoint", "destination_model"),
    Column("requester", "STRING", "user or service principal that ran the query", "requester"),
    Column("requester_type", "STRING", "user, service principal, ... (NULL when unknown)", "CAST(NULL AS STRING)"),
    Column("ip_address", "STRING", "client address (not recorded: NULL)", "CAST(NULL AS STRING)"),
    Column("url", "STRING", "request URL", "url"),
    Column("user_agent", "STRING", "client User-Agent", "user_agent"),
    Column("api_type", "STRING", "wire format, e.g. mlflow/v1/chat/completions", "api_type"),
    Column("request_tags", "MAP<STRING, STRING>", "Databricks-Ai-Gateway-Request-Tags", "request_tags"),
    Column("input_tokens", "BIGINT", "prompt tokens, cached ones included", "input_tokens"),
    Column("output_tokens", "BIGINT", "completion tokens, reasoning included", "output_tokens"),
    Column("total_tokens", "BIGINT", "input + output tokens", "total_tokens"),
    Column(
        "token_details",
        _TOKEN_DETAILS,
        "cache and reasoning token counts",
        "named_struct('cache_read_input_tokens', cache_read_input_tokens, "
        "'cache_creation_input_tokens', cache_creation_input_tokens, "
        "'output_reasoning_tokens', output_reasoning_tokens)",
    ),
    Column("response_content_type", "STRING", "Content-Type of the response", "response_content_type"),
    Column("status_code", "INT", "HTTP status (NULL when no response arrived)", "status_code"),
    Column("call_id", "STRING", "shared by the attempts of one call", "call_id"),
    Column("attempt", "INT", "1 for the first request of a call, 2 for its first retry, ...", "attempt"),
    Column(
        "request_hash",
        "STRING",
        "the request's fingerprint: equal for requests whose answer is the same",
        "request_hash",
    ),
    Column(
        "tokens_estimated",
        "BOOLEAN",
        "token counts estimated as (chars+1)/4",
        "coalesce(tokens_estimated, false)",
    ),
    Column("error_message", "STRING", "why the request failed (NULL on success)", "error_message"),
    Column("spark_app_id", "STRING", "Spark application that sent the request", "spark_app_id"),
    Column("task_attempt_id", "BIGINT", "Spark task attempt that sent the request", "task_attempt_id"),
    Column("query_tag", "STRING", "tag of the query that sent the request", "query_tag"),
    Column(
        "event_date",
        "DATE",
        "UTC date of event_time",
        f"date_from_unix_date(CAST(floor(event_time_us / {_DAY_US}) AS INT))",
    ),
    # Columns added since aiquery-1 go last: ALTER TABLE ADD COLUMNS puts them there in an existing table too.
    Column(
        "cache_hit",
        "BOOLEAN",
        "answered from the answer store: no HTTP request was made (tokens: those it would have used)",
        "coalesce(cache_hit, false)",
    ),
    Column("cost", "DOUBLE", "billed: tokens x price; 0 for an answer from the store; NULL without a price", "cost"),
    Column("avoided_cost", "DOUBLE", "for an answer from the store: what the request would have cost", "avoided_cost"),
    Column("currency", "STRING", "currency of cost and avoided_cost (USD, DBU, ...)", "currency"),
    Column(
        "function_name",
        "STRING",
        "the SQL function that made the request (ai_query, ai_summarize, ...)",
        "function_name",
    ),
    Column("estimate", "BOOLEAN", "made by an estimate run on a sample of the rows", "coalesce(estimate, false)"),
    Column("session_id", "STRING", "Spark Connect session that sent the request (NULL outside Connect)", "session_id"),
    Column("batch_id", "STRING", "provider batch that answered the request (NULL when sent live)", "batch_id"),
)

# What a spool line holds: the UsageRecord fields, with event_time as microseconds since the epoch (UTC),
# which is cheaper to write than ISO text and independent of any time zone.
SPOOL_FIELDS: tuple[tuple[str, str], ...] = (
    ("request_id", "STRING"),
    ("call_id", "STRING"),
    ("attempt", "INT"),
    ("event_time_us", "BIGINT"),
    ("endpoint_name", "STRING"),
    ("destination_model", "STRING"),
    ("api_type", "STRING"),
    ("url", "STRING"),
    ("requester", "STRING"),
    ("user_agent", "STRING"),
    ("request_tags", "MAP<STRING, STRING>"),
    ("request_hash", "STRING"),
    ("input_tokens", "BIGINT"),
    ("output_tokens", "BIGINT"),
    ("total_tokens", "BIGINT"),
    ("cache_read_input_tokens", "BIGINT"),
    ("cache_creation_input_tokens", "BIGINT"),
    ("output_reasoning_tokens", "BIGINT"),
    ("tokens_estimated", "BOOLEAN"),
    ("latency_ms", "BIGINT"),
    ("time_to_first_byte_ms", "BIGINT"),
    ("status_code", "INT"),
    ("error_message", "STRING"),
    ("response_content_type", "STRING"),
    ("spark_app_id", "STRING"),
    ("task_attempt_id", "BIGINT"),
    ("query_tag", "STRING"),
    ("function_name", "STRING"),
    ("estimate", "BOOLEAN"),
    ("cache_hit", "BOOLEAN"),
    ("cost", "DOUBLE"),
    ("avoided_cost", "DOUBLE"),
    ("currency", "STRING"),
    ("session_id", "STRING"),
    ("batch_id", "STRING"),
)

SENT_FIELDS = frozenset(
    {
        "request_id",
        "call_id",
        "attempt",
        "event_time_us",
        "request_hash",
        "endpoint_name",
        "destination_model",
        "api_type",
        "url",
        "requester",
        "user_agent",
        "request_tags",
        "spark_app_id",
        "task_attempt_id",
        "query_tag",
        "function_name",
        "estimate",
        "session_id",
    }
)
"""The spool fields known when a request is sent. They are journaled before the request reaches the wire, so a
request whose worker died mid-flight is still recorded with them; every other spool field is its outcome."""


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def usage_ddl(*, comments: bool = True) -> str:
    """The table's columns as a Spark DDL list (``name TYPE COMMENT '...', ...``), one column per line."""
    return ",\n".join(
        f"{c.name} {c.type}" + (f" COMMENT {_quote(c.comment)}" if comments else "") for c in USAGE_COLUMNS
    )


def spool_ddl() -> str:
    """The spool files' fields as a Spark DDL schema string, for the JSON reader."""
    return ", ".join(f"{name} {kind}" for name, kind in SPOOL_FIELDS)


def table_projection() -> list[str]:
    """SQL expressions turning a spool row into a table row, in column order (for ``selectExpr``)."""
    return [f"{c.source} AS {c.name}" for c in USAGE_COLUMNS]


def missing_columns(existing: set[str]) -> list[Column]:
    """The columns a table with columns ``existing`` (lower-cased names) lacks, in table order."""
    return [column for column in USAGE_COLUMNS if column.name.lower() not in existing]


def add_columns_sql(table: str, columns: list[Column]) -> str:
    """``ALTER TABLE ... ADD COLUMNS`` for ``columns``: how an older usage table is brought up to date."""
    listed = ", ".join(f"{c.name} {c.type} COMMENT {_quote(c.comment)}" for c in columns)
    return f"ALTER TABLE {table} ADD COLUMNS ({listed})"


def create_table_sql(table: str, *, location: str | None = None) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for the usage table, as in ``sql/usage_table.sql``."""
    where = f"\nLOCATION {_quote(location)}" if location else ""
    columns = "\n".join("  " + line for line in usage_ddl().splitlines())
    properties = ",\n".join(f"  {_quote(key)} = {_quote(value)}" for key, value in TABLE_PROPERTIES.items())
    return (
        f"CREATE TABLE IF NOT EXISTS {table} (\n{columns}\n)\nUSING delta\n"
        "COMMENT 'One row per HTTP request made by ai_query (aiquery), and per answer from its answer store, "
        "shaped like system.ai_gateway.usage'"
        f"{where}\nTBLPROPERTIES (\n{properties}\n)"
    )


# ---- a small parser for the DDL types used above, so StructTypes need no JVM ------------------------------
_TOKEN = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*|<|>|,|:)")


def parse_type(text: str) -> DataType:
    """A pyspark DataType for a DDL type used in this module (primitives, MAP, ARRAY, STRUCT).

    Raises:
        ValueError: the text is not such a type.
    """
    tokens = _tokenize(text)
    kind, end = _parse(tokens, 0)
    if end != len(tokens):
        raise ValueError(f"unexpected {tokens[end]!r} in type {text!r}")
    result: DataType = kind
    return result


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    while pos < len(text.rstrip()):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ValueError(f"cannot parse type {text!r} at {pos}")
        tokens.append(match.group(1))
        pos = match.end()
    return tokens


def _parse(tokens: list[str], pos: int) -> tuple[Any, int]:
    from pyspark.sql import types as T

    primitives: dict[str, Any] = {
        "STRING": T.StringType,
        "INT": T.IntegerType,
        "BIGINT": T.LongType,
        "BOOLEAN": T.BooleanType,
        "DOUBLE": T.DoubleType,
        "TIMESTAMP": T.TimestampType,
        "DATE": T.DateType,
    }
    word = tokens[pos].upper()
    if word in primitives:
        return primitives[word](), pos + 1
    if word == "MAP":
        key, pos = _parse(tokens, _expect(tokens, pos + 1, "<"))
        value, pos = _parse(tokens, _expect(tokens, pos, ","))
        return T.MapType(key, value, True), _expect(tokens, pos, ">")
    if word == "ARRAY":
        element, pos = _parse(tokens, _expect(tokens, pos + 1, "<"))
        return T.ArrayType(element, True), _expect(tokens, pos, ">")
    if word == "STRUCT":
        fields = []
        pos = _expect(tokens, pos + 1, "<")
        while True:
            name = tokens[pos]
            kind, pos = _parse(tokens, _expect(tokens, pos + 1, ":"))
            fields.append(T.StructField(name, kind, True))
            if tokens[pos] == ">":
                return T.StructType(fields), pos + 1
            pos = _expect(tokens, pos, ",")
    raise ValueError(f"unknown type {tokens[pos]!r}")


def _expect(tokens: list[str], pos: int, token: str) -> int:
    if pos >= len(tokens) or tokens[pos] != token:
        raise ValueError(f"expected {token!r} at token {pos} of {' '.join(tokens)!r}")
    return pos + 1


def usage_struct_type() -> StructType:
    """The table's schema as a pyspark StructType (comments in each field's metadata)."""
    from pyspark.sql.types import StructField, StructType

    return StructType([StructField(c.name, parse_type(c.type), True, {"comment": c.comment}) for c in USAGE_COLUMNS])


def spool_struct_type() -> StructType:
    """The spool files' schema as a pyspark StructType."""
    from pyspark.sql.types import StructField, StructType

    return StructType([StructField(name, parse_type(kind), True) for name, kind in SPOOL_FIELDS])
