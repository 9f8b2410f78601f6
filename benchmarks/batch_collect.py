"""Benchmark: batch mode's collect pass against an estimate's pass over the same job (issue 25; goal: within 1.2x).

    .venv/bin/python benchmarks/batch_collect.py                  # 200,000 rows, 2 partitions, 2 rounds each
    .venv/bin/python benchmarks/batch_collect.py --rows 50000 --rounds 3

local[2]; one endpoint with ``batch = true`` at the emulator (no latency). The job is one ``CREATE TABLE ... AS``
of ``ai_query`` over the rows. An estimate's pass sends 1 % of them and counts the rest; a collect pass sends none,
looks every row up in the answer store (all misses) and hands each request to the driver, which keeps it in the
run's state (SQLite, off the coordinator's loop). The passes alternate; each collect pass starts from an empty
state. The driver's peak RSS is read after each pass (it includes the JVM's client side only: the JVM is its own
process).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

from aiquery.gateway import start_gateway

TOKEN = "bench-token"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    from aiquery.jobs.estimate_run import plan_statement, run_dry_pass, run_estimate_pass
    from aiquery.jobs.script import prepare_job
    from aiquery.provider_batches.collect_sink import CollectSink
    from aiquery.provider_batches.run_state import RunState
    from aiquery.spark.call_context import BATCH_COLLECT_SETTING
    from aiquery.spark.registry import context_for
    from aiquery.spark.session import local_spark

    work = Path(tempfile.mkdtemp(prefix="aiquery-bench-"))
    job = f"CREATE TABLE t AS SELECT ai_query('bench', 'row ' || id || ': summarize this') AS s FROM range({args.rows})"
    actions = [plan_statement(statement) for statement in prepare_job(job, {})]
    with start_gateway(token=TOKEN) as gateway:
        config = work / "aiquery.toml"
        config.write_text(
            f'[endpoints.bench]\napi = "chat"\nmodel = "bench"\nbase_url = "{gateway.url}/v1"\nbatch = true\n'
            "max_concurrency = 128\n"
        )
        os.environ.update({"DATABRICKS_HOST": gateway.url, "DATABRICKS_TOKEN": TOKEN, "AIQUERY_CONFIG": str(config)})
        spark = local_spark("aiquery-bench-collect", warehouse_dir=str(work / "warehouse"))
        import aiquery

        aiquery.register(spark)
        coordinator = context_for(spark).service
        assert coordinator is not None
        estimates, collects, collected = [], [], []
        for number in range(args.rounds + 1):  # the first of each is a warm-up
            started = time.perf_counter()
            run_estimate_pass(spark, actions, f"bench-estimate-{number}", 0.01)
            estimate_s = time.perf_counter() - started
            state = RunState(work / f"state-{number}")
            sink = CollectSink(state, 1)
            run = f"bench-collect-{number}"
            coordinator.set_collector(run, sink)
            started = time.perf_counter()
            try:
                run_dry_pass(spark, actions, run, {BATCH_COLLECT_SETTING: run})
            finally:
                coordinator.set_collector(run, None)
                found = sink.close()
            collect_s = time.perf_counter() - started
            state.close()
            if number:
                estimates.append(estimate_s)
                collects.append(collect_s)
                collected.append(found)
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"round {number}: estimate {estimate_s:.1f} s, collect {collect_s:.1f} s ({found:,} requests kept); "
                  f"driver peak RSS {rss:.0f} MiB")  # fmt: skip
        spark.stop()
    estimate, collect = statistics.median(estimates), statistics.median(collects)
    print(f"\n{args.rows:,} rows, local[2]; medians of {args.rounds} rounds after a warm-up")
    print("| pass | seconds per round | median | rows/s |")
    print("|---|---|---|---|")
    print(f"| estimate (1 % sent) | {', '.join(f'{x:.1f}' for x in estimates)} | {estimate:.1f} | "
          f"{args.rows / estimate:,.0f} |")  # fmt: skip
    print(f"| collect (none sent) | {', '.join(f'{x:.1f}' for x in collects)} | {collect:.1f} | "
          f"{args.rows / collect:,.0f} |")  # fmt: skip
    print(f"collect / estimate = {collect / estimate:.2f} (goal: at most 1.2); requests kept per pass: {collected}")


if __name__ == "__main__":
    main()
