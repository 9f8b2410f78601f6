"""The batch engine: fan a batch of prompts out to one endpoint and return one outcome per row, in order.

For each batch: NULL prompts give NULL without a request; identical prompts are sent once; every other prompt
becomes one *call*, made of one or more HTTP *attempts*. The engine asks its governor (see
:mod:`aiquery.engine.governor`) to admit each batch, waits before each attempt for a concurrency slot and,
where the endpoint has one, a request and token budget, and hands every attempt's usage record to the governor:
begun before the request leaves (it is sent only once the governor has it) and ended when it is over,
whatever the outcome; withdrawn when the call is cancelled after the begin and before sending.

A batch runs in named steps (:meth:`Engine.run`): plan the calls, admit them, serve those the answer store
holds, start the rest, wait for them, settle the rows. One attempt is :mod:`aiquery.engine.attempt`'s job; the
retries between attempts are this module's.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import tenacity

from aiquery.apis.base import Answer, estimate_tokens
from aiquery.apis.images import FilePrompt
from aiquery.config import Endpoint
from aiquery.engine.attempt import AttemptSender
from aiquery.engine.batch import Outcome, PendingCall, RowOutcomes, plan_calls
from aiquery.engine.collection import collect_rows
from aiquery.engine.failures import deadline_reason
from aiquery.engine.governor import Admission, EndpointLimits, Governor, LocalGovernor
from aiquery.engine.prepared import USER_AGENT, CallSite, PreparedSite
from aiquery.engine.retry import AttemptFailed, is_retryable, stop_before_deadline, wait_retry_after
from aiquery.engine.transport import MIN_TIMEOUT_S, Transport
from aiquery.engine.usage_records import open_record, price_record, record_tokens
from aiquery.errors import BatchLineFailed, BudgetExceeded, CallError, DeadlineExceeded, TaskCancelled
from aiquery.store.base import StoredAnswer
from aiquery.usage.record import UsageRecord, UsageSink

__all__ = ["USER_AGENT", "CallSite", "Engine"]

logger = logging.getLogger("aiquery.engine")


class Engine:
    """Sends batches of prompts to endpoints. Create and use it inside one event loop.

    Args:
        governor: what admits requests and keeps their usage records (a :class:`LocalGovernor` over ``sink``
            when None).
        sink: the usage sink of the default local governor (a :class:`MemorySink` when None).
        requester: who the usage table says made the requests.
        sleep: the coroutine used for every wait (injected by tests so they never really sleep).
        clock: monotonic seconds, for deadlines and limits.
        wall_clock: epoch seconds, for event times and HTTP-date Retry-After values.
    """

    def __init__(
        self,
        *,
        governor: Governor | None = None,
        sink: UsageSink | None = None,
        requester: str = "",
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        transport: Transport | None = None,
    ) -> None:
        self.governor: Governor = governor if governor is not None else LocalGovernor(sink, clock)
        self.requester = requester
        self.context: dict[str, Any] = {}
        """Extra usage-record fields for what runs now (Spark application, task attempt, query tag)."""
        self._sleep = sleep
        self._clock = clock
        self._wall_clock = wall_clock
        self._transport = transport or Transport()
        self._attempts = AttemptSender(
            governor=self.governor,
            transport=self._transport,
            new_record=self._record,
            sleep=sleep,
            clock=clock,
            wall_clock=wall_clock,
        )
        self._id_prefix = uuid.uuid4().hex[:16]
        self._ids = itertools.count(1)
        self._active_calls = 0
        self._resting_calls = 0
        self.on_capacity: Callable[[], None] | None = None
        """Called (on the loop thread) whenever ``busy_calls`` goes down: a call ended or began a retry wait."""

    @property
    def busy_calls(self) -> int:
        """Calls started and not finished, except those waiting out a retry delay.

        A caller feeding the engine from another thread (the Spark UDF) keeps this near the endpoint's
        concurrency; a call resting between attempts takes no capacity, so it must not hold back new rows.
        """
        return self._active_calls - self._resting_calls

    def limits(self, endpoint: Endpoint, budget_share: float = 1.0) -> EndpointLimits:
        """The limits the governor keeps for an endpoint (created on first use)."""
        return self.governor.limits(endpoint, budget_share)

    async def run(
        self, site: CallSite, prompts: Sequence[str | FilePrompt | None], *, fail_fast: bool = False
    ) -> list[Outcome]:
        """One outcome per prompt, in order.

        Args:
            site: the endpoint and the literal arguments of the call.
            prompts: the request column; None gives an empty outcome and sends nothing.
            fail_fast: on the first row that fails for good, cancel the rest and raise its error.

        Raises:
            CallError: only with ``fail_fast``.
        """
        prepared = PreparedSite(site, self.requester)
        limits = self.limits(site.endpoint, site.budget_share)
        rows = RowOutcomes(len(prompts))
        calls = plan_calls(prepared, prompts)
        if not calls:
            return rows.outcomes
        sendable = rows.set_aside_unsendable(calls)
        tokens = _token_estimate(prepared, limits, sendable)
        admission = await self._admit(site, sendable, tokens)
        to_send = self._serve_stored(prepared, sendable, admission, rows)
        waiting = admission.waiting if admission is not None else set()
        tasks = self._start_calls(prepared, limits, to_send, waiting)
        failed = _watch_for_failure(tasks, rows.first_error(calls)) if fail_fast else None
        limits.active_calls += len(tasks)
        limits.active_tokens += tokens
        try:
            await _wait_for_calls(tasks, failed)
        finally:
            limits.active_calls -= len(tasks)
            limits.active_tokens -= tokens
        rows.settle(to_send, tasks)
        self.governor.rows_done(rows.answered, rows.failures)
        if failed is not None:
            _raise_first_failure(failed, rows.outcomes)
        return rows.outcomes

    async def collect(
        self, site: CallSite, prompts: Sequence[str | FilePrompt | None], *, run: str, batchable: bool
    ) -> list[Outcome]:
        """Batch mode's collect pass over one chunk (see :mod:`aiquery.engine.collection`): nothing is sent.

        Raises:
            BatchCollectionLost: the driver could not be handed the chunk's requests.
        """
        return await collect_rows(self.governor, PreparedSite(site, self.requester), prompts, run, batchable)

    async def _admit(self, site: CallSite, sendable: list[PendingCall], tokens: float) -> Admission | None:
        """The governor's admission of the calls to make, with the answers the store holds for them."""
        if not sendable:
            return None
        lookups = [call.fingerprint for call in sendable] if site.cache else None
        admitted = self.governor.admit(site.endpoint, len(sendable), tokens, lookups)
        return (await admitted) if admitted is not None else None

    def _serve_stored(
        self, prepared: PreparedSite, sendable: list[PendingCall], admission: Admission | None, rows: RowOutcomes
    ) -> list[PendingCall]:
        """Answer the calls the store holds; the calls still to send."""
        if admission is None:
            return sendable
        to_send = []
        failed = admission.failed if prepared.site.batch_run is not None else None
        for call in sendable:
            stored = admission.hits.get(call.fingerprint)
            if stored is None:
                message = failed.get(call.fingerprint) if failed else None
                if message is None:
                    to_send.append(call)
                else:  # its batch line failed: not sent (the run's fallback is to fail such rows)
                    call.error = _line_failed(prepared, message)
                    rows.answer(call, Outcome(error=call.error))
                continue
            self._served(prepared, call.fingerprint, stored)
            rows.answer(call, Outcome(value=stored.value))
        return to_send

    def _start_calls(
        self, prepared: PreparedSite, limits: EndpointLimits, calls: list[PendingCall], waiting: set[str]
    ) -> list[asyncio.Task[Outcome]]:
        """One task per call; a call another worker is sending (``waiting``) waits for its answer first."""
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(self._call(prepared, limits, call, call.fingerprint in waiting)) for call in calls]
        self._active_calls += len(tasks)
        for task in tasks:
            task.add_done_callback(self._call_done)
        return tasks

    def _call_done(self, task: asyncio.Task[Outcome]) -> None:
        self._active_calls -= 1
        if self.on_capacity is not None:
            self.on_capacity()

    async def _rest(self, seconds: float) -> None:
        self._resting_calls += 1
        if self.on_capacity is not None:
            self.on_capacity()
        try:
            await self._sleep(seconds)
        finally:
            self._resting_calls -= 1

    async def _call(self, prepared: PreparedSite, limits: EndpointLimits, call: PendingCall, wait: bool) -> Outcome:
        if wait:
            # Another worker of the application is sending this very request: its answer is this call's.
            try:
                stored = await self.governor.await_answer(call.fingerprint)
            except BatchLineFailed as failed:
                if prepared.site.batch_run is not None:
                    return Outcome(error=_line_failed(prepared, failed.message))
                stored = None
            if stored is not None:
                self._served(prepared, call.fingerprint, stored)
                return Outcome(value=stored.value)
        answer = await self._send(prepared, limits, call)
        if prepared.site.cache:
            stored = StoredAnswer.of(answer.value, answer.usage) if isinstance(answer, Answer) else None
            self.governor.settled(call.fingerprint, stored)
        if isinstance(answer, Answer):
            return Outcome(value=answer.value)
        return Outcome(error=answer)

    async def _send(self, prepared: PreparedSite, limits: EndpointLimits, call: PendingCall) -> Answer | CallError:
        endpoint = prepared.endpoint
        deadline = self._clock() + endpoint.deadline
        call_id = f"{self._id_prefix}-c{next(self._ids)}"
        attempts = 1
        try:
            return await self._attempts.send(prepared, limits, call, call_id, 1, deadline)
        except AttemptFailed as first:
            if not first.decision.retry or endpoint.max_retries == 0:
                logger.debug("call %s not retried: %s", call_id, first.decision.reason)
                return first.error.with_attempts(attempts if first.sent else 0)

            async def attempt() -> Answer:
                nonlocal attempts
                attempts += 1
                try:
                    return await self._attempts.send(prepared, limits, call, call_id, attempts, deadline)
                except AttemptFailed as failure:
                    if not failure.sent:  # stopped before sending (deadline, budget): not an attempt
                        attempts -= 1
                    raise

            answer_or_error = await self._retry(first, attempt, endpoint, deadline)
            if isinstance(answer_or_error, CallError):
                return answer_or_error.with_attempts(attempts)
            return answer_or_error

    def _served(self, prepared: PreparedSite, fingerprint: str, stored: StoredAnswer) -> None:
        """Record a call answered from the answer store: a usage row of its own, no HTTP request, nothing billed."""
        record = self._record(prepared, f"{self._id_prefix}-c{next(self._ids)}", 0, fingerprint)
        record.cache_hit = True
        record_tokens(record, stored.usage)
        price = prepared.endpoint.price
        if stored.batch_id is not None and prepared.site.batch_run is not None:
            # Batch mode's run pass: paid in the batch, whose line has its own record; nothing avoided.
            record.batch_id = stored.batch_id
            if price is not None:
                record.cost = record.avoided_cost = 0.0
        elif price is not None:  # nothing billed; what the request would have cost
            record.cost = 0.0
            record.avoided_cost = price_record(record, price)
        self.governor.end(record)

    async def _retry(
        self,
        first: AttemptFailed,
        attempt: Callable[[], Awaitable[Answer]],
        endpoint: Endpoint,
        deadline: float,
    ) -> Answer | CallError:
        pending: AttemptFailed | None = first
        last_sent = first

        async def again() -> Answer:
            # The first failure is replayed so that tenacity computes its wait like any other.
            nonlocal pending, last_sent
            if pending is not None:
                failure, pending = pending, None
                raise failure
            try:
                return await attempt()
            except AttemptFailed as failure:
                last_sent = failure if failure.sent else last_sent
                raise

        # No retry is begun that would have less than a request's shortest timeout left before the deadline.
        before_deadline = stop_before_deadline(deadline, self._clock, margin=MIN_TIMEOUT_S)
        retrying = tenacity.AsyncRetrying(
            sleep=self._rest,
            stop=tenacity.stop_after_attempt(endpoint.max_retries + 1) | before_deadline,
            wait=wait_retry_after(),
            retry=tenacity.retry_if_exception(is_retryable),
            reraise=True,
        )
        try:
            return await retrying(again)
        except AttemptFailed as last:
            if isinstance(last.error, (BudgetExceeded, TaskCancelled)):
                return last.error  # not sent on purpose: neither a deadline nor a failure of the endpoint
            if not last.sent or (last.decision.retry and retrying.statistics["attempt_number"] <= endpoint.max_retries):
                # The deadline is what stopped it: before a retry could be sent, or with attempts left.
                return DeadlineExceeded(
                    f"{deadline_reason(last, endpoint)}; last error: {last_sent.error.describe()}",
                    endpoint=endpoint.name,
                )
            return last.error

    def _record(self, prepared: PreparedSite, call_id: str, attempt: int, request_hash: str) -> UsageRecord:
        return open_record(
            prepared,
            request_id=f"{self._id_prefix}-r{next(self._ids)}",
            call_id=call_id,
            attempt=attempt,
            request_hash=request_hash,
            event_time=dt.datetime.fromtimestamp(self._wall_clock(), tz=dt.timezone.utc),
            context=self.context,
        )

    async def aclose(self) -> None:
        """Close connections and flush the governor."""
        await self._transport.aclose()
        await self.governor.aclose()


