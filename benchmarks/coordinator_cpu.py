"""Benchmark: the driver CPU the coordinator spends per coordinated request, with 64 simulated workers.

    .venv/bin/python benchmarks/coordinator_cpu.py [--workers 64] [--processes 4] [--requests 3000]

A Coordinator runs in this process (its own event-loop thread, journaling to a temporary spool folder, as in a
driver). Simulated workers run in ``--processes`` child processes, each holding ``workers / processes`` real
:class:`~aiquery.coordinator.client.CoordinatorClient` instances on one event loop. Every simulated worker does
what the engine does for each request, without HTTP: one admit per chunk of 256 calls, then per call a begin
record (waiting for the driver's acknowledgement), a simulated response time, an end record; 64 calls in flight
per worker. The result is the CPU time of the coordinator's thread (``time.thread_time`` read on it) divided by
the requests coordinated: leases, begin and end records, journaling and progress. Goal (issue 11): 20 µs or less.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import multiprocessing
import tempfile
import time
from typing import Any

CHUNK = 256


def worker_process(address: Any, journal: str, clients: int, requests: int, latency: float, go: Any, out: Any) -> None:
    from aiquery.config import Endpoint
    from aiquery.coordinator.client import CoordinatorClient
    from aiquery.engine.governor import TaskInfo
    from aiquery.usage.record import UsageRecord

    endpoint = Endpoint(name="bench", api="chat", model="bench", base_url="http://127.0.0.1:9/x")

    async def one_worker(index: int) -> int:
        client = CoordinatorClient(address, journal)
        client.start_task(TaskInfo(task_attempt_id=index, stage_id=1, query="bench"))
        client.limits(endpoint, 1.0 / 64)
        slots = asyncio.Semaphore(64)
        sent = 0

        async def call(number: int) -> None:
            nonlocal sent
            async with slots:
                record = UsageRecord(
                    request_id=f"{client.worker_id}-r{number}",
                    call_id=f"{client.worker_id}-c{number}",
                    attempt=1,
                    event_time=dt.datetime.now(dt.timezone.utc),
                    endpoint_name="bench",
                    destination_model="bench",
                    api_type="mlflow/v1/chat/completions",
                    url="http://127.0.0.1:9/x",
                    requester="bench",
                    user_agent="bench",
                    task_attempt_id=index,
                    query_tag="bench",
                )
                begun = client.begin(record)
                if begun is not None:
                    await begun
                await asyncio.sleep(latency)
                record.status_code, record.latency_ms, record.time_to_first_byte_ms = 200, 100, 90
                record.input_tokens, record.output_tokens, record.total_tokens = 12, 30, 42
                client.end(record)
                sent += 1

        for start in range(0, requests, CHUNK):
            size = min(CHUNK, requests - start)
            admitted = client.admit(endpoint, size, 0.0, None)
            if admitted is not None:
                await admitted
            await asyncio.gather(*(call(start + i) for i in range(size)))
            client.rows_done(size, 0)
        await client.flush()
        await client.aclose()
        return sent

    async def main() -> int:
        go.wait()
        return sum(await asyncio.gather(*(one_worker(i) for i in range(clients))))

    out.put(asyncio.run(main()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--requests", type=int, default=3000, help="requests per simulated worker")
    parser.add_argument("--latency", type=float, default=0.1, help="simulated response time, seconds")
    args = parser.parse_args()
    from aiquery.coordinator.server import Coordinator

    spool = tempfile.mkdtemp(prefix="aiquery-coordinator-bench-")
    coordinator = Coordinator(bind_host="127.0.0.1", advertised_host="127.0.0.1", application="bench")
    address = coordinator.start()
    coordinator.add_journal(spool)
    context = multiprocessing.get_context("spawn")
    go, out = context.Event(), context.Queue()
    per_process = args.workers // args.processes
    processes = [
        context.Process(target=worker_process, args=(address, spool, per_process, args.requests, args.latency, go, out))
        for _ in range(args.processes)
    ]
    for process in processes:
        process.start()
    time.sleep(3.0)  # imports done

    async def thread_cpu() -> float:
        return time.thread_time()

    cpu_before = coordinator._loop.run(thread_cpu())
    wall = time.perf_counter()
    go.set()
    total = sum(out.get() for _ in processes)
    wall = time.perf_counter() - wall
    cpu = coordinator._loop.run(thread_cpu()) - cpu_before
    for process in processes:
        process.join()
    coordinator.rotate(spool)
    coordinator.stop()
    per_request_us = cpu / total * 1e6
    print(
        f"{args.workers} simulated workers in {args.processes} processes, {total:,} requests in {wall:.1f} s "
        f"({total / wall:,.0f}/s); coordinator thread CPU {cpu:.2f} s = {per_request_us:.1f} µs per request "
        f"(goal <= 20 µs)"
    )


if __name__ == "__main__":
    main()
