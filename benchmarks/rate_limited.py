"""Benchmark: ai_query against a rate-limited endpoint, with and without a configured budget.

    .venv/bin/python benchmarks/rate_limited.py [--rows 3000] [--rps 100]

The emulator accepts 100 requests/s (a token bucket holding one second's worth) and answers 429 with
Retry-After beyond it; 100 ms latency. 3,000 rows in 2 partitions run on local[2], so two Python workers share
the endpoint. Two runs:

- ``requests_per_minute = 6000`` configured: the budget is the application's, split between the workers.
  Goal: done within 1.15 x 30 s, no failed row, fewer than 5 % of requests answered 429.
- no limit configured: the engine must find the limit from the 429s. Goal: within 1.3 x 30 s, no failed row.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from aiquery.gateway import start_gateway

TOKEN = "bench-token"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--rps", type=float, default=100.0)
    args = parser.parse_args()
    from aiquery.spark.session import local_spark

    work = Path(tempfile.mkdtemp(prefix="aiquery-ratelimit-"))
    config = work / "aiquery.toml"
    config.write_text(
        "[endpoints.limited]\napi = 'chat'\nmax_concurrency = 128\n"
        f"requests_per_minute = {int(args.rps * 60)}\n\n"
        "[endpoints.unlimited]\napi = 'chat'\nmax_concurrency = 128\n\n"
        "[endpoints.warmup]\napi = 'chat'\n"
    )
    ideal = args.rows / args.rps
    report = []
    with start_gateway(token=TOKEN, latency_ms=100, rate_limit_rps=args.rps) as gateway:
        os.environ.update({"DATABRICKS_HOST": gateway.url, "DATABRICKS_TOKEN": TOKEN, "AIQUERY_CONFIG": str(config)})
        spark = local_spark("aiquery-ratelimit-bench", warehouse_dir=str(work / "warehouse"))
        import aiquery

        aiquery.register(spark)
        spark.range(200, numPartitions=2).selectExpr("CAST(id AS STRING) AS t").selectExpr(
            "ai_query('warmup', t)"
        ).write.format("noop").mode("overwrite").save()  # start the Python workers before timing
        print("warm", flush=True)
        for endpoint, goal in (("limited", 1.15), ("unlimited", 1.3)):
            time.sleep(2.0)  # let the emulator's bucket refill
            gateway.reset()
            frame = spark.range(args.rows, numPartitions=2).selectExpr(
                f"ai_query('{endpoint}', CONCAT('{endpoint} row ', CAST(id AS STRING)), failOnError => false) AS r"
            )
            started = time.perf_counter()
            failed = frame.where("r.errorMessage IS NOT NULL").count()
            wall = time.perf_counter() - started
            stats = gateway.stats()
            log = gateway.requests()
            start = min(entry["time"] for entry in log)
            per_second: dict[int, list[int]] = {}
            for entry in log:
                bucket = per_second.setdefault(int(entry["time"] - start), [0, 0])
                bucket[0 if entry["status"] == 200 else 1] += 1
            timeline = " ".join(f"{ok}/{limited}" for _, (ok, limited) in sorted(per_second.items()))
            print(f"{endpoint}: accepted/429 per second: {timeline}", flush=True)
            rejected = int(stats["by_status"].get("429", 0))
            print("done", endpoint, wall, flush=True)
            report.append(
                {
                    "endpoint": endpoint,
                    "configured_rpm": int(args.rps * 60) if endpoint == "limited" else None,
                    "wall_s": round(wall, 1),
                    "ratio_to_ideal": round(wall / ideal, 3),
                    "goal": goal,
                    "failed_rows": failed,
                    "requests": stats["requests"],
                    "answered_429": rejected,
                    "share_429": round(rejected / max(1, stats["requests"]), 4),
                }
            )
        aiquery.flush_usage(spark)
        spark.stop()
    print(f"\n{args.rows} rows, 2 workers, emulator limit {args.rps:g} requests/s (ideal {ideal:.0f} s)\n")
    print("| endpoint | configured RPM | wall s | x ideal (goal) | failed rows | requests | 429s | 429 share |")
    print("|---|---|---|---|---|---|---|---|")
    for row in report:
        print(
            f"| {row['endpoint']} | {row['configured_rpm'] or 'none'} | {row['wall_s']} | "
            f"{row['ratio_to_ideal']} (<= {row['goal']}) | {row['failed_rows']} | {row['requests']} | "
            f"{row['answered_429']} | {row['share_429']:.1%} |"
        )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
