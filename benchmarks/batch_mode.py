"""Benchmark: batch mode over a 200,000-row job against the emulator (issue 25).

    .venv/bin/python benchmarks/batch_mode.py collect              # 200,000 rows, 3 rounds after a warm-up
    .venv/bin/python benchmarks/batch_mode.py store                # 50,000 and 200,000 lines, one process each
    .venv/bin/python benchmarks/batch_mode.py collect --rows 50000 --rounds 2

Goals: (a) ``collect``: batch mode's collect pass within 1.2 x an estimate's pass over the same job; (b) ``store``:
a batch's results stored at 20,000 rows/s or more, with the driver's peak memory bounded (it must not grow with
the batch's size).

``collect``: local[2]; one endpoint with ``batch = true`` and a provider ``base_url`` at the emulator (its own
process, no latency); the job is one ``CREATE TABLE ... AS`` of ``ai_query`` over the rows. The estimate's pass
(1 % of the rows sent, the rest counted) and the collect pass alternate; each collect pass starts from an empty
run state and runs as ``aiquery run --batch`` runs it (:func:`aiquery.jobs.batch_run` ``_collect``: the state's
sink on the coordinator, every row looked up in the answer store, each miss handed to the driver and kept in the
state). The collect pass is timed until its last request is in the state.

``store``: ``provider_batch_store.py`` in a process of its own per size and run (so that each peak RSS is its
own): the requests put in a run's state, submitted as OpenAI batches of 50,000 lines, waited for, then the store
step timed alone (each results line streamed, read by the live adapter, kept in the state, given its usage
record). Each size runs twice: untraced for the rates and the RSS (which includes the 200,000 requests the
benchmark itself holds), then with ``tracemalloc`` for the peak of what the store step allocates.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aiquery.gateway import start_gateway

TOKEN = "bench-token"
HERE = Path(__file__).resolve().parent


def collect(rows: int, rounds: int) -> None:
    from aiquery.jobs.batch_run import _collect
    from aiquery.jobs.estimate_run import plan_statement, run_estimate_pass
    from aiquery.jobs.script import prepare_job
    from aiquery.provider_batches.run_state import RunState
    from aiquery.spark.registry import context_for
    from aiquery.spark.session import local_spark

    work = Path(tempfile.mkdtemp(prefix="aiquery-bench-"))
    job = f"CREATE TABLE t AS SELECT ai_query('bench', 'row ' || id || ': summarize this') AS s FROM range({rows})"
    actions = [plan_statement(statement) for statement in prepare_job(job, {})]
    with start_gateway(token=TOKEN) as gateway:
        config = work / "aiquery.toml"
        config.write_text(
            f'[endpoints.bench]\napi = "chat"\nmodel = "bench"\nbase_url = "{gateway.url}/v1"\nbatch = true\n'
            f'max_concurrency = 128\n[usage]\ndir = "{work / "usage"}"\n'
        )
        os.environ.update({"DATABRICKS_HOST": gateway.url, "DATABRICKS_TOKEN": TOKEN, "AIQUERY_CONFIG": str(config)})
        spark = local_spark("aiquery-bench-batch-mode", warehouse_dir=str(work / "warehouse"))
        import aiquery

        aiquery.register(spark)
        coordinator = context_for(spark).service
        assert coordinator is not None
        estimates: list[float] = []
        collects: list[float] = []
        kept: list[int] = []
        for number in range(rounds + 1):  # round 0 warms both up and is not counted
            started = time.perf_counter()
            run_estimate_pass(spark, actions, f"bench-estimate-{number}", 0.01)
            estimate_s = time.perf_counter() - started
            state = RunState(work / f"state-{number}")
            started = time.perf_counter()
            new = _collect(spark, coordinator, state, actions, f"bench-{number}", 1)
            collect_s = time.perf_counter() - started
            state.close()
            print(f"round {number}: estimate {estimate_s:.2f} s, collect {collect_s:.2f} s ({new:,} requests kept)")
            if number:
                estimates.append(estimate_s)
                collects.append(collect_s)
                kept.append(new)
        spark.stop()
    estimate, collected = statistics.median(estimates), statistics.median(collects)
    ratios = [c / e for c, e in zip(collects, estimates, strict=True)]
    print(f"\n{rows:,} rows, local[2], load average {os.getloadavg()[0]:.1f}; {rounds} rounds after a warm-up")
    print("| pass | seconds per round | median | rows/s |")
    print("|---|---|---|---|")
    print(f"| estimate (1 % sent) | {_list(estimates)} | {estimate:.2f} | {rows / estimate:,.0f} |")
    print(f"| collect (none sent, all kept) | {_list(collects)} | {collected:.2f} | {rows / collected:,.0f} |")
    print(
        f"collect / estimate per round {_list(ratios)}, of the medians **{collected / estimate:.2f}** (goal: at most "
        f"1.2); requests kept per pass: {kept}"
    )


def store(sizes: list[int]) -> None:
    results = []
    for rows in sizes:
        plain, traced = (_store_run(rows, trace) for trace in (False, True))
        rate = re.search(r"= ([\d,]+) rows/s", plain)
        cpu_rate = re.search(r"= ([\d,]+) rows per CPU second", plain)
        memory = re.search(r"peak RSS before the store (\d+) MiB, after (\d+) MiB", plain)
        heap = re.search(r"Python heap peak during the store ([\d.]+) MiB", traced)
        assert rate and cpu_rate and memory and heap, plain + traced
        results.append((rows, rate[1], cpu_rate[1], f"{memory[1]} / {memory[2]}", heap[1]))
    print(f"load average {os.getloadavg()[0]:.1f}")
    print("| lines | store rows/s (wall) | rows per driver CPU second | peak RSS before / after the store (MiB) "
          "| Python heap peak during the store (MiB, traced run) |")  # fmt: skip
    print("|---|---|---|---|---|")
    for row in results:
        print(f"| {row[0]:,} | {' | '.join(row[1:])} |")


def _store_run(rows: int, trace: bool) -> str:
    """``provider_batch_store.py`` over ``rows`` lines in a process of its own; its output."""
    command = [sys.executable, str(HERE / "provider_batch_store.py"), "--rows", str(rows), *(["--trace"] * trace)]
    found = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    print(found)
    return found


def _list(values: list[float]) -> str:
    return ", ".join(f"{value:.2f}" for value in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["collect", "store"])
    parser.add_argument("--rows", type=int, default=200_000, help="collect: the job's rows")
    parser.add_argument("--rounds", type=int, default=3, help="collect: timed rounds of each pass")
    parser.add_argument("--sizes", default="50000,200000", help="store: batch run sizes, comma-separated")
    args = parser.parse_args()
    if args.part == "collect":
        collect(args.rows, args.rounds)
    else:
        store([int(size) for size in args.sizes.split(",")])


if __name__ == "__main__":
    main()
