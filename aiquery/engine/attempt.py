"""One HTTP attempt of a call: a concurrency slot, the pace, the begin record, the request and its settled record.

Every attempt that leaves has a usage record the governor holds before it is sent and that is ended whatever the
outcome; one stopped before sending (deadline, spending cap, task killed) is withdrawn or never begun, and raises
:class:`~aiquery.engine.retry.AttemptFailed` with ``sent=False``. The limits learn from each answer here: a
success grows concurrency and the learned pace, a retryable 429 brakes them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiquery.apis.base import Answer, APIRequest, estimate_tokens
from aiquery.apis.json_body import decode_json_body
from aiquery.config import Endpoint
from aiquery.engine.batch import PendingCall
from aiquery.engine.failures import bad_body_failure, budget_deadline, no_response_failure, status_failure
from aiquery.engine.governor import EndpointLimits, Governor, SendingStopped
from aiquery.engine.prepared import REQUEST_ID_HEADER, PreparedSite
from aiquery.engine.retry import AttemptFailed, Decision
from aiquery.engine.transport import MIN_TIMEOUT_S, HTTPResponse, NoResponse, Transport
from aiquery.engine.usage_records import cap_claim, price_record, record_usage
from aiquery.errors import BudgetExceeded, DeadlineExceeded, TaskCancelled, UsageNotRecorded
from aiquery.usage.record import UsageRecord

__all__ = ["AttemptSender", "NewRecord"]

logger = logging.getLogger("aiquery.engine")

NewRecord = Callable[[PreparedSite, str, int, str], UsageRecord]
"""Opens the usage record of an attempt: (prepared site, call id, attempt number, request fingerprint)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptSender:
    """Makes single attempts of calls for an engine, against its governor and over its transport."""

    governor: Governor
    transport: Transport
    new_record: NewRecord
    sleep: Callable[[float], Awaitable[None]]
    clock: Callable[[], float]
    wall_clock: Callable[[], float]

    async def send(
        self,
        prepared: PreparedSite,
        limits: EndpointLimits,
        call: PendingCall,
        call_id: str,
        attempt: int,
        deadline: float,
    ) -> Answer:
        """Make attempt number ``attempt`` of ``call`` and return its answer.

        Raises:
            AttemptFailed: the attempt failed, or was stopped before sending (``sent`` False).
        """
        token_estimate = 0
        if limits.tokens is not None:
            token_estimate = estimate_tokens(call.request.prompt) + prepared.output_estimate
        # The slot first, then the budget: a permit is used the moment it is granted. (Permits granted to calls
        # that then queue for a slot pile up behind slots held by others waiting on the pace, and go out
        # together when those slots come free: 400-600 requests in one second under a 100/s pace.)
        # A pace set while this attempt waited for its slot (a burst of 429s) applies to it too.
        # The slot is held through the begin record's round trip: a request begun before it has its slot would
        # be in the ledger (closed as lost) were its worker killed while it waited, though it never left.
        await limits.concurrency.acquire(retry=attempt > 1)
        try:
            # The pace and the begin's round trip are awaited only where there is one: an await of a coroutine
            # costs about a microsecond per attempt even when it does not wait.
            if limits.paced:
                await self._wait_for_budget(limits, token_estimate, deadline, prepared.endpoint)
            remaining = self._time_left(deadline, prepared.endpoint)
            record = self.new_record(prepared, call_id, attempt, call.fingerprint)
            begun = self.governor.begin(record, cap_claim(prepared, call.body))
            if begun is not None:
                await self._begun(begun, record, prepared.endpoint)
                remaining = deadline - self.clock()
            if limits.learned is not None:
                limits.learned.on_sent()
            headers = {**prepared.headers, REQUEST_ID_HEADER: record.request_id}
            response = await self._post(prepared, record, headers, call.body, remaining)
            if 200 <= response.status < 300:
                return self._accept(prepared, limits, call.request, record, response, token_estimate)
            raise self._refusal(prepared, limits, record, response)
        finally:
            limits.concurrency.release()

    def _time_left(self, deadline: float, endpoint: Endpoint) -> float:
        """The seconds left before the deadline, if a request still fits in them."""
        remaining = deadline - self.clock()
        if remaining < MIN_TIMEOUT_S:
            raise AttemptFailed(
                DeadlineExceeded(f"call deadline of {endpoint.deadline:g} s reached", endpoint=endpoint.name),
                Decision(False, "deadline reached"),
                sent=False,
            )
        return remaining

    async def _wait_for_budget(
        self, limits: EndpointLimits, token_estimate: int, deadline: float, endpoint: Endpoint
    ) -> None:
        requests = limits.requests or (limits.learned.budget if limits.learned else None)
        waits = [(requests, 1.0)] if requests is not None else []
        if limits.tokens is not None:
            waits.append((limits.tokens, float(token_estimate)))
        for budget, amount in waits:
            remaining = deadline - self.clock()
            if budget.fixed:
                # A budget whose rate cannot change is exact: fail at once if the call cannot fit.
                if budget.estimated_wait(amount) > remaining:
                    raise budget_deadline(endpoint)
                await budget.acquire(amount, self.sleep)
                continue
            # A learned pace or a leased share may speed up before the call's turn comes.
            try:
                await asyncio.wait_for(budget.acquire(amount, self.sleep), timeout=max(remaining, 0.0))
            except asyncio.TimeoutError:
                raise budget_deadline(endpoint) from None

    async def _begun(self, begun: Awaitable[None], record: UsageRecord, endpoint: Endpoint) -> None:
        """Wait for the governor to hold the record's begin.

        The request leaves only once its record is safe (on the driver, when coordinated) and the spending caps
        that count it let it go.
        """
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

    async def _post(
        self, prepared: PreparedSite, record: UsageRecord, headers: dict[str, str], body: bytes, remaining: float
    ) -> HTTPResponse:
        """Send the request; without a complete response, end its record and raise the failure."""
        endpoint = prepared.endpoint
        try:
            response = await self.transport.post(
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
        record.status_code = response.status
        record.response_content_type = response.content_type
        record.latency_ms = int(response.elapsed * 1000)
        record.time_to_first_byte_ms = int(response.time_to_first_byte * 1000)
        return response

    def _end_without_response(
        self, record: UsageRecord, message: str, elapsed: float | None, ttfb: float | None
    ) -> None:
        record.error_message = message
        record.currency = None  # no response: whether anything was billed is unknown (cost NULL)
        record.latency_ms = None if elapsed is None else int(elapsed * 1000)
        record.time_to_first_byte_ms = None if ttfb is None else int(ttfb * 1000)
        self.governor.end(record)

    def _accept(
        self,
        prepared: PreparedSite,
        limits: EndpointLimits,
        request: APIRequest,
        record: UsageRecord,
        response: HTTPResponse,
        token_estimate: int,
    ) -> Answer:
        """A 2xx response: its answer, with the record ended at its usage and cost; the limits may grow."""
        try:
            answer = prepared.adapter.parse_response(decode_json_body(response.body), request)
        except Exception as exc:  # whatever one answer provokes is that row's error, never the query's
            logger.debug("unusable answer to %s", record.request_id, exc_info=True)
            failure = bad_body_failure(exc, response, prepared.endpoint)
            record.error_message = failure.error.message
            record.currency = None  # what it billed is unknown (cost NULL)
            self.governor.end(record)
            raise failure from None
        record_usage(record, answer.usage)
        if prepared.endpoint.price is not None:
            record.cost = price_record(record, prepared.endpoint.price)
        self.governor.end(record)
        limits.concurrency.on_success()
        if limits.learned is not None:
            limits.learned.on_success()
        if limits.tokens is not None:
            limits.tokens.correct(answer.usage.total_tokens - token_estimate)
        return answer

    def _refusal(
        self, prepared: PreparedSite, limits: EndpointLimits, record: UsageRecord, response: HTTPResponse
    ) -> AttemptFailed:
        """An error status: the failure to raise, with the record ended; a retryable 429 brakes the limits."""
        failure = status_failure(prepared, response, self.wall_clock)
        record.error_message = failure.error.message
        price = prepared.endpoint.price
        if price is not None:  # an error answer bills no tokens
            record.cost = 0.0
            record.currency = price.currency
        self.governor.end(record)
        if response.status == 429 and failure.decision.retry:
            if not limits.paced:
                # Without a pace, fewer requests in flight is the only brake; with one, the pace is the brake, and
                # halving concurrency at every burst as well would leave too few in flight to keep the pace.
                limits.concurrency.on_rate_limited()
            if limits.learned is not None:
                limits.learned.on_rate_limited()
        return failure
