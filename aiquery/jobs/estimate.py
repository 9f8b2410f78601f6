"""What a job will cost before it runs: the job run once with sampling at ``ai_query``'s input.

``aiquery estimate JOB.sql`` and :func:`aiquery.estimate` run the job's statements so that every ``ai_query``
call sees exactly the rows the real run would give it (after the job's joins, filters and LIMITs), but sends only
a deterministic sample of them (a hash of the prompt below the sample fraction: the same rows in every run) and
counts the rest. Unsent rows get NULL. The sampled requests go to the usage ledger, tagged ``estimate`` and with
the run's query tag, and their answers to the answer store, so the real run does not pay for them again.

The user's tables are not written. Each statement is run in a form that reads what the original reads and
writes nothing but session-scoped scratch views, which are dropped at the end:

- a query is computed and discarded;
- ``CREATE TABLE t AS query`` becomes a cached temporary view ``t`` of the query (a later statement that names
  ``t`` reads it, as it would read the table);
- ``INSERT INTO t query`` and a ``MERGE`` whose source is a subquery compute that query and discard it;
- temporary views, ``SET`` and ``USE`` run as they are (the current database is restored afterwards);
- any other statement (``UPDATE``, ``DELETE``, ``DROP``, a ``MERGE`` of a table, ...) is skipped, and named in the
  estimate as not counted.

From the sample: the total of each quantity is the rows that reached the call times its mean per sampled row,
with a range of three standard errors either way (sampling without replacement). When a call's sample is
smaller than ``min_rows``, the job runs a second time with a fraction large enough; the first run's answers then
come from the answer store.
"""

from __future__ import annotations

import math
import secrets
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from aiquery.coordinator.progress import format_money
from aiquery.errors import AIQueryError
from aiquery.jobs.estimate_run import (
    AGGREGATE_CALL,
    EstimateError,
    PlannedStatement,
    plan_statement,
    run_estimate_pass,
)
from aiquery.jobs.script import Statement
from aiquery.jobs.summary import sql_literal

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from aiquery.config import Settings
    from aiquery.coordinator.server import Coordinator

__all__ = ["EndpointEstimate", "EstimateError", "JobEstimate", "Span", "estimate_statements"]

DEFAULT_FRACTION = 0.01
DEFAULT_MIN_ROWS = 100
Z = 3.0
"""Standard errors either side of an estimate that its range spans."""
CLIENT_REQUESTS_PER_S = 900.0
"""Requests a second one Spark task slot can send at most, whatever the endpoint's latency (measured by
benchmarks/spark_throughput.py on 2 cores: 1,872 rows/s over two slots), for the wall-time estimate."""


@dataclass(frozen=True, slots=True)
class Span:
    """An estimate and its range."""

    value: float
    low: float
    high: float

    def format(self, money: str | None = None, *, duration: bool = False) -> str:
        def one(amount: float) -> str:
            if duration:
                return _duration(amount)
            return format_money(amount, money) if money else f"{amount:,.0f}"

        if math.isclose(self.low, self.high, rel_tol=1e-9, abs_tol=1e-12):
            return one(self.value)
        return f"{one(self.value)} ({one(self.low)} to {one(self.high)})"


@dataclass(frozen=True)
class EndpointEstimate:
    """What the whole job is expected to send to one endpoint.

    Attributes:
        endpoint: its name.
        rows: rows that reached its ``ai_query`` calls (counted, every one; NULL prompts excluded).
        sampled: of those, rows in the sample.
        requests: HTTP requests (retries included; rows with identical prompts share one).
        input_tokens: input tokens.
        output_tokens: output tokens.
        cost: cost in ``currency``, or None when the endpoint has no price.
        currency: the price's currency.
        seconds: wall time at the endpoint's ``max_concurrency`` in every task slot (and its request budget, if
            any), from the sample's latencies; None when nothing was sent.
        batch_cost: the cost through the provider's batch API (``aiquery run --batch``), for an endpoint with
            ``batch = true`` and a price; else None.
    """

    endpoint: str
    rows: int
    sampled: int
    requests: Span
    input_tokens: Span
    output_tokens: Span
    cost: Span | None
    currency: str | None
    seconds: Span | None
    batch_cost: Span | None = None


