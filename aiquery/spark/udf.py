"""The pandas UDF behind ai_query, and the per-worker runtime it shares across batches, tasks and queries.

Each Spark Python worker keeps one :class:`WorkerRuntime`: an event loop in a background thread, one engine
(so one HTTP session per host and one set of limits per endpoint), and one governor: the client of the driver's
coordinator, which leases budgets and journals usage records on the driver (:mod:`aiquery.coordinator.client`).
The UDF cuts each Arrow batch into chunks and keeps a window of chunks in flight, so the next rows are already
being sent while earlier results go back to Spark, and a LIMIT that stops reading early wastes little.

Results go back in input order, so one slow row (a hung request waiting for its timeout, a Retry-After) holds
back every answered row behind it. The window therefore bounds the rows still *working* (sent or ready to send;
rows waiting out a retry delay do not count), and, separately and more loosely, all rows held in memory
(``HOLD_WINDOWS`` windows), so a few stragglers never stall the rest of the partition.
"""

from __future__ import annotations

import collections
import concurrent.futures
import hashlib
import json
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, cast

from aiquery.ai_functions.aggregate import Aggregation
from aiquery.ai_functions.definitions import cosine
from aiquery.apis.images import FilePrompt
from aiquery.engine.governor import Governor, LocalGovernor, TaskInfo
from aiquery.engine.loop import LoopThread
from aiquery.engine.runner import Engine, Outcome
from aiquery.errors import CallError
from aiquery.spark.convert import convert_answer
from aiquery.spark.plan import CallPlan
from aiquery.usage.record import MemorySink

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql.udf import UserDefinedFunction

__all__ = ["WorkerRuntime", "make_udf", "worker_runtime"]

logger = logging.getLogger("aiquery.spark")

CHUNK_ROWS = 256
HOLD_WINDOWS = 16
"""Rows kept in memory (answered or not, waiting to go back in order), as a multiple of the working window."""
CHUNK_BYTES = 8 * 1024 * 1024
HOLD_BYTES = 64 * 1024 * 1024
"""Bytes of images (``files =>``) a chunk and the rows kept in memory may hold: MB-sized images fill them long
before the row counts do."""
WAKE_S = 0.1
"""The longest the UDF thread waits for capacity without looking again (it is woken as soon as a call ends)."""


class WorkerRuntime:
    """One per Python worker process: loop thread, engine, and the governor the engine reports to."""

    def __init__(self, plan: CallPlan) -> None:
        self.key = _runtime_key(plan)
        self.loop = LoopThread()
        self.governor: Governor
        if plan.coordinator is not None:
            from aiquery.coordinator.client import CoordinatorClient

            self.governor = CoordinatorClient(plan.coordinator, plan.journal, plan.store)
        else:
            self.governor = LocalGovernor(MemorySink())
        self.engine = Engine(governor=self.governor, requester=plan.requester)
        # Set by the loop thread once the window the UDF thread waits on has room (a call ended or began a retry
        # wait): the UDF thread wakes then instead of polling, and only then (a wake-up per ended call cost 7 %
        # of the worker's CPU, measured).
        self.capacity = threading.Event()
        self.window: _Window | None = None
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

    def run(self, plan: CallPlan, window: _Window, prompts: list[Row]) -> _Chunk:
        """Start one chunk of ``window``; its future resolves to its outcomes."""
        chunk = _Chunk(len(prompts))
        window.submitted += chunk.rows

        async def started() -> list[Outcome]:
            # Until this runs on the loop thread, the engine does not count the chunk's rows as busy.
            window.started += chunk.rows
            try:
                return await self.engine.run(plan.site, prompts, fail_fast=plan.fail_on_error)
            finally:
                self.capacity.set()  # the UDF thread may be waiting for this chunk, the oldest in its window

        chunk.future = self.loop.submit(started())
        return chunk


class _Chunk:
    """A chunk of rows submitted to the engine: its outcome future and size."""

    __slots__ = ("future", "rows", "size")

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.size = 0
        """Bytes of images its rows hold."""
        self.future: concurrent.futures.Future[list[Outcome]]


class _Window:
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
    return (where, plan.journal, plan.store, plan.requester)


def worker_runtime(plan: CallPlan) -> WorkerRuntime:
    """This process's runtime, created on first use (or again for another application, ledger or requester)."""
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


