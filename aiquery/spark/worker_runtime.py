"""The runtime each Spark Python worker keeps across batches, tasks and queries, and one task's window of rows.

Each Spark Python worker keeps one :class:`WorkerRuntime`: an event loop in a background thread, one engine
(so one HTTP session per host and one set of limits per endpoint), and one governor: the client of the driver's
coordinator, which leases budgets and journals usage records on the driver (:mod:`aiquery.coordinator.client`).
:mod:`aiquery.spark.pipeline` feeds it a task's rows in chunks, a :class:`Window` of them in flight at a time.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from typing import Any

from aiquery.apis.images import FilePrompt
from aiquery.coordinator.client import CoordinatorClient
from aiquery.engine import Engine, Outcome
from aiquery.engine.governor import Governor, LocalGovernor, TaskInfo
from aiquery.engine.loop import LoopThread
from aiquery.spark.plan import CallPlan
from aiquery.usage.record import MemorySink

__all__ = ["Chunk", "Row", "Window", "WorkerRuntime", "task_context", "worker_runtime"]

logger = logging.getLogger("aiquery.spark")

Row = str | FilePrompt | None
"""One row's request: its text, its text and image (``files =>``), or NULL."""


class WorkerRuntime:
    """One per Python worker process: loop thread, engine, and the governor the engine reports to."""

    def __init__(self, plan: CallPlan) -> None:
        self.key = _runtime_key(plan)
        self.loop = LoopThread()
        self.governor: Governor
        if plan.coordinator is not None:
            self.governor = CoordinatorClient(plan.coordinator, plan.journal, plan.store)
        else:
            self.governor = LocalGovernor(MemorySink())
        self.engine = Engine(governor=self.governor, requester=plan.requester)
        # Set by the loop thread once the window the UDF thread waits on has room (a call ended or began a retry
        # wait): the UDF thread wakes then instead of polling, and only then (a wake-up per ended call cost 7 %
        # of the worker's CPU, measured).
        self.capacity = threading.Event()
        self.window: Window | None = None
        self.engine.on_capacity = self._capacity_freed

    def _capacity_freed(self) -> None:
        window = self.window
        if window is not None and window.wanted is not None and window.working(self.engine) <= window.wanted:
            window.wanted = None
            self.capacity.set()

    def flush(self) -> None:
        """Deliver every finished request's record (to the driver's journal) before the task ends."""
        try:
            self.loop.run(self.governor.flush(), timeout=60)
        except Exception:  # the records stay queued (or in the local journal) and are delivered later
            logger.warning("aiquery: usage records not delivered at the end of a task", exc_info=True)

    def run(self, plan: CallPlan, window: Window, prompts: list[Row]) -> Chunk:
        """Start one chunk of ``window``; its future resolves to its outcomes."""
        chunk = Chunk(len(prompts))
        window.submitted += chunk.rows

        async def started() -> list[Outcome]:
            # Until this runs on the loop thread, the engine does not count the chunk's rows as busy.
            window.started += chunk.rows
            try:
                if plan.batch_collect is not None:
                    return await self.engine.collect(
                        plan.site, prompts, run=plan.batch_collect, batchable=plan.batchable
                    )
                return await self.engine.run(plan.site, prompts, fail_fast=plan.fail_on_error)
            finally:
                self.capacity.set()  # the UDF thread may be waiting for this chunk, the oldest in its window

        chunk.future = self.loop.submit(started())
        return chunk


class Chunk:
    """A chunk of rows submitted to the engine: its outcome future and size."""

    __slots__ = ("future", "rows", "size")

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.size = 0
        """Bytes of images its rows hold."""
        self.future: concurrent.futures.Future[list[Outcome]]


class Window:
    """One task's rows in the engine's hands. Each counter has one writer: ``submitted`` the UDF thread,
    ``started`` the loop thread; ``wanted`` is set by the UDF thread and cleared by whichever thread sees it met."""

    __slots__ = ("started", "submitted", "wanted")

    def __init__(self) -> None:
        self.submitted = 0
        self.started = 0
        self.wanted: int | None = None
        """While the UDF thread waits for room: the most working rows that leave room for its next chunk."""

    def working(self, engine: Engine) -> int:
        """Calls the engine has started and not finished (except those waiting out a retry), plus the rows of
        chunks submitted to the loop thread that it has not started yet."""
        return engine.busy_calls + self.submitted - self.started


_runtime: WorkerRuntime | None = None
_runtime_lock = threading.Lock()


def _runtime_key(plan: CallPlan) -> tuple[Any, ...]:
    address = plan.coordinator
    where = None if address is None else (address.host, address.port, address.application)
    return (where, plan.journal, plan.store)


def worker_runtime(plan: CallPlan) -> WorkerRuntime:
    """This process's runtime, created on first use (or again for another application or ledger: the requester
    goes with each task's records, so sessions of different users share one engine)."""
    global _runtime
    with _runtime_lock:
        if _runtime is None or _runtime.key != _runtime_key(plan) or not _runtime.loop.alive:
            previous = _runtime
            _runtime = WorkerRuntime(plan)
            if previous is not None and previous.loop.alive:
                # Its records must still reach a ledger: deliver them before the old loop goes.
                previous.loop.run(previous.engine.aclose(), timeout=60)
                previous.loop.stop()
        return _runtime


def task_context(plan: CallPlan) -> tuple[dict[str, Any], TaskInfo | None]:
    """The running Spark task's context for the usage records, and the task as the governor sees it (None
    outside a task)."""
    from pyspark import TaskContext

    context: dict[str, Any] = {
        "spark_app_id": plan.spark_app_id,
        "task_attempt_id": None,
        "query_tag": plan.query_tag,
        "estimate": plan.sample is not None,
        "requester": plan.requester,
        "session_id": plan.session_id,
    }
    task = TaskContext.get()
    if task is None:
        return context, None
    context["task_attempt_id"] = task.taskAttemptId()
    description = task.getLocalProperty("spark.job.description")
    # A job's tag (`aiquery run`, a local property) first, then the session's `SET aiquery.query_tag`; a Connect
    # session's job description is a plan dump, so there the description is no tag.
    tagged = task.getLocalProperty("aiquery.query_tag") or plan.query_tag
    if plan.session_id is None:
        context["query_tag"] = tagged or description or task.getLocalProperty("spark.jobGroup.id")
    else:
        context["query_tag"] = tagged
    execution = task.getLocalProperty("spark.sql.execution.id")
    query = tagged or (f"execution {execution}" if execution else None)
    info = TaskInfo(
        task_attempt_id=context["task_attempt_id"], stage_id=task.stageId(), query=query, description=description
    )
    return context, info