@dataclass
class JobEstimate:
    """An estimate of a whole job.

    Attributes:
        fraction: the share of rows sent (of the last run, when a second run was needed).
        query_tag: the sample's requests carry it in the usage table (``estimate`` is true for them).
        endpoints: per endpoint called.
        not_counted: what the estimate could not count, in words.
        sample_requests: HTTP requests the estimate itself sent.
        sample_cost: what they cost, per currency.
    """

    fraction: float
    query_tag: str
    endpoints: list[EndpointEstimate] = field(default_factory=list)
    not_counted: list[str] = field(default_factory=list)
    sample_requests: int = 0
    sample_cost: dict[str, float] = field(default_factory=dict)

    def format(self) -> str:
        """The estimate as the command prints it."""
        lines = [
            f"Estimate of the whole job, from a {100 * self.fraction:.3g} % sample of the rows at each ai_query call "
            f"(ranges: {Z:g} standard errors; query tag {self.query_tag}):"
        ]
        if not self.endpoints:
            lines.append("  no ai_query call received a row")
        for item in self.endpoints:
            lines.append(f"  {item.endpoint}: {item.rows:,} rows ({item.sampled:,} sent in the sample)")
            lines.append(f"    requests       {item.requests.format()}")
            lines.append(f"    input tokens   {item.input_tokens.format()}")
            lines.append(f"    output tokens  {item.output_tokens.format()}")
            cost = item.cost.format(money=item.currency) if item.cost and item.currency else "unknown: no price"
            lines.append(f"    cost           {cost}")
            if item.batch_cost is not None and item.currency:
                batch = item.batch_cost.format(money=item.currency)
                lines.append(f"    batch cost     {batch} (aiquery run --batch: the provider's batch price)")
            seconds = item.seconds.format(duration=True) if item.seconds is not None else "unknown: nothing sent"
            lines.append(f"    wall time      {seconds} (at max_concurrency in every task slot, no 429s)")
        spent = ", ".join(format_money(amount, currency) for currency, amount in sorted(self.sample_cost.items()))
        lines.append(f"The estimate sent {self.sample_requests:,} request(s)" + (f", costing {spent}" if spent else ""))
        lines.append("  (their answers are in the answer store: the real run does not pay for them again)")
        if self.not_counted:
            lines.append("Not counted:")
            lines += [
                textwrap.fill(note, 110, initial_indent="  - ", subsequent_indent="    ") for note in self.not_counted
            ]
        return "\n".join(lines)


