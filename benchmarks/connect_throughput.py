"""Benchmark: the same ai_query through a Spark Connect client and through a classic session (issue 24; goal: the
Connect client at least 0.95 x the classic session's rows/s).

    .venv/bin/python benchmarks/connect_throughput.py                  # 20,000 rows, 3 rounds each, interleaved
    .venv/bin/python benchmarks/connect_throughput.py --rows 5000 --latency-ms 50

One driver serves both: ``aiquery.connect_server.start`` (local[2]) runs the classic query in its own session and
serves a ``pyspark-client`` process (the JVM-less environment of tests/support/thin_client.py) the same query over
Connect, so executors, coordinator and emulator are the same and only the path of the query differs. Each round
writes the result to Spark's noop sink; the emulator answers after a fixed latency, so the query is bound by
requests in flight, not CPU. The client process starts once and is timed around its write only.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiquery.gateway import start_gateway

TOKEN = "bench-token"
REPOSITORY = Path(__file__).resolve().parents[1]
QUERY = (
    "SELECT ai_query('bench', CONCAT('row ', CAST(id AS STRING), ': summarize this')) AS s FROM range(0, {rows}, 1, 2)"
)
CLIENT = """
import sys, time
from pyspark.sql import SparkSession
spark = SparkSession.builder.remote(sys.argv[1]).getOrCreate()
print("ready", flush=True)
for line in sys.stdin:
    started = time.perf_counter()
    spark.sql(line).write.format("noop").mode("overwrite").save()
    print(time.perf_counter() - started, flush=True)
"""


def measure(server: Any, client_python: Path, work: Path, args: argparse.Namespace) -> dict[str, list[float]]:
    """Seconds per round of the query in the server's own session and through the thin client."""
    # A file, not `python -c`: pyspark's Connect package takes a main module without a file for a doctest run.
    (work / "client.py").write_text(CLIENT)
    # The token in the environment (Spark's client reads it), not on a command line every user can read.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "SPARK_CONNECT_AUTHENTICATE_TOKEN": server.token}
    url = f"sc://localhost:{server.port}"
    client = subprocess.Popen(
        [str(client_python), str(work / "client.py"), url], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env=env,
    )  # fmt: skip
    assert client.stdin is not None and client.stdout is not None
    try:
        assert client.stdout.readline().strip() == "ready"
        sql = QUERY.format(rows=args.rows)

        def classic() -> float:
            started = time.perf_counter()
            server.spark.sql(sql).write.format("noop").mode("overwrite").save()
            return time.perf_counter() - started

        def connect() -> float:
            client.stdin.write(sql + "\n")  # type: ignore[union-attr]
            client.stdin.flush()  # type: ignore[union-attr]
            return float(client.stdout.readline())  # type: ignore[union-attr]

        classic()  # warm-up of both paths (Python workers, code generation, the client's first plan)
        connect()
        walls: dict[str, list[float]] = {"classic session": [], "Spark Connect client": []}
        for _ in range(args.rounds):
            walls["classic session"].append(classic())
            walls["Spark Connect client"].append(connect())
        client.stdin.close()
        client.wait(timeout=60)
        return walls
    finally:
        if client.poll() is None:
            client.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-ms", type=int, default=100)
    args = parser.parse_args()

    sys.path.insert(0, str(REPOSITORY / "tests" / "support"))
    import pyspark
    from thin_client import thin_client_python

    from aiquery.connect_server import start

    client_python = thin_client_python(pyspark.__version__)
    with tempfile.TemporaryDirectory(prefix="aiquery-bench-connect-") as folder, start_gateway(token=TOKEN) as gateway:
        work = Path(folder)
        config = work / "aiquery.toml"
        config.write_text(
            '[endpoints.bench]\napi = "chat"\nmodel = "bench"\nmax_concurrency = 128\n[cache]\nenabled = false\n'
        )
        gateway.configure(latency_ms=args.latency_ms)
        os.environ.update({"DATABRICKS_HOST": gateway.url, "DATABRICKS_TOKEN": TOKEN, "AIQUERY_CONFIG": str(config)})
        server = start(master="local[2]", port=0, token=secrets.token_urlsafe(16), warehouse_dir=work / "wh")
        try:
            walls = measure(server, client_python, work, args)
        finally:
            server.stop()

    rates = {name: [args.rows / wall for wall in values] for name, values in walls.items()}
    medians = {name: statistics.median(values) for name, values in rates.items()}
    print(
        f"\n{args.rows} rows, 2 partitions, local[2], {args.latency_ms} ms latency, 128 requests in flight per worker"
    )
    print("| path | rows/s per round | median rows/s |")
    print("|---|---|---|")
    for name, values in rates.items():
        print(f"| {name} | {', '.join(f'{x:,.0f}' for x in values)} | {medians[name]:,.0f} |")
    ratio = medians["Spark Connect client"] / medians["classic session"]
    print(f"\nConnect / classic = {ratio:.3f} (goal: at least 0.95)")


if __name__ == "__main__":
    main()
