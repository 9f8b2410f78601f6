"""Throughput of the gateway emulator: small chat requests over keep-alive connections on loopback.

The emulator runs in its own process (as in the tests); the load comes from one or more separate client
processes, each an aiohttp session with its share of the connections. The run stops after ``--requests``
requests or ``--duration`` seconds, whichever comes first. Reported: requests/s, the emulator's CPU seconds
per request (from /proc, so Linux only), and the status counts as both sides saw them.

    python benchmarks/emulator_throughput.py --connections 64
    python benchmarks/emulator_throughput.py --connections 256 --latency-ms 100 --requests 50000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

# Run from a checkout without installing: the package is one directory up.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiquery.gateway import start_gateway

TOKEN = "benchmark-token"
ROUTE = "/ai-gateway/mlflow/v1/chat/completions"


def process_cpu_seconds(pid: int) -> float | None:
    """User plus system CPU seconds of a process, from /proc (None where there is no /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _load(url: str, connections: int, requests: int, deadline: float, client: int) -> dict[str, Any]:
    import aiohttp

    statuses: Counter[int] = Counter()
    remaining = requests
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)

    async def worker(session: aiohttp.ClientSession, worker_id: int) -> None:
        nonlocal remaining
        sequence = 0
        while remaining > 0 and time.monotonic() < deadline:
            remaining -= 1
            sequence += 1
            prompt = f"Summarize: request {client}-{worker_id}-{sequence} about the quarterly report"
            messages = [{"role": "user", "content": prompt}]
            body = json.dumps({"model": "bench-chat", "max_tokens": 64, "messages": messages})
            request_headers = {**headers, "X-Client-Request-Id": f"{client}-{worker_id}-{sequence}"}
            async with session.post(url + ROUTE, data=body, headers=request_headers) as response:
                await response.read()
                statuses[response.status] += 1

    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.monotonic()
        await asyncio.gather(*(worker(session, index) for index in range(connections)))
        elapsed = time.monotonic() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"statuses": dict(statuses), "elapsed": elapsed, "cpu": usage.ru_utime + usage.ru_stime}


def _client(url: str, connections: int, requests: int, deadline_in: float, client: int, queue: Any) -> None:
    queue.put(asyncio.run(_load(url, connections, requests, time.monotonic() + deadline_in, client)))


def run(args: argparse.Namespace) -> dict[str, Any]:
    """One benchmark run; returns the measurements."""
    with start_gateway(token=TOKEN, latency_ms=args.latency_ms) as gateway:
        assert gateway.pid is not None
        context = multiprocessing.get_context("spawn")
        queue = context.Queue()
        per_client = max(1, args.connections // args.clients)
        clients = [
            context.Process(
                target=_client,
                args=(gateway.url, per_client, args.requests // args.clients, args.duration, index, queue),
            )
            for index in range(args.clients)
        ]
        cpu_before = process_cpu_seconds(gateway.pid)
        started = time.monotonic()
        for process in clients:
            process.start()
        results = [queue.get() for _ in clients]
        wall = time.monotonic() - started
        cpu_after = process_cpu_seconds(gateway.pid)
        for process in clients:
            process.join()
        stats = gateway.stats()
    total = sum(sum(result["statuses"].values()) for result in results)
    client_elapsed = max(result["elapsed"] for result in results)
    server_cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    statuses: Counter[str] = Counter()
    for result in results:
        statuses.update({str(status): count for status, count in result["statuses"].items()})
    return {
        "connections": per_client * args.clients,
        "clients": args.clients,
        "latency_ms": args.latency_ms,
        "requests": total,
        "seconds": round(client_elapsed, 3),
        "requests_per_s": round(total / client_elapsed, 1),
        "wall_seconds_with_startup": round(wall, 3),
        "server_cpu_s": None if server_cpu is None else round(server_cpu, 3),
        "server_cpu_us_per_request": None if server_cpu is None else round(server_cpu / total * 1e6, 1),
        "server_capacity_per_core_req_s": None if not server_cpu else round(total / server_cpu),
        "client_cpu_us_per_request": round(sum(result["cpu"] for result in results) / total * 1e6, 1),
        "client_statuses": dict(statuses),
        "server_statuses": stats["by_status"],
        "server_max_in_flight": stats["max_in_flight"],
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its measurements as JSON."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--requests", type=int, default=100_000, help="stop after this many requests")
    parser.add_argument("--duration", type=float, default=20.0, help="stop after this many seconds")
    parser.add_argument("--connections", type=int, default=64, help="keep-alive connections in all")
    parser.add_argument("--clients", type=int, default=1, help="client processes sharing the connections")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="emulator latency per request")
    print(json.dumps(run(parser.parse_args(argv)), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
