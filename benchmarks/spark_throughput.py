"""Benchmark: ai_query through Spark SQL against bare aiohttp loops and a hand-written pandas UDF, same run.

    .venv/bin/python benchmarks/spark_throughput.py fixed     # 100 ms latency, 20,000 rows, 2 partitions
    .venv/bin/python benchmarks/spark_throughput.py llm       # latency uniform in 0.5-3 s, 6,000 rows
    .venv/bin/python benchmarks/spark_throughput.py rowwise   # a row-at-a-time Python UDF, for reference

local[2]; 128 requests in flight per worker (two workers); the emulator in its own process; usage recording on
for ai_query (the driver's journal is ingested into Delta after each run, outside the timed part: background
ingestion is set to an hour, so that a Delta commit every 30 s does not land on whichever variant runs then).
Variants alternate within one run and each is repeated; the table gives every run, the medians and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp

from aiquery.gateway import start_gateway

TOKEN = "bench-token"
PER_WORKER = 128
SCENARIOS = {
    "fixed": {"rows": 20000, "gateway": {"latency_ms": 100}},
    "llm": {"rows": 6000, "gateway": {"latency_min_ms": 500, "latency_max_ms": 3000}},
}


async def send_all(url: str, prompts: list[str], concurrency: int) -> list[str]:
    """The hand-written client: a semaphore, one aiohttp session, POST, read JSON, take the text."""
    semaphore = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one(prompt: str) -> str:
            async with semaphore:
                body = {"model": "bench", "messages": [{"role": "user", "content": prompt}]}
                async with session.post(url, json=body, headers=headers) as response:
                    return str((await response.json())["choices"][0]["message"]["content"])

        return list(await asyncio.gather(*(one(p) for p in prompts)))


def _bare_worker(url: str, prompts: list[str], concurrency: int, go: Any, queue: Any) -> None:
    go.wait()  # start together, after both processes have imported everything
    started = time.process_time()
    asyncio.run(send_all(url, prompts, concurrency))
    queue.put(time.process_time() - started)


def bare_loops(url: str, prompts: list[str]) -> dict[str, float]:
    """Two processes, each a bare aiohttp loop with half the rows and 128 in flight; start-up not timed."""
    context = multiprocessing.get_context("spawn")
    queue, go = context.Queue(), context.Event()
    halves = [prompts[0::2], prompts[1::2]]
    processes = [context.Process(target=_bare_worker, args=(url, half, PER_WORKER, go, queue)) for half in halves]
    for process in processes:
        process.start()
    time.sleep(3.0)  # imports done
    wall = time.perf_counter()
    go.set()
    cpu = sum(queue.get() for _ in processes)
    wall = time.perf_counter() - wall
    for process in processes:
        process.join()
    return {"wall": wall, "cpu": cpu}


def handwritten_udf(url: str) -> Any:
    """What a user writes by hand: asyncio.gather over an aiohttp client per Arrow batch."""
    import pandas as pd
    from pyspark.sql.functions import pandas_udf

    def call_batch(prompts: list[str]) -> list[str]:
        return asyncio.run(send_all(url, prompts, PER_WORKER))

    def handwritten(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
        for batch in batches:
            yield pd.Series(call_batch(batch.tolist()))

    handwritten.__annotations__ = {"batches": Iterator[pd.Series], "return": Iterator[pd.Series]}
    return pandas_udf(handwritten, returnType="string")  # type: ignore[call-overload]


def rowwise_udf(url: str) -> Any:
    import urllib.request

    from pyspark.sql.functions import udf

    def one(prompt: str) -> str:
        body = json.dumps({"model": "bench", "messages": [{"role": "user", "content": prompt}]}).encode()
        request = urllib.request.Request(
            url, data=body, headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request) as response:
            return str(json.loads(response.read())["choices"][0]["message"]["content"])

    return udf(one, "string")


def timed_spark(spark: Any, frame: Any) -> dict[str, float]:
    """Evaluate a DataFrame fully (noop sink) and return wall time and the Python workers' CPU time."""
    before = _workers_cpu()
    wall = time.perf_counter()
    frame.write.format("noop").mode("overwrite").save()
    return {"wall": time.perf_counter() - wall, "cpu": _workers_cpu() - before}