def estimate_statements(
    spark: SparkSession,
    statements: Sequence[Statement],
    *,
    fraction: float = DEFAULT_FRACTION,
    min_rows: int = DEFAULT_MIN_ROWS,
    query_tag: str | None = None,
) -> JobEstimate:
    """Run ``statements`` with sampling at every ``ai_query`` call and estimate the whole job from the sample.

    ``ai_query`` must be registered in ``spark`` with the usage ledger on.

    Raises:
        EstimateError: the ledger is off, or a statement failed (the message names it).
        ValueError: ``fraction`` is not in (0, 1] or ``min_rows`` is negative.
    """
    from aiquery.spark.coordination import running_coordinator
    from aiquery.spark.flush import flush_usage
    from aiquery.spark.registry import context_for, ledger_for

    if not 0 < fraction <= 1 or min_rows < 0:
        raise ValueError(f"the sample fraction must be in (0, 1] and min_rows 0 or more, not {fraction}, {min_rows}")
    info = context_for(spark)
    ledger = ledger_for(spark)
    coordinator = running_coordinator(spark)
    if ledger is None or coordinator is None:
        raise EstimateError("an estimate reads its sample from the usage ledger, which is off ([usage] enabled)")
    tag = query_tag or f"estimate-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"
    actions = [plan_statement(statement) for statement in statements]
    fraction, runs, counts = _sample(spark, coordinator, actions, tag, fraction, min_rows)
    flush_usage(spark)
    calls = _sampled_calls(spark, ledger.table, runs[-1])
    result = JobEstimate(fraction=fraction, query_tag=runs[-1])
    result.not_counted = [action.note for action in actions if action.note]
    if any(AGGREGATE_CALL.search(statement.sql) for statement in statements):
        result.not_counted.append(
            "ai_agg calls: their requests depend on the groups' sizes, not on the rows, so an estimate run sends none "
            "of them (their values are NULL in it)"
        )
    parallelism = max(1, spark.sparkContext.defaultParallelism)
    for endpoint in sorted(counts):
        seen, sent = counts[endpoint]
        slots, rate_limit = _endpoint_limits(info.settings, endpoint, parallelism)
        found = _endpoint_estimate(endpoint, seen, sent, calls.get(endpoint, []), slots, rate_limit)
        found = replace(found, batch_cost=_batch_cost(info.settings, endpoint, calls.get(endpoint, []), seen, sent))
        result.endpoints.append(found)
        if found.cost is None and found.rows:
            result.not_counted.append(f"the cost of endpoint '{endpoint}': it has no price")
    result.sample_requests, result.sample_cost = _sample_spend(spark, ledger.table, runs)
    result.not_counted.append(
        "rows a later ai_query call gets only because of an earlier call's answers (rows not in the sample get "
        "NULL, so a filter or join on those answers passes fewer rows than the real run would)"
    )
    return result


def _sample(
    spark: SparkSession,
    coordinator: Coordinator,
    actions: Sequence[PlannedStatement],
    tag: str,
    fraction: float,
    min_rows: int,
) -> tuple[float, list[str], dict[str, tuple[int, int]]]:
    """Run the job at ``fraction``, and again with a larger one when a call got fewer than ``min_rows`` sampled.

    Returns the fraction of the last run, the runs' tags, and per endpoint the rows seen and sent in the last run.
    """
    runs = [f"{tag}-1"]
    run_estimate_pass(spark, actions, runs[-1], fraction)
    counts = coordinator.sample_counts(runs[-1])
    wanted = max(
        (min(1.0, 1.2 * min_rows / seen) for seen, sent in counts.values() if sent < min(min_rows, seen)),
        default=None,
    )
    if wanted is not None and wanted > fraction:
        fraction = wanted
        runs.append(f"{tag}-2")
        run_estimate_pass(spark, actions, runs[-1], fraction)
        counts = coordinator.sample_counts(runs[-1])
    return fraction, runs, counts


def _batch_cost(settings: Settings, endpoint: str, calls: list[dict[str, Any]], seen: int, sent: int) -> Span | None:
    """The whole job's cost at ``endpoint``'s batch price, for an endpoint with ``batch = true`` and a price."""
    try:
        found = settings.endpoint(endpoint)
    except AIQueryError:
        return None
    if not found.batch or found.price is None or not calls:
        return None
    price = found.price
    values = [
        price.batch_cost(int(call["input_tokens"] or 0), int(call["output_tokens"] or 0)) or 0.0 for call in calls
    ]
    return scale(values, seen, sent)


def _endpoint_limits(settings: Settings, endpoint: str, parallelism: int) -> tuple[int, float]:
    """Requests the application can have in flight to ``endpoint``, and its most requests per second."""
    try:
        found = settings.endpoint(endpoint)
        slots = found.max_concurrency * parallelism
        rate_limit = found.requests_per_minute / 60 if found.requests_per_minute else math.inf
    except AIQueryError:
        slots, rate_limit = parallelism, math.inf
    return slots, min(rate_limit, CLIENT_REQUESTS_PER_S * parallelism)