def _line_failed(prepared: PreparedSite, message: str) -> BatchLineFailed:
    return BatchLineFailed(
        f"[{BatchLineFailed.error_class}] this request's line failed in the run's provider batch: {message}",
        endpoint=prepared.endpoint.name,
        attempts=0,
    )


def _token_estimate(prepared: PreparedSite, limits: EndpointLimits, calls: list[PendingCall]) -> float:
    """The tokens the calls are expected to use, for an endpoint with a token budget (0 without one)."""
    if limits.tokens is None:
        return 0.0
    estimates = sum(estimate_tokens(call.request.prompt) for call in calls)
    return float(estimates + prepared.output_estimate * len(calls))


def _watch_for_failure(tasks: list[asyncio.Task[Outcome]], first_error: CallError | None) -> asyncio.Future[CallError]:
    """A future set to the error of the first call that fails for good (``first_error`` when already known)."""
    failed: asyncio.Future[CallError] = asyncio.get_running_loop().create_future()
    if first_error is not None:
        failed.set_result(first_error)

    def signal(task: asyncio.Task[Outcome]) -> None:
        # A done-callback, not another coroutine layer: every await in a call passes through each layer.
        # A call stopped because its Spark task is being killed cancels nothing: the requests already sent
        # run on and are recorded with their outcome. (Cancelled, one still connecting would be recorded
        # as sent though it never left.) Its error is raised once they are over.
        error = None if task.cancelled() else task.result().error
        if error is not None and not isinstance(error, TaskCancelled) and not failed.done():
            failed.set_result(error)

    for task in tasks:
        task.add_done_callback(signal)
    return failed


async def _wait_for_calls(tasks: list[asyncio.Task[Outcome]], failed: asyncio.Future[CallError] | None) -> None:
    """Wait for every call, or with ``failed`` only until it is set; calls still running then are cancelled."""
    everything = asyncio.gather(*tasks)
    try:
        if failed is None:
            await everything
        elif not failed.done():
            await asyncio.wait([everything, failed], return_when=asyncio.FIRST_COMPLETED)  # type: ignore[type-var]
    finally:
        if not everything.done():
            everything.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await everything


def _raise_first_failure(failed: asyncio.Future[CallError], outcomes: list[Outcome]) -> None:
    """Under ``fail_fast``: raise the first error for good, else that of a call stopped by its task's kill."""
    if failed.done():
        raise failed.result()
    failed.cancel()
    stopped = next((o.error for o in outcomes if isinstance(o.error, TaskCancelled)), None)
    if stopped is not None:
        raise stopped
