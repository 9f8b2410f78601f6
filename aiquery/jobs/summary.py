"""What a job cost, from the usage table: requests, errors, tokens and answers from the store per endpoint for one
query tag."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["EndpointUsage", "format_summary", "usage_summary"]

# A request failed when it got no 2xx answer; status_code is NULL when no answer arrived at all. Answers from the
# answer store are rows of their own (cache_hit): counted apart, never as requests, their tokens not as used.
_SUMMARY_SQL = """
SELECT endpoint_name,
       count(*) AS requests,
       count(DISTINCT call_id) AS calls,
       count_if(coalesce(status_code, 0) NOT BETWEEN 200 AND 299) AS errors,
       coalesce(sum(input_tokens), 0) AS input_tokens,
       coalesce(sum(output_tokens), 0) AS output_tokens,
       coalesce(sum(total_tokens), 0) AS total_tokens,
       percentile_approx(latency_ms, 0.5) AS median_latency_ms,
       0 AS from_store
FROM {table}
WHERE query_tag = {tag} AND NOT coalesce(cache_hit, false)
GROUP BY endpoint_name
UNION ALL
SELECT endpoint_name, 0, 0, 0, 0, 0, 0, NULL, count(*)
FROM {table}
WHERE query_tag = {tag} AND cache_hit
GROUP BY endpoint_name
"""


@dataclass(frozen=True)
class EndpointUsage:
    """One endpoint's share of a job."""

    endpoint: str
    requests: int
    calls: int
    errors: int
    input_tokens: int
    output_tokens: int
    total_tokens: int
    median_latency_ms: int | None
    from_store: int = 0
    """Calls answered from the answer store (no request sent)."""


def usage_summary(spark: SparkSession, table: str, query_tag: str) -> list[EndpointUsage]:
    """Per-endpoint totals of the requests tagged ``query_tag``.

    Args:
        spark: a session in which ``table`` is registered.
        table: the usage table, e.g. ``ai_gateway.usage``.
        query_tag: the tag the job set (``aiquery.query_tag``).
    """
    # A quoted literal, not a named parameter: with Delta's session extension (delta-spark 4.4.0 on Spark 4.2)
    # spark.sql(..., args=...) fails with UNBOUND_SQL_PARAMETER.
    rows = spark.sql(_SUMMARY_SQL.format(table=table, tag=_literal(query_tag))).collect()
    found: dict[str, EndpointUsage] = {}
    for row in rows:
        name = str(row.endpoint_name)
        if row.from_store:
            sent = found.get(name) or EndpointUsage(name, 0, 0, 0, 0, 0, 0, None)
            found[name] = dataclasses.replace(sent, from_store=int(row.from_store))
            continue
        found[name] = EndpointUsage(
            endpoint=name,
            requests=int(row.requests),
            calls=int(row.calls),
            errors=int(row.errors),
            input_tokens=int(row.input_tokens),
            output_tokens=int(row.output_tokens),
            total_tokens=int(row.total_tokens),
            median_latency_ms=None if row.median_latency_ms is None else int(row.median_latency_ms),
            from_store=found[name].from_store if name in found else 0,
        )
    return [found[name] for name in sorted(found)]


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def format_summary(rows: list[EndpointUsage]) -> str:
    """A plain-text table of ``rows`` with a total line (an empty list says no request was made)."""
    if not rows:
        return "  no ai_query request was made"
    header = ("endpoint", "requests", "calls", "errors", "input tok", "output tok", "total tok", "p50 ms", "from store")
    body = [
        (
            row.endpoint,
            f"{row.requests:,}",
            f"{row.calls:,}",
            f"{row.errors:,}",
            f"{row.input_tokens:,}",
            f"{row.output_tokens:,}",
            f"{row.total_tokens:,}",
            "-" if row.median_latency_ms is None else f"{row.median_latency_ms:,}",
            f"{row.from_store:,}",
        )
        for row in rows
    ]
    if len(rows) > 1:
        body.append(
            (
                "total",
                f"{sum(r.requests for r in rows):,}",
                f"{sum(r.calls for r in rows):,}",
                f"{sum(r.errors for r in rows):,}",
                f"{sum(r.input_tokens for r in rows):,}",
                f"{sum(r.output_tokens for r in rows):,}",
                f"{sum(r.total_tokens for r in rows):,}",
                "",
                f"{sum(r.from_store for r in rows):,}",
            )
        )
    widths = [max(len(line[i]) for line in (header, *body)) for i in range(len(header))]

    def render(line: tuple[str, ...]) -> str:
        cells = [line[0].ljust(widths[0])] + [
            cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True)
        ]
        return "  " + "  ".join(cells).rstrip()

    return "\n".join(render(line) for line in (header, *body))