def _task_context(plan: CallPlan) -> tuple[dict[str, Any], TaskInfo | None]:
    from pyspark import TaskContext

    context: dict[str, Any] = {
        "spark_app_id": plan.spark_app_id,
        "task_attempt_id": None,
        "query_tag": None,
        "estimate": plan.sample is not None,
    }
    task = TaskContext.get()
    if task is None:
        return context, None
    context["task_attempt_id"] = task.taskAttemptId()
    description = task.getLocalProperty("spark.job.description")
    context["query_tag"] = (
        task.getLocalProperty("aiquery.query_tag") or description or task.getLocalProperty("spark.jobGroup.id")
    )
    execution = task.getLocalProperty("spark.sql.execution.id")
    query = task.getLocalProperty("aiquery.query_tag") or (f"execution {execution}" if execution else None)
    info = TaskInfo(
        task_attempt_id=context["task_attempt_id"], stage_id=task.stageId(), query=query, description=description
    )
    return context, info


def _window_rows(plan: CallPlan) -> int:
    return max(4 * plan.site.endpoint.max_concurrency, 2 * CHUNK_ROWS)


Row = str | FilePrompt | None
"""One row's request: its text, its text and image (``files =>``), or NULL."""


def run_batches(plan: CallPlan, batches: Iterator[Sequence[Row]]) -> Iterator[list[Outcome]]:
    """Outcomes for a stream of prompt lists, chunked and pipelined; same rows, same order."""
    runtime = worker_runtime(plan)
    engine = runtime.engine
    engine.context, task = _task_context(plan)
    runtime.loop.call(runtime.governor.start_task, task, plan.capped, plan.cap_owner)
    chunks: collections.deque[_Chunk] = collections.deque()
    window = runtime.window = _Window()
    held = held_bytes = 0
    limit = _window_rows(plan)
    hold_limit = HOLD_WINDOWS * limit
    try:
        for prompts in batches:
            if plan.task is not None and plan.task.instruction:
                instruct = plan.task.prompt
                prompts = [instruct(prompt) if isinstance(prompt, str) else prompt for prompt in prompts]
            if plan.sample is not None:
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


def _values(plan: CallPlan, outcomes: list[Outcome]) -> tuple[list[Any], list[str | None]]:
    """Results and error messages for a chunk; raises the first error when failOnError is on."""
    results: list[Any] = []
    errors: list[str | None] = []
    for outcome in outcomes:
        value, error = outcome.value, outcome.error
        if error is None and value is not None and plan.task is not None:
            value = plan.task.value(str(value))
            if isinstance(value, dict):
                value = json.dumps(value)
        if error is None and value is not None and plan.parse_json:
            try:
                value = convert_answer(str(value), plan.result_json)
            except Exception as exc:  # whatever one answer provokes is that row's error, never the query's
                value, error = None, CallError(str(exc), endpoint=plan.site.endpoint.name)
        if error is not None and plan.fail_on_error:
            raise error
        results.append(value)
        errors.append(error.describe() if error is not None else None)
    return results, errors


def _answers(plan: CallPlan, prompts: list[str]) -> list[str]:
    """The answers to ``prompts``, sent together through the engine (ai_agg's layers); raises a failed one's error."""
    answers: list[str] = []
    for outcomes in run_batches(plan, iter([prompts])):
        for outcome in outcomes:
            if outcome.error is not None:
                raise outcome.error
            answers.append(str(outcome.value) if outcome.value is not None else "")
    return answers


def _pair_values(plan: CallPlan, batches: Iterator[tuple[Any, Any]]) -> Iterator[tuple[list[Any], list[Any]]]:
    """``ai_similarity``: both texts of each row embedded (one stream of requests), and each pair's cosine;
    (results, error messages) per chunk of rows. A row whose two texts are equal sends one and is 1.0."""
    pending: collections.deque[Outcome] = collections.deque()
    equal: collections.deque[bool] = collections.deque()

    def flattened() -> Iterator[list[str | None]]:
        for first, second in batches:
            texts: list[str | None] = []
            for pair in zip(_prompts(first), _prompts(second), strict=True):
                same = pair[0] == pair[1]
                equal.append(same)
                # A row with a NULL text is NULL: neither of its texts is sent.
                texts.extend((None, None) if None in pair else (pair[0], None) if same else pair)
            yield texts

    for outcomes in run_batches(plan, flattened()):
        pending.extend(outcomes)
        results: list[Any] = []
        errors: list[str | None] = []
        while len(pending) >= 2:
            first, second = pending.popleft(), pending.popleft()
            same = equal.popleft()
            error = first.error or (None if same else second.error)
            value = None
            if error is None and first.value is not None and same:
                value = 1.0
            elif error is None and first.value is not None and second.value is not None:
                value = cosine(cast(list[float], first.value), cast(list[float], second.value))
            if error is not None and plan.fail_on_error:
                raise error
            results.append(value)
            errors.append(error.describe() if error is not None else None)
        yield results, errors


