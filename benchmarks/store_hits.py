"""Benchmark: a query whose answers are all in the answer store (issue 12; goal: at least 20,000 rows/s).

    .venv/bin/python benchmarks/store_hits.py                 # 200,000 rows, 2 partitions, disk store
    .venv/bin/python benchmarks/store_hits.py --rows 50000 --rounds 3

local[2]; the emulator answers at once. The first run pays for every row (it fills the store; timed too, for
reference); every later run of the same query is answered from the store through the coordinator, and the
emulator must not see one more request. Wall time is that of writing the result to Spark's noop sink; the usage
rows of the hits are ingested after each round, outside the timed part.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from aiquery.gateway import start_gateway

TOKEN = "bench-token"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from aiquery.spark.session import local_spark

    work = Path(tempfile.mkdtemp(prefix="aiquery-bench-"))
    config = work / "aiquery.toml"
    config.write_text('[endpoints.bench]\napi = "chat"\nmodel = "bench"\nmax_concurrency = 128\n')
    with start_gateway(token=TOKEN) as gateway:
        os.environ.update({"DATABRICKS_HOST": gateway.url, "DATABRICKS_TOKEN": TOKEN, "AIQUERY_CONFIG": str(config)})
        spark = local_spark("aiquery-bench-store", warehouse_dir=str(work / "warehouse"))
        import aiquery

        aiquery.register(spark)
        query = spark.range(args.rows, numPartitions=2).selectExpr(
            "ai_query('bench', CONCAT('row ', CAST(id AS STRING), ': summarize this')) AS s"
        )

        def timed() -> float:
            started = time.perf_counter()
            query.write.format("noop").mode("overwrite").save()
            return time.perf_counter() - started

        fill = timed()
        aiquery.flush_usage(spark)
        paid = gateway.stats()["requests"]
        rounds = []
        for _ in range(args.rounds):
            rounds.append(timed())
            aiquery.flush_usage(spark)
        resent = gateway.stats()["requests"] - paid
        hits = spark.sql("SELECT count_if(cache_hit) AS hits FROM ai_gateway.usage").collect()[0].hits
        spark.stop()

    rates = [args.rows / wall for wall in rounds]
    print(f"\n{args.rows} rows, 2 partitions, local[2]; emulator with no latency")
    print(f"first run (pays every row, fills the store): {args.rows / fill:,.0f} rows/s, {paid} requests")
    print("| run | rows/s per round | median rows/s | requests sent |")
    print("|---|---|---|---|")
    print(
        f"| all answers in the store | {', '.join(f'{x:,.0f}' for x in rates)} | {statistics.median(rates):,.0f} "
        f"| {resent} |"
    )
    print(f"usage rows marked cache_hit: {hits} (expected {args.rows * args.rounds})")


if __name__ == "__main__":
    main()
