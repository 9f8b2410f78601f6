"""The batch engine: fan a batch of prompts out to one endpoint and return one outcome per row, in order.

For each batch: NULL prompts give NULL without a request; identical prompts are sent once; every other prompt
becomes one *call*, made of one or more HTTP *attempts*. The engine asks its governor (see
:mod:`aiquery.engine.governor`) to admit each batch, waits before each attempt for a concurrency slot and,
where the endpoint has one, a request and token budget, and hands every attempt's usage record to the governor:
begun before the request leaves (it is sent only once the governor has it) and ended when it is over,
whatever the outcome; withdrawn when the call is cancelled after the begin and before sending.
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
from dataclasses import dataclass
from typing import Any

import tenacity

from aiquery.apis.base import Answer, APIRequest, estimate_tokens
from aiquery.apis.images import FilePrompt
from aiquery.apis.json_body import decode_json_body
from aiquery.config import Endpoint
from aiquery.engine.batch import PendingCall, plan_calls
from aiquery.engine.failures import (
    bad_body_failure,
    budget_deadline,
    deadline_reason,
    no_response_failure,
    status_failure,
)
from aiquery.engine.governor import CapClaim, EndpointLimits, Governor, LocalGovernor, SendingStopped
from aiquery.engine.prepared import REQUEST_ID_HEADER, USER_AGENT, CallSite, PreparedSite
from aiquery.engine.retry import AttemptFailed, Decision, is_retryable, stop_before_deadline, wait_retry_after
from aiquery.engine.transport import MIN_TIMEOUT_S, HTTPResponse, NoResponse, Transport
from aiquery.errors import BudgetExceeded, CallError, DeadlineExceeded, TaskCancelled, UsageNotRecorded
from aiquery.pricing import Price
from aiquery.store.base import StoredAnswer
from aiquery.usage.record import UsageRecord, UsageSink

__all__ = ["USER_AGENT", "CallSite", "Engine", "Outcome"]

logger = logging.getLogger("aiquery.engine")


@dataclass(frozen=True, slots=True)
class Outcome:
    """One row's result: a value, or the error that stopped it (both None for a NULL prompt)."""

    value: str | list[float] | None = None
    error: CallError | None = None


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
        outcomes: list[Outcome] = [Outcome()] * len(prompts)
        calls = plan_calls(prepared, prompts)
        if not calls:
            return outcomes
        answered = failures = 0
        sendable = []
        for call in calls:
            if call.error is None:
                sendable.append(call)
                continue
            for index in call.rows:
                outcomes[index] = Outcome(error=call.error)
            failures += len(call.rows)
        tokens = 0.0
        if limits.tokens is not None:
            estimates = sum(estimate_tokens(call.request.prompt) for call in sendable)
            tokens = float(estimates + prepared.output_estimate * len(sendable))
        lookups = [call.fingerprint for call in sendable] if site.cache else None
        admitted = self.governor.admit(site.endpoint, len(sendable), tokens, lookups) if sendable else None
        admission = (await admitted) if admitted is not None else None
        to_send = []
        for call in sendable:
            stored = admission.hits.get(call.fingerprint) if admission is not None else None
            if stored is None:
                to_send.append(call)
                continue
            self._served(prepared, call.fingerprint, stored)
            for index in call.rows:
                outcomes[index] = Outcome(value=stored.value)
            answered += len(call.rows)
        waiting = admission.waiting if admission is not None else set()
        loop = asyncio.get_running_loop()
        failed: asyncio.Future[CallError] | None = loop.create_future() if fail_fast else None
        tasks = [loop.create_task(self._call(prepared, limits, call, call.fingerprint in waiting)) for call in to_send]
        self._active_calls += len(tasks)
        limits.active_calls += len(tasks)
        limits.active_tokens += tokens
        for task in tasks:
            task.add_done_callback(self._call_done)
        if failed is not None:
            if failures:
                failed.set_result(next(call.error for call in calls if call.error is not None))

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
        everything = asyncio.gather(*tasks)
        try:
            if failed is None or not failed.done():
                if failed is None:
                    await everything
                else:
                    await asyncio.wait([everything, failed], return_when=asyncio.FIRST_COMPLETED)  # type: ignore[type-var]
        finally:
            if not everything.done():
                everything.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await everything
            limits.active_calls -= len(tasks)
            limits.active_tokens -= tokens
        for call, task in zip(to_send, tasks, strict=True):
            if task.cancelled() or task.exception() is not None:  # cut short by fail_fast
                continue
            outcome = task.result()
            for index in call.rows:
                outcomes[index] = outcome
            if outcome.error is None:
                answered += len(call.rows)
            else:
                failures += len(call.rows)
        self.governor.rows_done(answered, failures)
        if failed is not None:
            if failed.done():
                raise failed.result()
            failed.cancel()
            stopped = next((o.error for o in outcomes if isinstance(o.error, TaskCancelled)), None)
            if stopped is not None:
                raise stopped
        return outcomes

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
            stored = await self.governor.await_answer(call.fingerprint)
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
        request, body, request_hash = call.request, call.body, call.fingerprint
        attempts = 1
        try:
            return await self._attempt(prepared, limits, request, body, call_id, 1, request_hash, deadline)
        except AttemptFailed as first:
            if not first.decision.retry or endpoint.max_retries == 0:
                logger.debug("call %s not retried: %s", call_id, first.decision.reason)
                return first.error.with_attempts(attempts if first.sent else 0)

            async def attempt() -> Answer:
                nonlocal attempts
                attempts += 1
                try:
                    return await self._attempt(
                        prepared, limits, request, body, call_id, attempts, request_hash, deadline
                    )
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
        usage = stored.usage
        record.input_tokens = usage.get("input_tokens")
        record.output_tokens = usage.get("output_tokens")
        record.total_tokens = usage.get("total_tokens")
        record.cache_read_input_tokens = usage.get("cache_read_input_tokens")
        record.cache_creation_input_tokens = usage.get("cache_creation_input_tokens")
        record.output_reasoning_tokens = usage.get("output_reasoning_tokens")
        record.tokens_estimated = bool(usage.get("tokens_estimated"))
        price = prepared.endpoint.price
        if price is not None:  # nothing billed; what the request would have cost
            record.cost = 0.0
            record.avoided_cost = _cost(price, record)
            record.currency = price.currency
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

    async def _attempt(
        self,
        prepared: PreparedSite,
        limits: EndpointLimits,
        request: APIRequest,
        body: bytes,
        call_id: str,
        attempt: int,
        request_hash: str,
        deadline: float,
    ) -> Answer:
        endpoint = prepared.endpoint
        token_estimate = 0
        if limits.tokens is not None:
            token_estimate = estimate_tokens(request.prompt) + prepared.output_estimate
        # The slot first, then the budget: a permit is used the moment it is granted. (Permits granted to calls
        # that then queued for a slot piled up behind slots held by others waiting on the pace, and went out
        # together when those slots came free: measured, 400-600 requests in one second under a 100/s pace.)
        # A pace set while this attempt waited for its slot (a burst of 429s) applies to it too.
        # The slot is held through the begin record's round trip: a request begun before it has its slot would
        # be in the ledger (closed as lost) were its worker killed while it waited, though it never left.
        await limits.concurrency.acquire(retry=attempt > 1)
        try:
            if limits.paced:
                await self._wait_for_budget(limits, token_estimate, deadline, endpoint)
            remaining = deadline - self._clock()
            if remaining < MIN_TIMEOUT_S:
                raise AttemptFailed(
                    DeadlineExceeded(f"call deadline of {endpoint.deadline:g} s reached", endpoint=endpoint.name),
                    Decision(False, "deadline reached"),
                    sent=False,
                )
            record = self._record(prepared, call_id, attempt, request_hash)
            headers = {**prepared.headers, REQUEST_ID_HEADER: record.request_id}
            begun = self.governor.begin(record, _claim(prepared, body))
            if begun is not None:
                # The request leaves only once its record is safe (on the driver, when coordinated) and the
                # spending caps that count it let it go.
                try:
                    await begun
                except asyncio.CancelledError:
                    self.governor.withdraw(record)  # never sent: not a request of the ledger
                    raise
                except BudgetExceeded as refused:  # never journaled, never sent
                    error = BudgetExceeded(refused.message, endpoint=endpoint.name, attempts=0)
                    raise AttemptFailed(error, Decision(False, "spending cap reached"), sent=False) from None
                except UsageNotRecorded as halted:  # the driver's journal cannot record it: never sent
                    unrecorded = UsageNotRecorded(halted.message, endpoint=endpoint.name, attempts=0)
                    raise AttemptFailed(unrecorded, Decision(False, "usage journal unwritable"), sent=False) from None
                except SendingStopped:
                    # The task is being killed (its job failed or was cancelled): not sent, not recorded.
                    raise AttemptFailed(
                        TaskCancelled("not sent: the Spark task was cancelled", endpoint=endpoint.name),
                        Decision(False, "task cancelled"),
                        sent=False,
                    ) from None
                remaining = deadline - self._clock()
            if limits.learned is not None:
                limits.learned.on_sent()
            try:
                response = await self._transport.post(
                    prepared.url,
                    headers,
                    body,
                    timeout=max(MIN_TIMEOUT_S, min(endpoint.timeout, remaining)),
                    verify_tls=endpoint.verify_tls,
                    max_bytes=endpoint.max_response_bytes,
                )
            except NoResponse as failure:
                record.status_code = failure.status
                record.response_content_type = failure.content_type
                self._end_without_response(record, failure.message, failure.elapsed, failure.time_to_first_byte)
                raise no_response_failure(failure, endpoint) from None
            except asyncio.CancelledError:
                self._end_without_response(record, "cancelled before the response arrived", None, None)
                raise
            return self._finish(prepared, limits, request, record, response, token_estimate)
        finally:
            limits.concurrency.release()

    async def _wait_for_budget(
        self, limits: EndpointLimits, token_estimate: int, deadline: float, endpoint: Endpoint
    ) -> None:
        requests = limits.requests or (limits.learned.budget if limits.learned else None)
        waits = [(requests, 1.0)] if requests is not None else []
        if limits.tokens is not None:
            waits.append((limits.tokens, float(token_estimate)))
        for budget, amount in waits:
            remaining = deadline - self._clock()
            if budget.fixed:
                # A budget whose rate cannot change is exact: fail at once if the call cannot fit.
                if budget.estimated_wait(amount) > remaining:
                    raise budget_deadline(endpoint)
                await budget.acquire(amount, self._sleep)
                continue
            # A learned pace or a leased share may speed up before the call's turn comes.
            try:
                await asyncio.wait_for(budget.acquire(amount, self._sleep), timeout=max(remaining, 0.0))
            except asyncio.TimeoutError:
                raise budget_deadline(endpoint) from None

    def _record(self, prepared: PreparedSite, call_id: str, attempt: int, request_hash: str) -> UsageRecord:
        return UsageRecord(
            request_id=f"{self._id_prefix}-r{next(self._ids)}",
            call_id=call_id,
            attempt=attempt,
            event_time=dt.datetime.fromtimestamp(self._wall_clock(), tz=dt.timezone.utc),
            endpoint_name=prepared.endpoint.name,
            destination_model=prepared.endpoint.model,
            api_type=prepared.adapter.api_type,
            url=prepared.url,
            requester=prepared.requester,
            user_agent=USER_AGENT,
            request_tags=prepared.tags,
            request_hash=request_hash,
            function_name=prepared.site.function,
            # Known before sending: the spending cap refuses a request without a price in its currency.
            currency=prepared.endpoint.price.currency if prepared.endpoint.price is not None else None,
            **self.context,
        )

    def _end_without_response(
        self, record: UsageRecord, message: str, elapsed: float | None, ttfb: float | None
    ) -> None:
        record.error_message = message
        record.currency = None  # no response: whether anything was billed is unknown (cost NULL)
        record.latency_ms = None if elapsed is None else int(elapsed * 1000)
        record.time_to_first_byte_ms = None if ttfb is None else int(ttfb * 1000)
        self.governor.end(record)

    def _finish(
        self,
        prepared: PreparedSite,
        limits: EndpointLimits,
        request: APIRequest,
        record: UsageRecord,
        response: HTTPResponse,
        token_estimate: int,
    ) -> Answer:
        endpoint = prepared.endpoint
        record.status_code = response.status
        record.response_content_type = response.content_type
        record.latency_ms = int(response.elapsed * 1000)
        record.time_to_first_byte_ms = int(response.time_to_first_byte * 1000)
        if 200 <= response.status < 300:
            try:
                answer = prepared.adapter.parse_response(decode_json_body(response.body), request)
            except Exception as exc:  # whatever one answer provokes is that row's error, never the query's
                logger.debug("unusable answer to %s", record.request_id, exc_info=True)
                failure = bad_body_failure(exc, response, endpoint)
                record.error_message = failure.error.message
                record.currency = None  # what it billed is unknown (cost NULL)
                self.governor.end(record)
                raise failure from None
            usage = answer.usage
            record.input_tokens = usage.input_tokens
            record.output_tokens = usage.output_tokens
            record.total_tokens = usage.total_tokens
            record.cache_read_input_tokens = usage.cache_read_input_tokens
            record.cache_creation_input_tokens = usage.cache_creation_input_tokens
            record.output_reasoning_tokens = usage.output_reasoning_tokens
            record.tokens_estimated = usage.estimated
            price = endpoint.price
            if price is not None:
                record.cost = _cost(price, record)
                record.currency = price.currency
            self.governor.end(record)
            limits.concurrency.on_success()
            if limits.learned is not None:
                limits.learned.on_success()
            if limits.tokens is not None:
                limits.tokens.correct(usage.total_tokens - token_estimate)
            return answer
        failure = status_failure(prepared, response, self._wall_clock)
        record.error_message = failure.error.message
        if endpoint.price is not None:  # an error answer bills no tokens
            record.cost = 0.0
            record.currency = endpoint.price.currency
        self.governor.end(record)
        if response.status == 429 and failure.decision.retry:
            if not limits.paced:
                # Without a pace, fewer requests in flight is the only brake; with one, the pace is the brake, and
                # halving concurrency at every burst as well would leave too few in flight to keep the pace.
                limits.concurrency.on_rate_limited()
            if limits.learned is not None:
                limits.learned.on_rate_limited()
        raise failure

    async def aclose(self) -> None:
        """Close connections and flush the governor."""
        await self._transport.aclose()
        await self.governor.aclose()


def _claim(prepared: PreparedSite, body: bytes) -> CapClaim:
    """What the request counts against a spending cap should it end without a usage report."""
    price = prepared.endpoint.price
    return CapClaim(
        endpoint=prepared.endpoint.name,
        input_tokens=(len(body) + 1) // 4,
        output_limit=prepared.output_limit,
        input_per_million=price.input_per_million if price is not None else 0.0,
        output_per_million=price.output_per_million if price is not None else 0.0,
    )


def _cost(price: Price, record: UsageRecord) -> float | None:
    return price.cost(
        record.input_tokens, record.output_tokens, record.cache_read_input_tokens, record.cache_creation_input_tokens
    )
