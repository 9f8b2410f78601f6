"""Benchmark: skewed partitions against a rate-limited endpoint, the budget shared by the coordinator.

    .venv/bin/python benchmarks/shared_budget.py [--rps 100] [--scenarios two,four]

The emulator accepts ``--rps`` requests/s (a token bucket holding one second's worth) and answers 429 with
Retry-After beyond it; 100 ms latency. Two scenarios, each run with ``requests_per_minute = rps x 60`` configured
and with no budget configured (the pace is learned from 429s):

- ``two``: local[2], 3,000 rows in two partitions of 2,700 and 300 rows (ideal 30 s at 100/s);
- ``four``: local[4], 4,000 rows in four partitions of 60 / 20 / 10 / 10 % (ideal 40 s).

Time is measured from the emulator's first request to its last. Goals (issue 11): configured within 1.15 x the
ideal and under 5 % of requests answered 429; learned within 1.3 x and under 10 %; no failed row.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TOKEN = "bench-token"
SCENARIOS = {"two": ("local[2]", 3000, (0.9, 0.1)), "four": ("local[4]", 4000, (0.6, 0.2, 0.1, 0.1))}


def run_scenario(name: str, rps: float, gateway_url: str, work: Path) -> list[dict[str, Any]]:
    """One Spark application per scenario (its own master), in a child process; returns its report rows."""
    script = work / f"{name}.py"
    script.write_text(_CHILD)
    env = {**os.environ, "DATABRICKS_HOST": gateway_url, "DATABRICKS_TOKEN": TOKEN}
    done = subprocess.run(
        [sys.executable, str(script), name, str(rps), str(work)], env=env, capture_output=True, text=True, timeout=900
    )
    if done.returncode != 0:
        raise SystemExit(f"scenario {name} failed:\n{done.stderr[-3000:]}")
    for line in done.stdout.splitlines():
        if "per second" in line:
            print(f"{name} {line}", flush=True)
    if os.environ.get("AIQUERY_BENCH_DEBUG"):
        print("\n".join(line for line in done.stderr.splitlines() if "aiquery" in line), flush=True)
    return [json.loads(line[7:]) for line in done.stdout.splitlines() if line.startswith("RESULT ")]


_CHILD = r"""
import json, os, sys, time, dataclasses
from pathlib import Path
name, rps, work = sys.argv[1], float(sys.argv[2]), Path(sys.argv[3])
master, rows, shares = {"two": ("local[2]", 3000, (0.9, 0.1)), "four": ("local[4]", 4000, (0.6, 0.2, 0.1, 0.1))}[name]
import logging
if os.environ.get("AIQUERY_BENCH_DEBUG"):
    logging.basicConfig(level=logging.WARNING, format="%(relativeCreated)8.0f %(name)s %(message)s")
    logging.getLogger("aiquery.limiter").setLevel(logging.DEBUG)
import aiquery
from aiquery.config import load_settings
from aiquery.gateway.handle import GatewayHandle
from aiquery.spark.session import local_spark
import os
spark = local_spark(f"aiquery-shared-budget-{name}", master=master, warehouse_dir=str(work / f"wh-{name}"),
                    extra_conf={"spark.driver.host": "127.0.0.1"})
settings = load_settings()
settings = settings.with_endpoint("limited", api="chat", max_concurrency=128, requests_per_minute=int(rps * 60))
settings = settings.with_endpoint("learned", api="chat", max_concurrency=128)
settings = settings.with_endpoint("warmup", api="chat")
aiquery.register(spark, settings=settings)
gateway = GatewayHandle(os.environ["DATABRICKS_HOST"], os.environ["DATABRICKS_TOKEN"])
bounds = [0]
for share in shares:
    bounds.append(bounds[-1] + round(rows * share))
parts = len(shares)
def rows_of(p):
    return range(bounds[p], bounds[p + 1])
spark.sparkContext.parallelize(range(parts), parts).flatMap(rows_of).map(lambda i: (str(i),)).toDF(["t"]) \
    .createOrReplaceTempView("skewed")
spark.sql("SELECT ai_query('warmup', t) FROM skewed LIMIT 400").collect()  # start the Python workers first
ideal = rows / rps
for endpoint, goal_time, goal_share in (("limited", 1.15, 0.05), ("learned", 1.3, 0.10)):
    time.sleep(2.0)  # the emulator's bucket refills
    gateway.reset()
    started = time.perf_counter()
    failed = spark.sql(
        f"SELECT count_if(r.errorMessage IS NOT NULL) FROM (SELECT ai_query('{endpoint}', "
        f"'{endpoint} row ' || t, failOnError => false) AS r FROM skewed)"
    ).first()[0]
    wall = time.perf_counter() - started
    log = gateway.requests()
    times = sorted(entry["time"] for entry in log)
    span = times[-1] - times[0]
    limited = sum(1 for entry in log if entry["status"] == 429)
    per_second = {}
    for entry in log:
        bucket = per_second.setdefault(int(entry["time"] - times[0]), [0, 0])
        bucket[0 if entry["status"] == 200 else 1] += 1
    print(endpoint, "accepted/429 per second:", " ".join(f"{a}/{b}" for _, (a, b) in sorted(per_second.items())),
          flush=True)
    print("RESULT " + json.dumps({
        "scenario": name, "master": master, "partitions": [bounds[p + 1] - bounds[p] for p in range(parts)],
        "endpoint": endpoint, "span_s": round(span, 1), "wall_s": round(wall, 1), "ideal_s": ideal,
        "ratio": round(span / ideal, 3), "goal_ratio": goal_time, "requests": len(log), "answered_429": limited,
        "share_429": round(limited / max(1, len(log)), 4), "goal_share": goal_share, "failed_rows": failed,
    }), flush=True)
spark.stop()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rps", type=float, default=100.0)
    parser.add_argument("--scenarios", default="two,four")
    args = parser.parse_args()
    from aiquery.gateway import start_gateway

    work = Path(tempfile.mkdtemp(prefix="aiquery-shared-budget-"))
    report: list[dict[str, Any]] = []
    with start_gateway(token=TOKEN, latency_ms=100, rate_limit_rps=args.rps) as gateway:
        for name in args.scenarios.split(","):
            started = time.perf_counter()
            report += run_scenario(name, args.rps, gateway.url, work)
            print(f"scenario {name} took {time.perf_counter() - started:.0f} s", flush=True)
    print("\n| scenario | partitions | budget | span s | x ideal (goal) | requests | 429 share (goal) | failed rows |")
    print("|---|---|---|---|---|---|---|---|")
    for row in report:
        budget = "configured" if row["endpoint"] == "limited" else "learned"
        print(
            f"| {row['master']} | {'/'.join(map(str, row['partitions']))} | {budget} | {row['span_s']} | "
            f"{row['ratio']} (<= {row['goal_ratio']}) | {row['requests']} | {row['share_429']:.1%} "
            f"(< {row['goal_share']:.0%}) | {row['failed_rows']} |"
        )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
