"""The pandas UDF behind ai_query, and the per-worker runtime it shares across batches, tasks and queries.

Each Spark Python worker keeps one :class:`WorkerRuntime`: an event loop in a background thread, one engine
(so one HTTP session per host and one set of limits per endpoint), and one usage spool writer. The UDF cuts
each Arrow batch into chunks and keeps a window of chunks in flight, so the next rows are already being sent
while earlier results go back to Spark, and a LIMIT that stops reading early wastes at most one window.
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

    def run(self, plan: CallPlan, prompts: list[str | None]) -> concurrent.futures.Future[list[Outcome]]:
        """Start one chunk; the future resolves to its outcomes."""
        return self.loop.submit(self.engine.run(plan.site, prompts, fail_fast=plan.fail_on_error))


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
    runtime.engine.context = _task_context(plan)
    window: collections.deque[tuple[concurrent.futures.Future[list[Outcome]], int]] = collections.deque()
    in_window = 0
    limit = _window_rows(plan)
    try:
        for prompts in batches:
            for start in range(0, len(prompts), CHUNK_ROWS):
                chunk = prompts[start : start + CHUNK_ROWS]
                while window and (in_window + len(chunk) > limit or window[0][0].done()):
                    future, size = window.popleft()
                    in_window -= size
                    yield future.result()
                window.append((runtime.run(plan, chunk), len(chunk)))
                in_window += len(chunk)
        while window:
            future, size = window.popleft()
            yield future.result()
    finally:
        for future, _ in window:
            future.cancel()
        runtime.flush()


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
    return [value if isinstance(value, str) else None for value in batch.tolist()]
