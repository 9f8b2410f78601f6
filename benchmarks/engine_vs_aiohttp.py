"""Benchmark: the engine alone against a bare aiohttp loop, same emulator, same concurrency, same run.

    .venv/bin/python benchmarks/engine_vs_aiohttp.py [--requests 20000] [--concurrency 256] [--latency-ms 100]

The emulator runs in its own process. Runs alternate (bare, engine, bare, engine, ...) so drift on this shared
machine hits both sides alike; the table reports each run and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

import aiohttp

from aiquery.config import Endpoint, Secret
from aiquery.engine import CallSite, Engine
from aiquery.gateway import start_gateway
from aiquery.usage.record import MemorySink

TOKEN = "bench-token"


async def bare_loop(url: str, prompts: list[str], concurrency: int) -> None:
    """What a hand-written client does: a semaphore, one session, POST, read JSON, take the text."""
    semaphore = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(prompt: str) -> str:
            async with semaphore:
                body = {"model": "bench", "messages": [{"role": "user", "content": prompt}]}
                async with session.post(url, json=body, headers=headers) as response:
                    data = await response.json()
                    return str(data["choices"][0]["message"]["content"])

        results = await asyncio.gather(*(one(p) for p in prompts))
        assert len(results) == len(prompts)


async def engine_run(base_url: str, prompts: list[str], concurrency: int) -> None:
    endpoint = Endpoint(
        name="bench", api="chat", model="bench", base_url=base_url, token=Secret(TOKEN), max_concurrency=concurrency
    )
    sink = MemorySink()
    engine = Engine(sink=sink)
    try:
        outcomes = await engine.run(CallSite(endpoint=endpoint), prompts)
    finally:
        await engine.aclose()
    assert all(o.error is None for o in outcomes) and len(sink.records) == len(prompts)


def measure(label: str, coroutine: Any) -> dict[str, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    asyncio.run(coroutine)
    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {"bare aiohttp": [], "engine": []}
    with start_gateway(token=TOKEN, latency_ms=args.latency_ms) as gateway:
        base_url = gateway.url + "/ai-gateway/mlflow/v1"
        for round_number in range(args.rounds):
            prompts = [f"round {round_number} prompt {i}: summarize this" for i in range(args.requests)]
            results["bare aiohttp"].append(
                measure("bare", bare_loop(base_url + "/chat/completions", prompts, args.concurrency))
            )
            results["engine"].append(measure("engine", engine_run(base_url, prompts, args.concurrency)))
    bound = args.concurrency / (args.latency_ms / 1000.0)
    print(
        f"{args.requests} requests, {args.concurrency} in flight, {args.latency_ms:g} ms latency "
        f"(bound {bound:.0f} req/s), {args.rounds} rounds\n"
    )
    print("| client | req/s per round | median req/s | client CPU ms/request |")
    print("|---|---|---|---|")
    medians = {}
    for label, runs in results.items():
        rates = [args.requests / r["wall"] for r in runs]
        cpu = statistics.median(r["cpu"] for r in runs) * 1000 / args.requests
        medians[label] = statistics.median(rates)
        print(f"| {label} | {', '.join(f'{x:.0f}' for x in rates)} | {medians[label]:.0f} | {cpu:.3f} |")
    ratio = medians["engine"] / medians["bare aiohttp"]
    print(f"\nengine / bare aiohttp = {ratio:.3f}")
    print(json.dumps({"ratio": ratio, "medians": medians}))


if __name__ == "__main__":
    main()
