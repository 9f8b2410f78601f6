"""The pandas UDF behind ai_query, and the per-worker runtime it shares across batches, tasks and queries.

Each Spark Python worker keeps one :class:`WorkerRuntime`: an event loop in a background thread, one engine
(so one HTTP session per host and one set of limits per endpoint), and one usage spool writer. The UDF cuts
each Arrow batch into chunks and keeps a window of chunks in flight, so the next rows are already being sent
while earlier results go back to Spark, and a LIMIT that stops reading early wastes little.

Results go back in input order, so one slow row (a hung request waiting for its timeout, a Retry-After) holds
back every answered row behind it. The window therefore bounds the rows still *working* (sent or ready to send;
rows waiting out a retry delay do not count), and, separately and more loosely, all rows held in memory
(``HOLD_WINDOWS`` windows), so a few stragglers never stall the rest of the partition.
"""

from __future__ import annotations

import collections
import concurrent.futures
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from aiquery.engine.loop import LoopThread
from aiquery.engine.runner import Engine, Outcome
from aiquery.errors import CallError
from aiquery.spark.convert import convert_answer
from aiquery.spark.plan import CallPlan
from aiquery.usage.record import MemorySink, UsageSink

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql.udf import UserDefinedFunction

__all__ = ["WorkerRuntime", "make_udf", "worker_runtime"]

CHUNK_ROWS = 256
FLUSH_INTERVAL_S = 5.0
HOLD_WINDOWS = 16
"""Rows kept in memory (answered or not, waiting to go back in order), as a multiple of the working window."""
WAKE_S = 0.1
"""The longest the UDF thread waits for capacity without looking again (it is woken as soon as a call ends)."""


class WorkerRuntime:
    """One per Python worker process: loop thread, engine and usage sink."""

    def __init__(self, spool_dir: str | None, requester: str) -> None:
        self.key = (spool_dir, requester)
        self.loop = LoopThread()
        self.sink: UsageSink
        if spool_dir is not None:
            from aiquery.usage.spool import spool_writer

            self.sink = spool_writer(spool_dir)
        else:
            self.sink = MemorySink()
        self.engine = Engine(sink=self.sink, requester=requester)
        # Set by the loop thread when a call ends or starts waiting out a retry: the UDF thread, waiting for
        # room in its window, wakes then instead of polling.
        self.capacity = threading.Event()
        self.engine.on_capacity = self.capacity.set
        self.loop.call(self._schedule_flush)

    def _schedule_flush(self) -> None:
        # Periodic rotation makes a long task's usage visible to the driver's background ingestion.
        self.sink.flush()
        if isinstance(self.sink, MemorySink):
            self.sink.records.clear()
        self.loop.loop.call_later(FLUSH_INTERVAL_S, self._schedule_flush)

    def flush(self) -> None:
        """Make every finished request's record visible to ingestion (runs on the loop thread)."""
        done = threading.Event()

        def rotate() -> None:
            try:
                self.sink.flush()
            finally:
                done.set()

        self.loop.call(rotate)
        done.wait(30)

    def run(self, plan: CallPlan, prompts: list[str | None]) -> _Chunk:
        """Start one chunk; its future resolves to its outcomes."""
        chunk = _Chunk(len(prompts))

        async def started() -> list[Outcome]:
            # Until this runs on the loop thread, the engine does not count the chunk's rows as busy.
            chunk.started = True
            try:
                return await self.engine.run(plan.site, prompts, fail_fast=plan.fail_on_error)
            finally:
                self.capacity.set()  # the UDF thread may be waiting for this chunk, the oldest in its window

        chunk.future = self.loop.submit(started())
        return chunk


class _Chunk:
    """A chunk of rows submitted to the engine: its outcome future, size, and whether the engine has it yet."""

    __slots__ = ("future", "rows", "started")

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.started = False
        self.future: concurrent.futures.Future[list[Outcome]]


_runtime: WorkerRuntime | None = None
_runtime_lock = threading.Lock()


def worker_runtime(plan: CallPlan) -> WorkerRuntime:
    """This process's runtime, created on first use (or again if the usage settings changed)."""
    global _runtime
    with _runtime_lock:
        if _runtime is None or _runtime.key != (plan.spool_dir, plan.requester) or not _runtime.loop.alive:
            _runtime = WorkerRuntime(plan.spool_dir, plan.requester)
        return _runtime


def _task_context(plan: CallPlan) -> dict[str, Any]:
    from pyspark import TaskContext

    context: dict[str, Any] = {"spark_app_id": plan.spark_app_id, "task_attempt_id": None, "query_tag": None}
    task = TaskContext.get()
    if task is not None:
        context["task_attempt_id"] = task.taskAttemptId()
        context["query_tag"] = (
            task.getLocalProperty("aiquery.query_tag")
            or task.getLocalProperty("spark.job.description")
            or task.getLocalProperty("spark.jobGroup.id")
        )
    return context


