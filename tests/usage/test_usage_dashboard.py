"""The dashboard: every query checked against numbers computed in Python, and the page drawn in Chromium."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from decimal import ROUND_HALF_UP, Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from usage_helpers import record

from aiquery.usage.dashboard import load_queries, render_dashboard
from aiquery.usage.record import UsageRecord
from aiquery.usage.spool import SpoolWriter

pytestmark = pytest.mark.spark

ENDPOINTS = {"chat-a": "gpt-x", "chat-b": "gpt-x", "embed-c": "gte-large"}
PRICED = {"chat-a": "USD", "chat-b": "DBU"}  # embed-c has no price: its cost is NULL
REQUESTERS = ["alice@example.com", "bob@example.com", "carol@example.com"]
TAGS: list[dict[str, str]] = [{"team": "ml"}, {"team": "web", "env": "prod"}, {}]
FAILURES = [(429, "rate limited"), (500, "upstream failed"), (None, "connection reset")]


def dataset() -> list[UsageRecord]:
    """About 100 requests over three days: retries, failures, cache and reasoning tokens, estimates, tags."""
    records = []
    day0 = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
    for call in range(45):
        endpoint = list(ENDPOINTS)[call % 3]
        attempts = 1 + call % 4 % 3  # 1, 2, 3, 1, 1, 2, ...
        final_fails = call % 11 == 5
        moment = day0 + dt.timedelta(days=call % 3, hours=(call * 7) % 24, minutes=59, seconds=call)
        for attempt in range(1, attempts + 1):
            rec = record(
                f"req-{call}-{attempt}",
                call_id=f"call-{call}",
                attempt=attempt,
                event_time=moment + dt.timedelta(seconds=attempt),
                endpoint_name=endpoint,
                destination_model=ENDPOINTS[endpoint],
                requester=REQUESTERS[call % len(REQUESTERS)],
                request_tags=TAGS[call % len(TAGS)],
                query_tag="nightly" if call % 2 else None,
            )
            currency = PRICED.get(endpoint)
            failed = attempt < attempts or final_fails
            if failed:
                status, message = FAILURES[(call + attempt) % len(FAILURES)]
                rec.status_code, rec.error_message = status, message
                rec.latency_ms = None if status is None else 20 + call
                if currency and status is not None:  # an error answer bills nothing; a lost request is unknown
                    rec.cost, rec.currency = 0.0, currency
            else:
                rec.status_code = 200
                rec.input_tokens = 100 + 3 * call
                rec.output_tokens = 0 if endpoint == "embed-c" else 10 + call
                rec.total_tokens = rec.input_tokens + rec.output_tokens
                rec.cache_read_input_tokens = 40 if call % 5 == 0 else None
                rec.output_reasoning_tokens = 4 if call % 6 == 0 else None
                rec.tokens_estimated = endpoint == "embed-c" and call % 2 == 0
                rec.latency_ms = 100 + (call * 37) % 400
                rec.time_to_first_byte_ms = 30 + (call * 13) % 90
                if currency:
                    rec.cost, rec.currency = 0.0025 * (1 + call % 7), currency
            records.append(rec)
    for hit in range(12):  # calls answered from the answer store: usage rows of their own, no HTTP request
        endpoint = list(ENDPOINTS)[hit % 2]
        rec = record(
            f"hit-{hit}",
            call_id=f"hit-call-{hit}",
            attempt=0,
            event_time=day0 + dt.timedelta(days=hit % 3, hours=hit),
            endpoint_name=endpoint,
            destination_model=ENDPOINTS[endpoint],
            requester=REQUESTERS[hit % len(REQUESTERS)],
            cache_hit=True,
        )
        rec.input_tokens, rec.output_tokens = 50 + hit, 7
        rec.total_tokens = rec.input_tokens + rec.output_tokens
        rec.cost, rec.avoided_cost, rec.currency = 0.0, 0.005 * (1 + hit % 3), PRICED[endpoint]
        records.append(rec)
    return records


# ---- the same numbers, computed in Python ---------------------------------------------------------------------
def date(r: UsageRecord) -> dt.date:
    return r.event_time.astimezone(dt.timezone.utc).date()


def tsum(values: Iterable[int | None]) -> int:
    return sum(v for v in values if v is not None)


def percentile(values: Iterable[int | None], p: float) -> float | None:
    data = sorted(v for v in values if v is not None)
    if not data:
        return None
    pos = p * (len(data) - 1)
    low = int(pos)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (pos - low)


def rounded(value: float | None, places: int) -> float | None:
    if value is None:
        return None
    return float(Decimal(repr(value)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


def pct(part: int, whole: int) -> float | None:
    return None if not whole else rounded(100.0 * part / whole, 2)


def failed(status: int | None) -> bool:
    return status is None or status >= 400


def group(records: Iterable[UsageRecord], key: Callable[[UsageRecord], Any]) -> dict[Any, list[UsageRecord]]:
    groups: dict[Any, list[UsageRecord]] = defaultdict(list)
    for r in records:
        groups[key(r)].append(r)
    return groups


def by_tokens(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return sorted(rows, key=lambda row: (-row[1], row[0]))


def store_panels(everything: list[UsageRecord]) -> dict[str, list[tuple[Any, ...]]]:
    hits = [r for r in everything if r.cache_hit]
    per_endpoint = group(everything, lambda r: r.endpoint_name)
    return {
        "Answers from the store": [
            (
                len(hits),
                len(everything) - len(hits),
                rounded(100 * len(hits) / len(everything), 1),
                tsum(r.total_tokens for r in hits),
            )
        ],
        "Answers from the store per endpoint": sorted(
            [
                (
                    e,
                    sum(r.cache_hit for r in v),
                    sum(not r.cache_hit for r in v),
                    tsum(r.total_tokens for r in v if r.cache_hit),
                )
                for e, v in per_endpoint.items()
            ],
            key=lambda row: (-row[1], row[0]),
        ),
        "Daily answers from the store": [
            (d, sum(r.cache_hit for r in v), tsum(r.total_tokens for r in v if r.cache_hit))
            for d, v in sorted(group(everything, date).items())
        ],
    }


def money(records: list[UsageRecord]) -> tuple[float | None, float | None]:
    costs = [r.cost for r in records if r.cost is not None]
    avoided = [r.avoided_cost for r in records if r.avoided_cost is not None]
    return (rounded(sum(costs), 4) if costs else None, rounded(sum(avoided), 4) if avoided else None)


def by_cost(rows: list[tuple[Any, ...]], cost_at: int) -> list[tuple[Any, ...]]:
    # ORDER BY cost DESC, then the grouping columns (Spark puts NULL last when descending)
    return sorted(rows, key=lambda row: (row[cost_at] is None, -(row[cost_at] or 0), row[:cost_at]))


def cost_panels(everything: list[UsageRecord]) -> dict[str, list[tuple[Any, ...]]]:
    priced = [r for r in everything if r.currency is not None]

    def per(key: Callable[[UsageRecord], Any]) -> list[tuple[Any, ...]]:
        return [(*k, *money(v)) for k, v in group(priced, lambda r: (key(r), r.currency)).items()]

    tagged = [(f"{k}={v}", r) for r in priced for k, v in r.request_tags.items()]
    query_rows = [
        (q, c, *money(v), sum(not r.cache_hit for r in v))
        for (q, c), v in group(priced, lambda r: (r.query_tag or "(none)", r.currency)).items()
    ]
    unpriced = [
        (e, m, sum(not r.cache_hit for r in v), tsum(r.total_tokens for r in v if not r.cache_hit))
        for (e, m), v in group(everything, lambda r: (r.endpoint_name, r.destination_model)).items()
        if all(r.currency is None for r in v)
    ]
    return {
        "Cost per currency": sorted(
            (c, *money(v), sum(not r.cache_hit for r in v), sum(bool(r.cache_hit) for r in v))
            for c, v in group(priced, lambda r: r.currency).items()
        ),
        "Daily cost": sorted((d, c, *money(v)) for (d, c), v in group(priced, lambda r: (date(r), r.currency)).items()),
        "Cost per endpoint": by_cost(per(lambda r: r.endpoint_name), 2),
        "Cost per requester": by_cost(per(lambda r: r.requester), 2),
        "Cost per request tag": by_cost(
            [(t, c, *money([r for _, r in v])) for (t, c), v in group(tagged, lambda x: (x[0], x[1].currency)).items()],
            2,
        ),
        "Cost per query tag": by_cost(query_rows, 2)[:50],
        "Endpoints without a price": sorted(unpriced, key=lambda row: (-row[2], row[0])),
    }


def expected(everything: list[UsageRecord]) -> dict[str, list[tuple[Any, ...]]]:
    rs = [r for r in everything if not r.cache_hit]  # every panel but the store's counts HTTP requests only
    by_endpoint = group(rs, lambda r: r.endpoint_name)
    by_day = group(rs, date)
    calls = group(rs, lambda r: r.call_id)
    final = {c: max(v, key=lambda r: r.attempt) for c, v in calls.items()}
    tags = Counter()
    tag_tokens: Counter[str] = Counter()
    for r in rs:
        for k, v in r.request_tags.items():
            tags[f"{k}={v}"] += 1
            tag_tokens[f"{k}={v}"] += r.total_tokens or 0
    errors = group([r for r in rs if r.error_message], lambda r: r.error_message)
    cached = tsum(r.cache_read_input_tokens for r in rs)
    return {
        "Totals": [(len(rs), tsum(r.total_tokens for r in rs), len({r.requester for r in rs}), 3, len(calls))],
        "Daily requests and requesters": [
            (d, len(v), len({r.requester for r in v})) for d, v in sorted(by_day.items())
        ],
        "Top endpoints by tokens": by_tokens(
            [(e, tsum(r.total_tokens for r in v), len(v)) for e, v in by_endpoint.items()]
        ),
        "Top requesters by tokens": by_tokens(
            [(u, tsum(r.total_tokens for r in v), len(v)) for u, v in group(rs, lambda r: r.requester).items()]
        ),
        "Latency and time to first byte per endpoint (ms)": [
            (
                e,
                len(v),
                percentile((r.latency_ms for r in v), 0.5),
                percentile((r.latency_ms for r in v), 0.95),
                percentile((r.time_to_first_byte_ms for r in v), 0.5),
                percentile((r.time_to_first_byte_ms for r in v), 0.95),
            )
            for e, v in sorted(by_endpoint.items())
        ],
        "Daily median latency per endpoint (ms)": [
            (d, e, percentile((r.latency_ms for r in v), 0.5))
            for (d, e), v in sorted(group(rs, lambda r: (date(r), r.endpoint_name)).items())
        ],
        "Status codes": sorted(
            [("no response" if s is None else str(s), len(v)) for s, v in group(rs, lambda r: r.status_code).items()],
            key=lambda row: (-row[1], row[0]),
        ),
        "Error rate per endpoint (%)": sorted(
            [
                (e, len(v), sum(failed(r.status_code) for r in v), pct(sum(failed(r.status_code) for r in v), len(v)))
                for e, v in by_endpoint.items()
            ],
            key=lambda row: (-row[3], row[0]),
        ),
        "Usage by endpoint": sorted(
            [
                (
                    e,
                    len(v),
                    tsum(r.input_tokens for r in v),
                    tsum(r.output_tokens for r in v),
                    tsum(r.total_tokens for r in v),
                )
                for e, v in by_endpoint.items()
            ],
            key=lambda row: (-row[4], row[0]),
        ),
        "Usage by model": sorted(
            [(m, len(v), tsum(r.total_tokens for r in v)) for m, v in group(rs, lambda r: r.destination_model).items()],
            key=lambda row: (-row[2], row[0]),
        ),
        "Usage by requester": sorted(
            [
                (u, len(v), len({r.endpoint_name for r in v}), tsum(r.total_tokens for r in v))
                for u, v in group(rs, lambda r: r.requester).items()
            ],
            key=lambda row: (-row[1], row[0]),
        ),
        "Usage by request tag": sorted(
            [(t, n, tag_tokens[t]) for t, n in tags.items()], key=lambda row: (-row[1], row[0])
        ),
        "Daily tokens per endpoint": [
            (d, e, tsum(r.total_tokens for r in v))
            for (d, e), v in sorted(group(rs, lambda r: (date(r), r.endpoint_name)).items())
        ],
        "Input, output and cached tokens": [
            (
                tsum(r.input_tokens for r in rs),
                tsum(r.output_tokens for r in rs),
                cached,
                pct(cached, tsum(r.input_tokens for r in rs)),
                tsum(r.output_reasoning_tokens for r in rs),
                sum(r.tokens_estimated for r in rs),
            )
        ],
        "Daily input and output tokens": [
            (d, tsum(r.input_tokens for r in v), tsum(r.output_tokens for r in v)) for d, v in sorted(by_day.items())
        ],
        "Tokens per endpoint": [
            (
                e,
                tsum(r.input_tokens for r in v),
                tsum(r.output_tokens for r in v),
                pct(tsum(r.cache_read_input_tokens for r in v), tsum(r.input_tokens for r in v)),
                rounded(tsum(r.total_tokens for r in v) / len([r for r in v if r.total_tokens is not None]), 1),
            )
            for e, v in sorted(by_endpoint.items())
        ],
        "Top error messages": sorted(
            [(m, len(v), len({r.call_id for r in v}), len({r.endpoint_name for r in v})) for m, v in errors.items()],
            key=lambda row: (-row[1], row[0]),
        )[:20],
        "Retries per call": sorted(Counter(len(v) - 1 for v in calls.values()).items()),
        "Calls whose last attempt failed, per endpoint": sorted(
            [
                (e, len(v), sum(failed(final[c].status_code) for c in {r.call_id for r in v}))
                for e, v in group(final.values(), lambda r: r.endpoint_name).items()
            ],
            key=lambda row: (-row[2], row[0]),
        ),
        **store_panels(everything),
        **cost_panels(everything),
    }


def normalise(row: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(float(v) if isinstance(v, (int, float, Decimal)) and not isinstance(v, bool) else v for v in row)


@pytest.fixture(scope="module")
def records() -> list[UsageRecord]:
    return dataset()


@pytest.fixture
def usage_table(spark: Any, make_ledger: Callable[..., Any], records: list[UsageRecord]) -> str:
    """The default table name, ai_gateway.usage, filled through the spool and ingestion."""
    ledger = make_ledger("ai_gateway.usage")
    with SpoolWriter(ledger.spool_dir) as writer:
        for rec in records:
            writer.begin(rec)
            writer.end(rec)
    assert ledger.ingest() == len(records)
    return ledger.table


def test_every_dashboard_query_gives_the_numbers_computed_in_python(
    spark: Any, usage_table: str, records: list[UsageRecord]
) -> None:
    wanted = expected(records)
    queries = load_queries()
    assert sorted(q.name for q in queries) == sorted(wanted)
    for query in queries:
        rows = [normalise(row) for row in spark.sql(query.sql).collect()]  # the file's SQL, unchanged
        assert rows, query.name
        assert rows == [pytest.approx(normalise(row), abs=1e-9) for row in wanted[query.name]], query.name


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.body: dict[str, str | None] = {}
        self.figures: list[dict[str, str | None]] = []
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "body":
            self.body = values
        if tag == "figure":
            self.figures.append(values)
        for name in ("src", "href"):
            link = values.get(name)
            if link is not None and not link.startswith("#"):
                self.external.append(f"{tag} {name}={link}")
        if tag == "link":
            self.external.append("link")


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (apt-get install -y chromium)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    return found


@pytest.mark.slow
def test_dashboard_page_draws_every_chart_in_chromium(spark: Any, usage_table: str, tmp_path: Path) -> None:
    browser = chromium()
    page = render_dashboard(spark, usage_table, tmp_path / "usage_dashboard.html")
    text = page.read_text(encoding="utf-8")
    assert not re.search(r"url\(|@import", text)
    result = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    dom = _Page()
    dom.feed(result.stdout)
    charts = len(load_queries())
    assert dom.body.get("data-dashboard") == "ready", result.stdout[:2000]
    assert dom.body.get("data-errors") == "0", re.findall(
        r'<pre id="script-errors"[^>]*>(.*?)</pre>', result.stdout, re.S
    )
    assert dom.body.get("data-charts") == str(charts)
    assert dom.body.get("data-charts-with-data") == str(charts)
    assert len(dom.figures) == charts
    assert all(int(f.get("data-drawn") or 0) > 0 for f in dom.figures), dom.figures
    assert dom.external == []