def _workers_cpu() -> float:
    """CPU seconds used so far by this benchmark's pyspark daemon and worker processes (its descendants)."""
    parents: dict[int, int] = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                parents[int(pid)] = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue

    def descends_from_us(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == os.getpid():
                return True
        return False

    total = 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    for pid in parents:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"pyspark.daemon" not in cmdline and b"pyspark.worker" not in cmdline:
                continue
            if not descends_from_us(pid):
                continue
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
        except OSError:
            continue
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("scenario", choices=[*SCENARIOS, "rowwise"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument(
        "--only",
        action="append",
        metavar="PREFIX",
        help="run only the variants whose label starts with PREFIX (repeatable), e.g. --only ai_query --only hand",
    )
    args = parser.parse_args()
    scenario = SCENARIOS.get(args.scenario, {"rows": 200, "gateway": {"latency_ms": 100}})
    rows = args.rows or int(scenario["rows"])

    from aiquery.spark.session import local_spark

    work = Path(tempfile.mkdtemp(prefix="aiquery-bench-"))
    config = work / "aiquery.toml"
    config.write_text(
        f'[usage]\ningest_interval = 3600\n\n[endpoints.bench]\napi = "chat"\nmodel = "bench"\n'
        f"max_concurrency = {PER_WORKER}\n"
    )
    with start_gateway(token=TOKEN, **scenario["gateway"]) as gateway:
        os.environ.update({"DATABRICKS_HOST": gateway.url, "DATABRICKS_TOKEN": TOKEN, "AIQUERY_CONFIG": str(config)})
        spark = local_spark("aiquery-bench", warehouse_dir=str(work / "warehouse"))
        import aiquery

        aiquery.register(spark)
        url = gateway.url + "/ai-gateway/mlflow/v1/chat/completions"
        results: dict[str, list[dict[str, float]]] = {}

        def frame(round_number: int) -> Any:
            return spark.range(rows, numPartitions=2).selectExpr(
                f"CONCAT('round {round_number} row ', CAST(id AS STRING), ': summarize this') AS text"
            )

        from aiquery.config import CacheSettings, UsageSettings, load_settings

        usage_on = load_settings()
        usage_off = dataclasses.replace(usage_on, usage=UsageSettings(enabled=False))
        store_off = dataclasses.replace(usage_on, cache=CacheSettings(enabled=False))

        ingested = 0

        def ours(settings: Any, r: int) -> dict[str, float]:
            nonlocal ingested
            aiquery.register(spark, settings=settings)
            timing = timed_spark(spark, frame(r).selectExpr("ai_query('bench', text) AS s"))
            ingested += aiquery.flush_usage(spark)  # not timed
            return timing

        # Every run has prompts of its own (the round number is in them, and each variant's runs are numbered
        # apart), so the answer store, on by default, starts empty for each: this measures its cost, not its hits.
        variants = {
            "ai_query (Spark SQL)": lambda r: ours(usage_on, r),
            "ai_query, answer store off": lambda r: ours(store_off, r),
            "ai_query, usage tracking off": lambda r: ours(usage_off, r),
            "hand-written pandas UDF": lambda r: timed_spark(
                spark, frame(r).select(handwritten_udf(url)("text").alias("s"))
            ),
            "two bare aiohttp loops": lambda r: bare_loops(
                url, [f"round {r} row {i}: summarize this" for i in range(rows)]
            ),
        }
        if args.only:
            variants = {k: v for k, v in variants.items() if any(k.startswith(p) for p in args.only)}
        if args.scenario == "rowwise":
            variants = {
                "row-at-a-time Python UDF": lambda r: timed_spark(
                    spark, frame(r).select(rowwise_udf(url)("text").alias("s"))
                )
            }
        # Warm up every variant once (Python workers started, modules imported) before anything is timed.
        for label, run in variants.items():
            if "bare" not in label:
                warm_rows = rows
                rows = 512
                run(-1)
                rows = warm_rows
        served_before = gateway.stats()["requests"]
        for round_number in range(args.rounds):
            for index, (label, run) in enumerate(variants.items()):
                results.setdefault(label, []).append(run(round_number * 10 + index))
        served = gateway.stats()["requests"] - served_before
        spark.stop()
    expected = rows * args.rounds * len(variants)
    print(
        f"\nscenario {args.scenario}: {rows} rows, 2 partitions, {PER_WORKER} in flight per worker, "
        f"gateway {scenario['gateway']}; {args.rounds} rounds; emulator served {served} (expected {expected}); "
        f"usage rows ingested after the timed runs (warm-ups included): {ingested}\n"
    )
    print("| variant | rows/s per round | median rows/s | client CPU ms/request |")
    print("|---|---|---|---|")
    medians = {}
    for label, runs in results.items():
        rates = [rows / r["wall"] for r in runs]
        medians[label] = statistics.median(rates)
        cpu = statistics.median(r["cpu"] for r in runs) * 1000 / rows
        print(f"| {label} | {', '.join(f'{x:.0f}' for x in rates)} | {medians[label]:.0f} | {cpu:.3f} |")
    if "ai_query (Spark SQL)" in medians:
        ours = medians["ai_query (Spark SQL)"]
        ratios = {
            "ai_query / bare loops": "two bare aiohttp loops",
            "ai_query / hand-written UDF": "hand-written pandas UDF",
            "usage on / off": "ai_query, usage tracking off",
            "answer store on / off": "ai_query, answer store off",
        }
        print(
            "\n"
            + "; ".join(f"{name} = {ours / medians[other]:.3f}" for name, other in ratios.items() if other in medians)
        )
    print(json.dumps({"scenario": args.scenario, "medians": medians}), file=sys.stderr)


if __name__ == "__main__":
    main()