def make_udf(plan: CallPlan) -> UserDefinedFunction:
    """A nondeterministic pandas UDF specialised for ``plan``: of the request; of the request and its file
    (``files =>``); of two texts (``ai_similarity``); or of a group's texts (``ai_agg``)."""
    import pandas as pd
    from pyspark.sql.pandas.functions import pandas_udf

    if plan.task is not None and plan.task.aggregate:
        aggregation = Aggregation(plan.task.aggregate, plan.site.endpoint.context_tokens)

        def ai_agg(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
            for batch in batches:
                if plan.sample is not None:  # an estimate run: the requests do not scale with rows (jobs.estimate)
                    yield pd.Series([None] * len(batch), dtype=object)
                    continue
                groups = [_prompts(pd.Series(list(texts))) for texts in batch.tolist()]
                answers = aggregation.run_many(groups, lambda prompts: _answers(plan, prompts))
                yield pd.Series(answers, dtype=object)

        ai_agg.__annotations__ = {"batches": Iterator[pd.Series], "return": Iterator[pd.Series]}
        return _nondeterministic(pandas_udf(ai_agg, returnType=plan.udf_type))  # type: ignore[call-overload]

    def shaped(results: list[Any], errors: list[str | None]) -> Any:
        if plan.wrapped:
            return pd.DataFrame({"result": results, "errorMessage": errors})
        return pd.Series(results, dtype=object)

    if plan.task is not None and plan.task.pairs:

        def ai_query(batches: Iterator[Any]) -> Iterator[Any]:
            for results, errors in _pair_values(plan, batches):
                yield shaped(results, errors)

    else:
        rows_of: Callable[[Any], Sequence[Row]] = (lambda batch: _file_prompts(*batch)) if plan.files else _prompts

        def ai_query(batches: Iterator[Any]) -> Iterator[Any]:
            for outcomes in run_batches(plan, (rows_of(batch) for batch in batches)):
                yield shaped(*_values(plan, outcomes))

    two_columns = plan.files or (plan.task is not None and plan.task.pairs)
    inputs: Any = tuple[pd.Series, pd.Series] if two_columns else pd.Series
    output: Any = pd.DataFrame if plan.wrapped else pd.Series
    # pandas_udf reads the hints to pick the iterator form; with postponed annotations they are strings that
    # name this function's locals, which it cannot resolve, so give it the real types.
    ai_query.__annotations__ = {"batches": Iterator[inputs], "return": Iterator[output]}
    # The overloads cannot see the iterator form through the hints set at runtime above.
    return _nondeterministic(pandas_udf(ai_query, returnType=plan.udf_type))  # type: ignore[call-overload]


def _nondeterministic(wrapped: Any) -> UserDefinedFunction:
    """The UDF, nondeterministic, so Spark never evaluates it twice for one row (for example once per struct field
    read)."""
    udf: UserDefinedFunction = wrapped.asNondeterministic()._unwrapped
    return udf


def _prompts(batch: pd.Series) -> list[str | None]:
    # Requests arrive as BINARY (see AIQueryBuilder._expression): Arrow's own decoding of a STRING column fails
    # the whole task on one invalid UTF-8 value. surrogateescape keeps each bad byte as a lone surrogate, which
    # the engine reports on that row alone, without sending it.
    return [value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else None for value in batch.tolist()]


def _file_prompts(texts: pd.Series, files: pd.Series) -> list[Row]:
    """Each row's request with its file (``files =>``): NULL text is NULL; a NULL file sends the text alone."""
    rows: list[Row] = []
    for text, data in zip(_prompts(texts), files.tolist(), strict=True):
        if text is None or data is None:
            rows.append(text)
        else:
            rows.append(FilePrompt(text, bytes(data)))
    return rows
