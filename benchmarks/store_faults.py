"""Benchmark: a query's time with a faulty answer store against the same query with the store off (issue 22).

    .venv/bin/python benchmarks/store_faults.py                    # 300 rows, 10 partitions, 75 ms, 5 rounds
    .venv/bin/python benchmarks/store_faults.py --rows 1000 --partitions 3 --latency-ms 50 --rounds 3

Variants, alternated within each round on one local[2] session (one task per partition, so one lookup each):
the store off; a healthy SQLite store, new and empty each time (what the store costs when it answers nothing);
a Redis URL whose port accepts connections and never answers; the SQLite store, holding every
row's answer, locked by another process (``BEGIN EXCLUSIVE``); another SQLite store with every row's answer
replaced by garbage. Every variant sends every row (a faulty store answers nothing), so the emulator must see
rows x variants x rounds requests. Goal: each faulty variant's median time within 1.2 x the store-off median.
"""

from __future__ import annotations

import argparse
import dataclasses
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from aiquery.config import CacheSettings, Settings, UsageSettings
from aiquery.gateway import start_gateway
from aiquery.store.disk import FILE_NAME

TOKEN = "bench-token"
LOCKER = "import sqlite3, sys\ndb = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
LOCKER += "db.execute('BEGIN EXCLUSIVE')\nprint('locked', flush=True)\nsys.stdin.read()\n"


def blackhole() -> tuple[int, threading.Event]:
    """A loopback port that accepts connections and never answers, until the event is set."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.2)
    stop, held = threading.Event(), []

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue
        listener.close()

    threading.Thread(target=accept, daemon=True).start()
    return int(listener.getsockname()[1]), stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--partitions", type=int, default=10)
    parser.add_argument("--latency-ms", type=int, default=75)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    from aiquery.spark.session import local_spark

    work = Path(tempfile.mkdtemp(prefix="aiquery-bench-"))
    with start_gateway(token=TOKEN) as gateway:
        gateway.configure(latency_ms=args.latency_ms)
        spark = local_spark("aiquery-bench-store-faults", warehouse_dir=str(work / "warehouse"))
        import aiquery

        base = Settings(
            host=gateway.url, environ={"DATABRICKS_TOKEN": TOKEN}, usage=UsageSettings(dir=str(work / "usage"))
        ).with_endpoint("bench", api="chat", model="bench")
        # The locked and the garbage store are two stores (two usage folders): the breaker the lock opens must not
        # keep the garbage from being read.
        locked_file = work / "usage" / "answers" / FILE_NAME
        garbage_base = dataclasses.replace(base, usage=UsageSettings(dir=str(work / "usage-garbage")))
        garbage_file = work / "usage-garbage" / "answers" / FILE_NAME
        port, stop = blackhole()
        query = f"SELECT ai_query('bench', 'Item ' || id) AS d FROM range(0, {args.rows}, 1, {args.partitions})"

        def run(cache: CacheSettings | None, settings: Settings = base) -> float:
            aiquery.register(spark, settings=dataclasses.replace(settings, cache=cache or CacheSettings()))
            spark.conf.set("aiquery.cache.enabled", "true" if cache is not None else "false")
            started = time.perf_counter()
            rows = spark.sql(query).collect()
            took = time.perf_counter() - started
            assert len(rows) == args.rows and all(row.d for row in rows)
            return took

        def locked() -> float:
            locker = subprocess.Popen(
                [sys.executable, "-c", LOCKER, str(locked_file)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
            try:
                assert locker.stdout is not None and locker.stdout.readline().strip() == b"locked"
                return run(CacheSettings())
            finally:
                locker.kill()
                locker.wait()

        def garbage() -> float:
            with sqlite3.connect(garbage_file) as db:
                db.execute("UPDATE answers SET answer = 'garbage ' || fingerprint")
            return run(CacheSettings(), garbage_base)

        fresh = iter(range(1_000_000))

        def healthy() -> float:  # a new, empty store each time: every row a miss, as with the faulty stores
            folder = work / f"usage-healthy-{next(fresh)}"
            return run(CacheSettings(), dataclasses.replace(base, usage=UsageSettings(dir=str(folder))))

        run(CacheSettings())  # fills the stores and warms the workers
        run(CacheSettings(), garbage_base)
        variants: dict[str, Any] = {
            "store off": lambda: run(None),
            "healthy store, every row a miss": healthy,
            "Redis that never answers": lambda: run(CacheSettings(url=f"redis://127.0.0.1:{port}/0")),
            "SQLite locked by another process": locked,
            "SQLite full of garbage": garbage,
        }
        times: dict[str, list[float]] = {name: [] for name in variants}
        sent = gateway.stats()["requests"]
        for _ in range(args.rounds):
            for name, variant in variants.items():
                times[name].append(variant())
                time.sleep(1.0)  # the garbage variant's answers are written back before the next round
        resent = gateway.stats()["requests"] - sent
        stop.set()
        spark.stop()

    off = statistics.median(times["store off"])
    print(f"\n{args.rows} rows, {args.partitions} partitions, local[2]; emulator latency {args.latency_ms} ms")
    print("| variant | seconds per round | median s | / store off |")
    print("|---|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {', '.join(f'{x:.2f}' for x in values)} | {median:.2f} | {median / off:.2f} |")
    expected = args.rows * len(variants) * args.rounds
    print(f"requests sent: {resent} (expected {expected}: every row once per run)")


if __name__ == "__main__":
    main()