def _window_rows(plan: CallPlan) -> int:
    return max(4 * plan.site.endpoint.max_concurrency, 2 * CHUNK_ROWS)


def run_batches(plan: CallPlan, batches: Iterator[list[str | None]]) -> Iterator[list[Outcome]]:
    """Outcomes for a stream of prompt lists, chunked and pipelined; same rows, same order."""
    runtime = worker_runtime(plan)
    engine = runtime.engine
    engine.context = _task_context(plan)
    window: collections.deque[_Chunk] = collections.deque()
    held = 0
    limit = _window_rows(plan)
    hold_limit = HOLD_WINDOWS * limit
    try:
        for prompts in batches:
            for start in range(0, len(prompts), CHUNK_ROWS):
                rows = prompts[start : start + CHUNK_ROWS]
                while window:
                    head = window[0]
                    if head.future.done() or held + len(rows) > hold_limit:
                        window.popleft()
                        held -= head.rows
                        yield head.future.result()
                    elif _working(engine, window) + len(rows) > limit:
                        runtime.capacity.clear()
                        # Looked at again after the clear, so that a call ending in between is not missed.
                        if _working(engine, window) + len(rows) > limit and not head.future.done():
                            runtime.capacity.wait(WAKE_S)
                    else:
                        break
                window.append(runtime.run(plan, rows))
                held += len(rows)
        while window:
            yield window.popleft().future.result()
    finally:
        for chunk in window:
            chunk.future.cancel()
        runtime.flush()


def _working(engine: Engine, window: collections.deque[_Chunk]) -> int:
    # Calls the engine has started and not finished (except those waiting out a retry), plus the rows of chunks
    # submitted to the loop thread that it has not started yet.
    return engine.busy_calls + sum(chunk.rows for chunk in window if not chunk.started)


def _values(plan: CallPlan, outcomes: list[Outcome]) -> tuple[list[Any], list[str | None]]:
    """Results and error messages for a chunk; raises the first error when failOnError is on."""
    results: list[Any] = []
    errors: list[str | None] = []
    for outcome in outcomes:
        value, error = outcome.value, outcome.error
        if error is None and value is not None and plan.parse_json:
            try:
                value = convert_answer(str(value), plan.result_json)
            except ValueError as exc:
                value, error = None, CallError(str(exc), endpoint=plan.site.endpoint.name)
        if error is not None and plan.fail_on_error:
            raise error
        results.append(value)
        errors.append(error.describe() if error is not None else None)
    return results, errors


def make_udf(plan: CallPlan) -> UserDefinedFunction:
    """A nondeterministic pandas UDF of one argument (the request) specialised for ``plan``."""
    import pandas as pd
    from pyspark.sql.pandas.functions import pandas_udf

    if plan.wrapped:

        def ai_query(batches: Iterator[pd.Series]) -> Iterator[Any]:
            for outcomes in run_batches(plan, (_prompts(batch) for batch in batches)):
                results, errors = _values(plan, outcomes)
                yield pd.DataFrame({"result": results, "errorMessage": errors})

        output: Any = pd.DataFrame
    else:

        def ai_query(batches: Iterator[pd.Series]) -> Iterator[Any]:
            for outcomes in run_batches(plan, (_prompts(batch) for batch in batches)):
                results, _ = _values(plan, outcomes)
                yield pd.Series(results, dtype=object)

        output = pd.Series
    # pandas_udf reads the hints to pick the iterator form; with postponed annotations they are strings that
    # name this function's locals, which it cannot resolve, so give it the real types.
    ai_query.__annotations__ = {"batches": Iterator[pd.Series], "return": Iterator[output]}
    # The overloads cannot see the iterator form through the hints set at runtime above.
    wrapped_udf: Any = pandas_udf(ai_query, returnType=plan.udf_type)  # type: ignore[call-overload]
    # Nondeterministic, so Spark never evaluates it twice for one row (for example once per struct field read).
    udf: UserDefinedFunction = wrapped_udf.asNondeterministic()._unwrapped
    return udf


def _prompts(batch: pd.Series) -> list[str | None]:
    # Requests arrive as BINARY (see AIQueryBuilder._expression): Arrow's own decoding of a STRING column fails
    # the whole task on one invalid UTF-8 value. surrogateescape keeps each bad byte as a lone surrogate, which
    # the engine reports on that row alone, without sending it.
    return [value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else None for value in batch.tolist()]
