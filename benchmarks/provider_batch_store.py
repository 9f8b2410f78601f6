"""Storing a 200,000-line batch run: the rows per second of the store step and the driver's memory.

The requests are put in a run's state as a collect pass would, submitted to the emulator's OpenAI Batch API (four
files of 50,000 lines), waited for, then stored: each results line streamed, read by the live adapter, kept in the
state (SQLite, chunks of 5,000) and given its usage record in the spool. The store step is timed on its own; the
peak resident memory of the process is read before and after it (``ru_maxrss``) and the Python heap's peak during
it (``tracemalloc``), to show that memory does not grow with the batch.

    python benchmarks/provider_batch_store.py --rows 200000
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path

from aiquery.apis.base import APIRequest
from aiquery.apis.request_json import request_to_json
from aiquery.config import load_settings
from aiquery.gateway import start_gateway
from aiquery.pricing import Price
from aiquery.provider_batches import ProviderHTTP, client_for
from aiquery.provider_batches.line_records import settle_outbox
from aiquery.provider_batches.provider_run import new_run_tag
from aiquery.provider_batches.result_storing import LedgerSide, store_batch
from aiquery.provider_batches.run_state import RunState
from aiquery.provider_batches.submission import submit_unsent
from aiquery.provider_batches.waiting import Polling, wait_for_batches


async def run(rows: int, folder: Path, trace: bool) -> None:
    with start_gateway(token="bench") as gateway:
        gateway.configure(batch_delay=1.0)
        settings = load_settings({"DATABRICKS_TOKEN": "bench", "DATABRICKS_HOST": gateway.url})
        endpoint = settings.with_endpoint(
            "chat", api="chat", model="gpt-6.2-sol", base_url=gateway.url + "/v1", batch=True
        ).endpoint("chat")
        endpoint = dataclasses.replace(endpoint, price=Price(input_per_million=2.0, output_per_million=8.0))
        spool = folder / "spool"
        spool.mkdir()
        state = RunState(folder / "state")
        requests = {
            f"{index:064x}": APIRequest(prompt=f"Summarize parcel {index} in one line.", model=endpoint.model)
            for index in range(rows)
        }
        started = time.perf_counter()
        state.add_requests("chat", [(key, json.dumps(request_to_json(r))) for key, r in requests.items()], 1)
        print(f"state: {rows:,} requests kept in {time.perf_counter() - started:.2f} s")
        http = ProviderHTTP()
        client = client_for(endpoint, http)
        tag = new_run_tag(state)
        started = time.perf_counter()
        report = await submit_unsent(state, client, requests, tag=tag)
        print(f"submit: {len(report.created)} batches in {time.perf_counter() - started:.2f} s")
        await wait_for_batches(state, {"chat": client}, deadline=time.monotonic() + 600, polling=Polling(first_s=0.5))
        side = LedgerSide(spool_dir=spool, run=tag, query_tag="bench", requester="bench")
        settle_outbox(state, spool, tag)
        # The emulator decides a batch's results when first asked; read them once so the store is timed alone.
        started = time.perf_counter()
        downloaded = 0
        for row in state.batches():
            async for _ in client.raw_results(await client.status(str(row.provider_id))):
                downloaded += 1
        seconds = time.perf_counter() - started
        print(f"download only (the emulator answering): {downloaded:,} lines in {seconds:.2f} s")
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if trace:
            tracemalloc.start()
        started, cpu_started = time.perf_counter(), time.process_time()
        stored = 0
        for row in state.batches():
            lines = {key: requests[key] for key, _ in state.requests_of(row.number)}
            counts = await store_batch(state, client, row, lines, ledger=side)
            stored += counts.succeeded + counts.failed
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        heap_peak = tracemalloc.get_traced_memory()[1] if trace else 0
        tracemalloc.stop()
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        await http.aclose()
        state.close()
        print(
            f"store: {stored:,} lines in {seconds:.2f} s = {stored / seconds:,.0f} rows/s; this process's CPU "
            f"{cpu:.2f} s = {stored / cpu:,.0f} rows per CPU second (the rest: waiting for the emulator)"
        )
        print(f"peak RSS before the store {before / 1024:.0f} MiB, after {after / 1024:.0f} MiB")
        if trace:
            print(f"Python heap peak during the store {heap_peak / 2**20:.1f} MiB (traced: slower than untraced)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--trace", action="store_true", help="trace the Python heap's peak (slows the store)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(run(args.rows, Path(folder), args.trace))


if __name__ == "__main__":
    main()
