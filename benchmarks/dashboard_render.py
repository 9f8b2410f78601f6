"""Benchmark: the usage dashboard rendered from a ledger of 100,000 requests (issue 13: goal under 5 s).

    .venv/bin/python benchmarks/dashboard_render.py [--rows 100000] [--rounds 5]

The ledger is filled the way the product fills it (spool journal, then ingestion into Delta), with requests
spread over 30 days, 6 endpoints in two currencies and one without a price, 50 requesters, request and query
tags, retries, failures and answers from the store. Then ``render_dashboard`` runs every query of
``sql/dashboard`` and writes the page; each round is timed from the call to the file written.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import tempfile
import time
from pathlib import Path

from aiquery.config import UsageSettings
from aiquery.spark.session import local_spark
from aiquery.usage.dashboard import load_queries, render_dashboard
from aiquery.usage.ingest import UsageLedger
from aiquery.usage.record import UsageRecord
from aiquery.usage.spool import SpoolWriter

ENDPOINTS = {  # name: (model, currency or None)
    "chat-gpt": ("gpt-6.2-sol", "USD"),
    "chat-claude": ("claude-opus-4-5", "USD"),
    "chat-gemini": ("gemini-2.5-flash", "USD"),
    "dbx-llama": ("databricks-meta-llama-3-3-70b-instruct", "DBU"),
    "dbx-embed": ("databricks-gte-large-en", "DBU"),
    "my-finetune": ("my-finetune", None),
}


def records(count: int, seed: int = 7) -> list[UsageRecord]:
    rng = random.Random(seed)
    start = dt.datetime(2026, 10, 1, tzinfo=dt.timezone.utc)
    out = []
    for i in range(count):
        endpoint = rng.choice(list(ENDPOINTS))
        model, currency = ENDPOINTS[endpoint]
        hit = rng.random() < 0.1
        rec = UsageRecord(
            request_id=f"r{i}",
            call_id=f"c{i // 2}",
            attempt=0 if hit else 1 + (i % 2),
            event_time=start + dt.timedelta(seconds=rng.uniform(0, 30 * 86_400)),
            endpoint_name=endpoint,
            destination_model=model,
            api_type="mlflow/v1/chat/completions",
            url="http://127.0.0.1:9/ai-gateway/mlflow/v1/chat/completions",
            requester=f"user{rng.randrange(50)}@example.com",
            user_agent="aiquery-bench",
            request_tags={"team": rng.choice(["ml", "web", "data"]), "job": f"job-{rng.randrange(20)}"},
            request_hash=f"h{i}",
            query_tag=f"nightly-{rng.randrange(200)}",
        )
        rec.input_tokens = rng.randrange(50, 4000)
        rec.output_tokens = 0 if endpoint == "dbx-embed" else rng.randrange(1, 800)
        rec.total_tokens = rec.input_tokens + rec.output_tokens
        if hit:
            rec.cache_hit = True
            rec.cost = 0.0 if currency else None
            rec.avoided_cost = rec.total_tokens * 2e-6 if currency else None
        else:
            failed = rng.random() < 0.05
            rec.status_code = rng.choice([429, 500, 400]) if failed else 200
            rec.latency_ms = rng.randrange(50, 5000)
            rec.time_to_first_byte_ms = rec.latency_ms // 3
            rec.error_message = "failed" if failed else None
            rec.cost = (0.0 if failed else rec.total_tokens * 3e-6) if currency else None
        rec.currency = currency
        out.append(rec)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="aiquery-dashboard-bench-"))
    spark = local_spark("aiquery-dashboard-bench", warehouse_dir=str(work / "warehouse"))
    ledger = UsageLedger(spark, UsageSettings(table="ai_gateway.usage", dir=str(work / "usage")))
    filled = time.perf_counter()
    with SpoolWriter(ledger.spool_dir) as writer:
        for rec in records(args.rows):
            writer.begin(rec)
            writer.end(rec)
    ingested = ledger.ingest()
    filled = time.perf_counter() - filled
    queries = len(load_queries())
    timings = []
    for round_number in range(args.rounds):
        started = time.perf_counter()
        render_dashboard(spark, ledger.table, work / f"dashboard-{round_number}.html")
        timings.append(time.perf_counter() - started)
    spark.stop()
    warm = timings[1:] or timings
    print(
        f"\n{ingested:,} usage rows (filled and ingested in {filled:.1f} s, not timed); {queries} dashboard queries\n"
        f"render_dashboard per round: {', '.join(f'{t:.2f} s' for t in timings)}\n"
        f"first render (the JVM still compiling Spark's code paths): {timings[0]:.2f} s; later renders: median "
        f"{statistics.median(warm):.2f} s, slowest {max(warm):.2f} s (goal: under 5 s)"
    )


if __name__ == "__main__":
    main()