def _sampled_calls(spark: SparkSession, table: str, run: str) -> dict[str, list[dict[str, Any]]]:
    """The sample's calls per endpoint, from the ledger: requests, tokens, cost (what it would cost unanswered by
    the store), latency."""
    rows = spark.sql(
        f"""
        SELECT endpoint_name, call_id,
               count_if(NOT cache_hit) AS requests,
               sum(coalesce(input_tokens, 0)) AS input_tokens,
               sum(coalesce(output_tokens, 0)) AS output_tokens,
               sum(CASE WHEN cache_hit THEN avoided_cost ELSE cost END) AS cost,
               max(currency) AS currency,
               avg(CASE WHEN NOT cache_hit THEN latency_ms END) AS latency_ms
        FROM {table}
        WHERE query_tag = {sql_literal(run)} AND estimate
        GROUP BY endpoint_name, call_id
        """
    ).collect()
    found: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        found.setdefault(row.endpoint_name, []).append(row.asDict())
    return found


def _sample_spend(spark: SparkSession, table: str, runs: list[str]) -> tuple[int, dict[str, float]]:
    """HTTP requests the estimate's runs sent, and their cost per currency."""
    tags = ", ".join(sql_literal(run) for run in runs)
    rows = spark.sql(
        f"SELECT currency, count(*) AS requests, sum(cost) AS cost FROM {table} "
        f"WHERE query_tag IN ({tags}) AND estimate AND NOT cache_hit GROUP BY currency"
    ).collect()
    costs = {row.currency: float(row.cost or 0.0) for row in rows if row.currency}
    return sum(int(row.requests) for row in rows), costs


def _endpoint_estimate(
    endpoint: str, seen: int, sent: int, calls: list[dict[str, Any]], slots: int, rate_limit: float
) -> EndpointEstimate:
    def span(values: list[float]) -> Span:
        return scale(values, seen, sent)

    # A call answered from the store would be a request in a run without the store.
    requests = span([max(1, call["requests"]) for call in calls])
    priced = [call for call in calls if call["currency"]]
    cost = span([float(call["cost"] or 0.0) for call in calls]) if priced and len(priced) == len(calls) else None
    latencies = [float(call["latency_ms"]) / 1000 for call in calls if call["latency_ms"] is not None]
    seconds = None
    if latencies:
        latency, error = _mean_and_error(latencies, max(seen, len(latencies)))

        def wall(count: float, each: float) -> float:
            return count / min(slots / max(each, 1e-3), rate_limit)

        seconds = Span(
            wall(requests.value, latency),
            wall(requests.low, latency - Z * error),
            wall(requests.high, latency + Z * error),
        )
    return EndpointEstimate(
        endpoint=endpoint,
        rows=seen,
        sampled=sent,
        requests=requests,
        input_tokens=span([float(call["input_tokens"]) for call in calls]),
        output_tokens=span([float(call["output_tokens"]) for call in calls]),
        cost=cost,
        currency=priced[0]["currency"] if cost is not None else None,
        seconds=seconds,
    )


def scale(values: list[float], seen: int, sent: int) -> Span:
    """The total over ``seen`` rows of a quantity known for the ``values`` of ``sent`` sampled rows.

    The estimate is ``seen / sent`` times the sample's sum; its range, :data:`Z` standard errors either way, for
    a simple random sample drawn without replacement (the finite-population correction makes the range vanish
    when every row was sampled).
    """
    if not values or sent <= 0:
        return Span(0.0, 0.0, 0.0)
    factor = seen / sent
    units = factor * len(values)  # the calls of the whole job the sampled ones stand for
    mean, error = _mean_and_error(values, units)
    return Span(units * mean, max(0.0, units * (mean - Z * error)), units * (mean + Z * error))


def _mean_and_error(values: list[float], population: float) -> tuple[float, float]:
    """The mean of a sample of ``population`` values, and its standard error (0 for fewer than two values)."""
    count = len(values)
    mean = sum(values) / count
    if count < 2:
        return mean, 0.0
    variance = sum((value - mean) ** 2 for value in values) / (count - 1)
    remaining = max(0.0, 1 - count / population) if population > 0 else 0.0
    return mean, math.sqrt(variance / count * remaining)


def _duration(seconds: float) -> str:
    """``42 s``, ``12 min 5 s``, ``3 h 20 min``."""
    whole = round(seconds)
    if whole < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{whole} s"
    minutes, rest = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"
