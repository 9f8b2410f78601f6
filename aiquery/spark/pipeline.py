"""A task's rows streamed through the worker's engine: chunked, pipelined, and given back in input order.

The UDF cuts each Arrow batch into chunks and keeps a window of chunks in flight, so the next rows are already
being sent while earlier results go back to Spark, and a LIMIT that stops reading early wastes little.

Results go back in input order, so one slow row (a hung request waiting for its timeout, a Retry-After) holds
back every answered row behind it. The window therefore bounds the rows still *working* (sent or ready to send;
rows waiting out a retry delay do not count), and, separately and more loosely, all rows held in memory
(``HOLD_WINDOWS`` windows), so a few stragglers never stall the rest of the partition.

An estimate run (:mod:`aiquery.jobs.estimate`) sends only a sample of the rows: :func:`in_sample` chooses them.
"""

from __future__ import annotations

import collections
import hashlib
from collections.abc import Iterator, Sequence

from aiquery.apis.images import FilePrompt
from aiquery.engine import Outcome
from aiquery.spark.plan import CallPlan
from aiquery.spark.worker_runtime import Chunk, Row, Window, WorkerRuntime, task_context, worker_runtime

__all__ = ["CHUNK_ROWS", "in_sample", "run_batches"]

CHUNK_ROWS = 256
HOLD_WINDOWS = 16
"""Rows kept in memory (answered or not, waiting to go back in order), as a multiple of the working window."""
CHUNK_BYTES = 8 * 1024 * 1024
HOLD_BYTES = 64 * 1024 * 1024
"""Bytes of images (``files =>``) a chunk and the rows kept in memory may hold: MB-sized images fill them long
before the row counts do."""
WAKE_S = 0.1
"""The longest the UDF thread waits for capacity without looking again (it is woken as soon as a call ends)."""


def _window_rows(plan: CallPlan) -> int:
    return max(4 * plan.site.endpoint.max_concurrency, 2 * CHUNK_ROWS)


def run_batches(plan: CallPlan, batches: Iterator[Sequence[Row]]) -> Iterator[list[Outcome]]:
    """Outcomes for a stream of prompt lists, chunked and pipelined; same rows, same order."""
    runtime = worker_runtime(plan)
    engine = runtime.engine
    engine.context, task = task_context(plan)
    runtime.loop.call(runtime.governor.start_task, task, plan.capped, plan.cap_owner)
    chunks: collections.deque[Chunk] = collections.deque()
    window = runtime.window = Window()
    held = held_bytes = 0
    limit = _window_rows(plan)
    hold_limit = HOLD_WINDOWS * limit
    try:
        for prompts in batches:
            if plan.ai_function is not None and plan.ai_function.instruction:
                instruct = plan.ai_function.prompt
                prompts = [instruct(prompt) if isinstance(prompt, str) else prompt for prompt in prompts]
            if plan.sample is not None and plan.batch_collect is None:  # a collect pass needs every row
                prompts = _sampled(plan.sample, plan.site.endpoint.name, runtime, prompts)
            for rows, size in _chunked(prompts):
                while chunks:
                    head = chunks[0]
                    if head.future.done() or held + len(rows) > hold_limit or held_bytes + size > HOLD_BYTES:
                        chunks.popleft()
                        held -= head.rows
                        held_bytes -= head.size
                        yield head.future.result()
                    elif window.working(engine) + len(rows) > limit:
                        runtime.capacity.clear()
                        window.wanted = limit - len(rows)
                        # Looked at again after the clear, so that a call ending in between is not missed.
                        if window.working(engine) + len(rows) > limit and not head.future.done():
                            runtime.capacity.wait(WAKE_S)
                        window.wanted = None
                    else:
                        break
                chunk = runtime.run(plan, window, rows)
                chunk.size = size
                chunks.append(chunk)
                held += len(rows)
                held_bytes += size
        while chunks:
            yield chunks.popleft().future.result()
    finally:
        for chunk in chunks:
            chunk.future.cancel()
        runtime.flush()


def _chunked(prompts: Sequence[Row]) -> Iterator[tuple[list[Row], int]]:
    """The rows in chunks of at most CHUNK_ROWS rows and (for images) CHUNK_BYTES bytes, each with its bytes."""
    rows: list[Row] = []
    size = 0
    for prompt in prompts:
        weight = len(prompt.image) if isinstance(prompt, FilePrompt) else 0
        if rows and (len(rows) >= CHUNK_ROWS or size + weight > CHUNK_BYTES):
            yield rows, size
            rows, size = [], 0
        rows.append(prompt)
        size += weight
    if rows:
        yield rows, size


def in_sample(prompt: str | FilePrompt, fraction: float) -> bool:
    """Whether an estimate run sends ``prompt``: a hash of the prompt (and its image) below ``fraction`` of the hash
    range, so the same rows are chosen in every run and a larger fraction's sample includes a smaller one's."""
    hashed = hashlib.blake2b(digest_size=8)
    text = prompt.text if isinstance(prompt, FilePrompt) else prompt
    hashed.update(text.encode("utf-8", "surrogateescape"))
    if isinstance(prompt, FilePrompt):
        hashed.update(prompt.image)
    digest = hashed.digest()
    return int.from_bytes(digest, "big") < fraction * _HASH_RANGE


_HASH_RANGE = 2**64


def _sampled(sample: tuple[str, float], endpoint: str, runtime: WorkerRuntime, prompts: Sequence[Row]) -> list[Row]:
    """An estimate run's rows: those in the sample, the others as NULL (no request); both counted."""
    run, fraction = sample
    kept = [prompt if prompt is not None and in_sample(prompt, fraction) else None for prompt in prompts]
    seen = sum(prompt is not None for prompt in prompts)
    sent = sum(prompt is not None for prompt in kept)
    runtime.loop.call(runtime.governor.sampled, run, endpoint, seen, sent)
    return kept
