"""What a job cost, from the usage table: requests, errors, tokens, cost and answers from the store per endpoint for
one query tag."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiquery.coordinator.progress import format_money

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = [
    "EndpointUsage",
    "costs_by_currency",
    "format_summary",
    "sql_literal",
    "unpriced",
    "usage_summary",
]

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
       sum(cost) AS cost,
       max(currency) AS currency,
       0 AS from_store,
       NULL AS avoided_cost
FROM {table}
WHERE query_tag = {tag} AND NOT coalesce(cache_hit, false)
GROUP BY endpoint_name
UNION ALL
SELECT endpoint_name, 0, 0, 0, 0, 0, 0, NULL, NULL, max(currency), count(*), sum(avoided_cost)
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
    cost: float | None = None
    """What the requests cost, in ``currency``; None when the endpoint has no price."""
    currency: str | None = None
    avoided_cost: float | None = None
    """What the answers from the store would have cost."""


def usage_summary(spark: SparkSession, table: str, query_tag: str) -> list[EndpointUsage]:
    """Per-endpoint totals of the requests tagged ``query_tag``.

    Args:
        spark: a session in which ``table`` is registered.
        table: the usage table, e.g. ``ai_gateway.usage``.
        query_tag: the tag the job set (``aiquery.query_tag``).
    """
    # A quoted literal, not a named parameter: with Delta's session extension (delta-spark 4.4.0 on Spark 4.2)
    # spark.sql(..., args=...) fails with UNBOUND_SQL_PARAMETER.
    rows = spark.sql(_SUMMARY_SQL.format(table=table, tag=sql_literal(query_tag))).collect()
    found: dict[str, EndpointUsage] = {}
    for row in rows:
        name = str(row.endpoint_name)
        if row.from_store:
            sent = found.get(name) or EndpointUsage(name, 0, 0, 0, 0, 0, 0, None)
            found[name] = dataclasses.replace(
                sent,
                from_store=int(row.from_store),
                avoided_cost=_float(row.avoided_cost),
                currency=sent.currency or row.currency,
            )
            continue
        earlier = found.get(name)
        found[name] = EndpointUsage(
            endpoint=name,
            requests=int(row.requests),
            calls=int(row.calls),
            errors=int(row.errors),
            input_tokens=int(row.input_tokens),
            output_tokens=int(row.output_tokens),
            total_tokens=int(row.total_tokens),
            median_latency_ms=None if row.median_latency_ms is None else int(row.median_latency_ms),
            from_store=earlier.from_store if earlier else 0,
            cost=_float(row.cost),
            currency=row.currency or (earlier.currency if earlier else None),
            avoided_cost=earlier.avoided_cost if earlier else None,
        )
    return [found[name] for name in sorted(found)]


def _float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def unpriced(rows: list[EndpointUsage]) -> list[str]:
    """Endpoints that sent requests and have no price: their cost is unknown (NULL), not zero."""
    return [row.endpoint for row in rows if row.requests and row.cost is None]


def costs_by_currency(rows: list[EndpointUsage]) -> dict[str, tuple[float, float]]:
    """Cost and avoided cost per currency (costs in different currencies are never added up)."""
    totals: dict[str, tuple[float, float]] = {}
    for row in rows:
        if row.currency is None:
            continue
        cost, avoided = totals.get(row.currency, (0.0, 0.0))
        totals[row.currency] = (cost + (row.cost or 0.0), avoided + (row.avoided_cost or 0.0))
    return totals


def sql_literal(text: str) -> str:
    """``text`` as a Spark SQL string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


_HEADER = (
    "endpoint",
    "requests",
    "calls",
    "errors",
    "input tok",
    "output tok",
    "total tok",
    "p50 ms",
    "from store",
    "cost",
    "avoided",
)


def format_summary(rows: list[EndpointUsage]) -> str:
    """A plain-text table of ``rows`` with a total line (an empty list says no request was made)."""
    if not rows:
        return "  no ai_query request was made"
    body = [_row_cells(row) for row in rows]
    totals = costs_by_currency(rows)
    if len(rows) > 1:
        body.append(_total_cells(rows, totals))
    widths = [max(len(line[i]) for line in (_HEADER, *body)) for i in range(len(_HEADER))]

    def render(line: tuple[str, ...]) -> str:
        cells = [line[0].ljust(widths[0])] + [
            cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True)
        ]
        return "  " + "  ".join(cells).rstrip()

    lines = [render(line) for line in (_HEADER, *body)]
    if len(totals) > 1:
        for currency, (cost, avoided) in sorted(totals.items()):
            spent, saved = format_money(cost, currency), format_money(avoided, currency)
            lines.append(f"  total in {currency}: {spent}, avoided {saved}")
    missing = unpriced(rows)
    if missing:
        lines.append(
            f"  no price for {', '.join(missing)}: their cost is not counted (set price = {{ input_per_million = ..., "
            "output_per_million = ... } in their [endpoints] table)"
        )
    return "\n".join(lines)


def _row_cells(row: EndpointUsage) -> tuple[str, ...]:
    return (
        row.endpoint,
        f"{row.requests:,}",
        f"{row.calls:,}",
        f"{row.errors:,}",
        f"{row.input_tokens:,}",
        f"{row.output_tokens:,}",
        f"{row.total_tokens:,}",
        "-" if row.median_latency_ms is None else f"{row.median_latency_ms:,}",
        f"{row.from_store:,}",
        _money_cell(row.cost, row.currency, row.requests > 0),
        _money_cell(row.avoided_cost, row.currency, row.from_store > 0),
    )


def _total_cells(rows: list[EndpointUsage], totals: dict[str, tuple[float, float]]) -> tuple[str, ...]:
    # Amounts in different currencies are not added: each has a line of its own below the table.
    money = (
        (format_money(*_first(totals, 0)), format_money(*_first(totals, 1))) if len(totals) == 1 else ("see below", "")
    )
    return (
        "total",
        f"{sum(r.requests for r in rows):,}",
        f"{sum(r.calls for r in rows):,}",
        f"{sum(r.errors for r in rows):,}",
        f"{sum(r.input_tokens for r in rows):,}",
        f"{sum(r.output_tokens for r in rows):,}",
        f"{sum(r.total_tokens for r in rows):,}",
        "",
        f"{sum(r.from_store for r in rows):,}",
        *money,
    )


def _money_cell(amount: float | None, currency: str | None, used: bool) -> str:
    if not used:
        return "-"
    if amount is None or currency is None:
        return "no price"
    return format_money(amount, currency)


def _first(totals: dict[str, tuple[float, float]], index: int) -> tuple[float, str]:
    currency, amounts = next(iter(totals.items()))
    return amounts[index], currency
