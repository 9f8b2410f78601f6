"""The batch engine: fan a batch of prompts out to one endpoint and return one outcome per row, in order.

For each batch: NULL prompts give NULL without a request; identical prompts are sent once; every other prompt
becomes one *call*, made of one or more HTTP *attempts*. Each attempt waits for a concurrency slot and, where
the endpoint has one, a request and token budget; each attempt is one usage record handed to the sink, begun
before the request leaves and ended when it is over, whatever the outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import itertools
import json
import logging
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import tenacity

from aiquery import __version__
from aiquery.apis import get_adapter
from aiquery.apis.base import Adapter, Answer, APIRequest, MalformedResponse, ResponseFormat, estimate_tokens
from aiquery.config import DEFAULT_MAX_REQUEST_BYTES, Endpoint
from aiquery.engine.limiter import AdaptiveConcurrency, LearnedRate, PacedBudget
from aiquery.engine.retry import (
    AttemptFailed,
    Decision,
    is_retryable,
    retry_decision,
    stop_before_deadline,
    wait_retry_after,
)
from aiquery.engine.transport import MIN_TIMEOUT_S, HTTPResponse, NoResponse, Transport
from aiquery.errors import (
    CallError,
    DeadlineExceeded,
    RequestTimeout,
    ResponseError,
    TransportError,
    status_error_class,
)
from aiquery.usage.record import MemorySink, UsageRecord, UsageSink

__all__ = ["USER_AGENT", "CallSite", "Engine", "Outcome"]

logger = logging.getLogger("aiquery.engine")

USER_AGENT = (
    f"aiquery/{__version__} python/{sys.version_info.major}.{sys.version_info.minor} aiohttp/{aiohttp.__version__}"
)
TAGS_HEADER = "Databricks-Ai-Gateway-Request-Tags"
AUTH_STATUSES = frozenset({401, 403})
REQUEST_ID_HEADER = "X-Client-Request-Id"
_PROMPT_SENTINEL = "\u0000aiquery-prompt\u0000"
# Output tokens assumed for a token budget when the call sets no max_tokens; corrected after the response.
DEFAULT_OUTPUT_ESTIMATE = 256
_AUTH_HEADERS: Mapping[str, Callable[[str], tuple[str, str]]] = {
    "bearer": lambda token: ("Authorization", f"Bearer {token}"),
    "x-api-key": lambda token: ("x-api-key", token),
    "x-goog-api-key": lambda token: ("x-goog-api-key", token),
}


@dataclass(frozen=True, kw_only=True)
class CallSite:
    """Everything about one ai_query call site except the prompt: the same for every row."""

    endpoint: Endpoint
    parameters: Mapping[str, Any] = field(default_factory=dict)
    """Model parameters under Databricks' names, already validated."""
    response_format: ResponseFormat | None = None
    request_tags: Mapping[str, str] = field(default_factory=dict)
    """Tags of this call site; they extend (and override) the endpoint's configured tags."""
    budget_share: float = 1.0
    """The fraction of the endpoint's request and token budgets this process may use (1/N for N workers)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """One row's result: a value, or the error that stopped it (both None for a NULL prompt)."""

    value: str | list[float] | None = None
    error: CallError | None = None


class _EndpointLimits:
    """Limits shared by every call to one endpoint from this process."""

    def __init__(self, endpoint: Endpoint, clock: Callable[[], float], budget_share: float) -> None:
        self.concurrency = AdaptiveConcurrency(endpoint.max_concurrency, clock=clock)
        self.requests = (
            PacedBudget(endpoint.requests_per_minute * budget_share / 60.0, clock=clock)
            if endpoint.requests_per_minute
            else None
        )
        self.tokens = (
            PacedBudget(endpoint.tokens_per_minute * budget_share / 60.0, clock=clock)
            if endpoint.tokens_per_minute
            else None
        )
        self.learned = LearnedRate(clock=clock) if self.requests is None else None


class _Prepared:
    """A call site made ready to send: adapter, URL, headers, and hashing prefix."""

    def __init__(self, site: CallSite, requester: str) -> None:
        endpoint = site.endpoint
        self.site = site
        self.endpoint = endpoint
        self.adapter: Adapter = get_adapter(endpoint.api)
        self.url = self.adapter.url(endpoint.base_url, endpoint.model)
        self.tags = {**endpoint.request_tags, **site.request_tags}
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **self.adapter.headers()}
        if endpoint.token is not None and endpoint.auth in _AUTH_HEADERS:
            name, value = _AUTH_HEADERS[endpoint.auth](endpoint.token.reveal())
            headers[name] = value
        if self.tags:
            headers[TAGS_HEADER] = json.dumps(self.tags, separators=(",", ":"))
        self.headers = headers
        self.requester = requester
        self.hash_prefix = f"{endpoint.name}\0{endpoint.api}\0".encode()
        max_tokens = site.parameters.get("max_tokens")
        self.output_estimate = int(max_tokens) if isinstance(max_tokens, (int, float)) else DEFAULT_OUTPUT_ESTIMATE
        self._template = self._body_template()

    def encode(self, request: APIRequest) -> str:
        """The JSON body for ``request``: the site's template with the prompt spliced in, when possible."""
        if self._template is None:
            return json.dumps(self.adapter.build_body(request), ensure_ascii=False, separators=(",", ":"))
        prefix, suffix = self._template
        return prefix + json.dumps(request.prompt, ensure_ascii=False)[1:-1] + suffix

    def _body_template(self) -> tuple[str, str] | None:
        # Every row of a call site has the same body but for the prompt: build it once around a sentinel and
        # splice each prompt's JSON string in, instead of building and encoding the whole body per row.
        body = self.adapter.build_body(self.request(_PROMPT_SENTINEL))
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        parts = text.split(json.dumps(_PROMPT_SENTINEL, ensure_ascii=False)[1:-1])
        return (parts[0], parts[1]) if len(parts) == 2 else None

    def request(self, prompt: str) -> APIRequest:
        return APIRequest(
            prompt=prompt,
            model=self.endpoint.model,
            parameters=self.site.parameters,
            response_format=self.site.response_format,
        )


class Engine:
    """Sends batches of prompts to endpoints. Create and use it inside one event loop.

    Args:
        sink: where usage records go (a :class:`MemorySink` when None).
        requester: who the usage table says made the requests.
        sleep: the coroutine used for every wait (injected by tests so they never really sleep).
        clock: monotonic seconds, for deadlines and limits.
        wall_clock: epoch seconds, for event times and HTTP-date Retry-After values.
    """

    def __init__(
        self,
        *,
        sink: UsageSink | None = None,
        requester: str = "",
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        transport: Transport | None = None,
    ) -> None:
        self.sink: UsageSink = sink if sink is not None else MemorySink()
        self.requester = requester
        self.context: dict[str, Any] = {}
        """Extra usage-record fields for what runs now (Spark application, task attempt, query tag)."""
        self._sleep = sleep
        self._clock = clock
        self._wall_clock = wall_clock
        self._transport = transport or Transport()
        self._limits: dict[tuple[str, str, str], _EndpointLimits] = {}
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

    def limits(self, endpoint: Endpoint, budget_share: float = 1.0) -> _EndpointLimits:
        """The limits this process keeps for an endpoint (created on first use)."""
        key = (endpoint.name, endpoint.base_url, endpoint.api)
        limits = self._limits.get(key)
        if limits is None:
            limits = self._limits[key] = _EndpointLimits(endpoint, self._clock, budget_share)
        limits.concurrency.maximum = endpoint.max_concurrency
        return limits

    async def run(self, site: CallSite, prompts: Sequence[str | None], *, fail_fast: bool = False) -> list[Outcome]:
        """One outcome per prompt, in order.

        Args:
            site: the endpoint and the literal arguments of the call.
            prompts: the request column; None gives an empty outcome and sends nothing.
            fail_fast: on the first row that fails for good, cancel the rest and raise its error.

        Raises:
            CallError: only with ``fail_fast``.
        """
        prepared = _Prepared(site, self.requester)
        limits = self.limits(site.endpoint, site.budget_share)
        outcomes: list[Outcome] = [Outcome()] * len(prompts)
        rows: dict[str, list[int]] = {}
        for index, prompt in enumerate(prompts):
            if prompt is not None:
                rows.setdefault(prompt, []).append(index)
        if not rows:
            return outcomes
        loop = asyncio.get_running_loop()
        failed: asyncio.Future[CallError] | None = loop.create_future() if fail_fast else None
        tasks = [loop.create_task(self._call(prepared, limits, prompt)) for prompt in rows]
        self._active_calls += len(tasks)
        for task in tasks:
            task.add_done_callback(self._call_done)
        if failed is not None:

            def signal(task: asyncio.Task[Outcome]) -> None:
                # A done-callback, not another coroutine layer: every await in a call passes through each layer.
                if not task.cancelled() and task.result().error is not None and not failed.done():
                    failed.set_result(task.result().error)  # type: ignore[arg-type]

            for task in tasks:
                task.add_done_callback(signal)
        everything = asyncio.gather(*tasks)
        try:
            if failed is None:
                await everything
            else:
                await asyncio.wait([everything, failed], return_when=asyncio.FIRST_COMPLETED)  # type: ignore[type-var]
        finally:
            if not everything.done():
                everything.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await everything
        if failed is not None:
            if failed.done():
                raise failed.result()
            failed.cancel()
        for prompt, task in zip(rows, tasks, strict=True):
            outcome = task.result()
            for index in rows[prompt]:
                outcomes[index] = outcome
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

    async def _call(self, prepared: _Prepared, limits: _EndpointLimits, prompt: str) -> Outcome:
        endpoint = prepared.endpoint
        deadline = self._clock() + endpoint.deadline
        call_id = f"{self._id_prefix}-c{next(self._ids)}"
        request = prepared.request(prompt)
        try:
            body = self._encode(prepared, request)
        except CallError as error:
            return Outcome(error=error)
        request_hash = hashlib.sha256(prepared.hash_prefix + body).hexdigest()
        attempts = 1
        try:
            answer = await self._attempt(prepared, limits, request, body, call_id, 1, request_hash, deadline)
        except AttemptFailed as first:
            if not first.decision.retry or endpoint.max_retries == 0:
                logger.debug("call %s not retried: %s", call_id, first.decision.reason)
                return Outcome(error=first.error.with_attempts(attempts if first.sent else 0))

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
                return Outcome(error=answer_or_error.with_attempts(attempts))
            answer = answer_or_error
        return Outcome(value=answer.value)

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
            if not last.sent or (last.decision.retry and retrying.statistics["attempt_number"] <= endpoint.max_retries):
                # The deadline is what stopped it: before a retry could be sent, or with attempts left.
                return DeadlineExceeded(
                    f"{_deadline_reason(last, endpoint)}; last error: {last_sent.error.describe()}",
                    endpoint=endpoint.name,
                )
            return last.error

    def _encode(self, prepared: _Prepared, request: APIRequest) -> bytes:
        try:
            encoded = prepared.encode(request).encode("utf-8")
        except UnicodeEncodeError as exc:
            bad = exc.object[exc.start : exc.end]
            if "\udc80" <= bad[0] <= "\udcff":
                # A byte that was not UTF-8, kept by the Spark UDF's surrogateescape decoding (see udf._prompts).
                what = f"not valid UTF-8 (byte 0x{ord(bad[0]) - 0xDC00:02X})"
            else:
                what = f"not valid Unicode (unpaired surrogate {bad!r})"
            raise CallError(
                f"the request text is {what}; clean the column before calling ai_query",
                endpoint=prepared.endpoint.name,
                attempts=0,
            ) from None
        if len(encoded) > DEFAULT_MAX_REQUEST_BYTES:
            raise CallError(
                f"the request body is {len(encoded) / 1e6:.1f} MB, above the {DEFAULT_MAX_REQUEST_BYTES >> 20} MiB "
                f"limit; shorten the prompt",
                endpoint=prepared.endpoint.name,
                attempts=0,
            )
        return encoded

    async def _attempt(
        self,
        prepared: _Prepared,
        limits: _EndpointLimits,
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
        if (
            limits.requests is not None
            or limits.tokens is not None
            or (limits.learned is not None and limits.learned.budget is not None)
        ):
            await self._wait_for_budget(limits, token_estimate, deadline, endpoint)
        await limits.concurrency.acquire(retry=attempt > 1)
        try:
            remaining = deadline - self._clock()
            if remaining < MIN_TIMEOUT_S:
                raise AttemptFailed(
                    DeadlineExceeded(f"call deadline of {endpoint.deadline:g} s reached", endpoint=endpoint.name),
                    Decision(False, "deadline reached"),
                    sent=False,
                )
            record = self._record(prepared, call_id, attempt, request_hash)
            headers = {**prepared.headers, REQUEST_ID_HEADER: record.request_id}
            self.sink.begin(record)
            try:
                response = await self._transport.post(
                    prepared.url,
                    headers,
                    body,
                    timeout=min(endpoint.timeout, remaining),
                    verify_tls=endpoint.verify_tls,
                )
            except NoResponse as failure:
                self._end_without_response(record, failure.message, failure.elapsed, failure.time_to_first_byte)
                raise self._no_response_failure(failure, endpoint, deadline) from None
            except asyncio.CancelledError:
                self._end_without_response(record, "cancelled before the response arrived", None, None)
                raise
            return self._finish(prepared, limits, request, record, response, token_estimate)
        finally:
            limits.concurrency.release()

    async def _wait_for_budget(
        self, limits: _EndpointLimits, token_estimate: int, deadline: float, endpoint: Endpoint
    ) -> None:
        requests = limits.requests or (limits.learned.budget if limits.learned else None)
        waits = [(requests, 1.0)] if requests is not None else []
        if limits.tokens is not None:
            waits.append((limits.tokens, float(token_estimate)))
        for budget, amount in waits:
            remaining = deadline - self._clock()
            # A configured budget is exact: fail at once if the call cannot fit. A learned one may speed up.
            if budget is not requests or limits.requests is not None:
                if budget.estimated_wait(amount) > remaining:
                    raise self._budget_deadline(endpoint)
                await budget.acquire(amount, self._sleep)
                continue
            try:
                await asyncio.wait_for(budget.acquire(amount, self._sleep), timeout=max(remaining, 0.0))
            except asyncio.TimeoutError:
                raise self._budget_deadline(endpoint) from None

    @staticmethod
    def _budget_deadline(endpoint: Endpoint) -> AttemptFailed:
        return AttemptFailed(
            DeadlineExceeded(
                f"the endpoint's rate budget cannot fit this call before its {endpoint.deadline:g} s deadline",
                endpoint=endpoint.name,
            ),
            Decision(False, "budget wait past the deadline"),
            sent=False,
        )

    def _record(self, prepared: _Prepared, call_id: str, attempt: int, request_hash: str) -> UsageRecord:
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
            **self.context,
        )

    def _end_without_response(
        self, record: UsageRecord, message: str, elapsed: float | None, ttfb: float | None
    ) -> None:
        record.error_message = message
        record.latency_ms = None if elapsed is None else int(elapsed * 1000)
        record.time_to_first_byte_ms = None if ttfb is None else int(ttfb * 1000)
        self.sink.end(record)

    def _no_response_failure(self, failure: NoResponse, endpoint: Endpoint, deadline: float) -> AttemptFailed:
        error_type = RequestTimeout if failure.kind == "timeout" else TransportError
        error = error_type(failure.message, endpoint=endpoint.name)
        decision = retry_decision(
            None, {}, max_retry_after=endpoint.max_retry_after, transport_retryable=failure.retryable
        )
        return AttemptFailed(error, decision)

    def _finish(
        self,
        prepared: _Prepared,
        limits: _EndpointLimits,
        request: APIRequest,
        record: UsageRecord,
        response: HTTPResponse,
        token_estimate: int,
    ) -> Answer:
        endpoint = prepared.endpoint
        record.status_code = response.status
        record.latency_ms = int(response.elapsed * 1000)
        record.time_to_first_byte_ms = int(response.time_to_first_byte * 1000)
        if 200 <= response.status < 300:
            try:
                answer = prepared.adapter.parse_response(json.loads(response.body.decode()), request)
            except (ValueError, MalformedResponse) as exc:
                failure = self._bad_body_failure(exc, response, endpoint)
                record.error_message = failure.error.message
                self.sink.end(record)
                raise failure from None
            usage = answer.usage
            record.input_tokens = usage.input_tokens
            record.output_tokens = usage.output_tokens
            record.total_tokens = usage.total_tokens
            record.cache_read_input_tokens = usage.cache_read_input_tokens
            record.cache_creation_input_tokens = usage.cache_creation_input_tokens
            record.output_reasoning_tokens = usage.output_reasoning_tokens
            record.tokens_estimated = usage.estimated
            self.sink.end(record)
            limits.concurrency.on_success()
            if limits.learned is not None:
                limits.learned.on_success()
            if limits.tokens is not None:
                limits.tokens.correct(usage.total_tokens - token_estimate)
            return answer
        failure = self._status_failure(prepared, response)
        record.error_message = failure.error.message
        self.sink.end(record)
        if response.status == 429 and failure.decision.retry:
            limits.concurrency.on_rate_limited()
            if limits.learned is not None:
                limits.learned.on_rate_limited()
        raise failure

    def _bad_body_failure(self, exc: Exception, response: HTTPResponse, endpoint: Endpoint) -> AttemptFailed:
        text = response.body[:200].decode("utf-8", "replace")
        if isinstance(exc, MalformedResponse):
            # Valid JSON without the answer will look the same next time: not retried.
            return AttemptFailed(
                ResponseError(f"response has no usable answer: {exc}", endpoint=endpoint.name, body=text),
                Decision(False, "response without an answer"),
            )
        return AttemptFailed(
            ResponseError(f"response is not valid JSON: {text!r}", endpoint=endpoint.name, body=text),
            Decision(True, "malformed JSON body"),
        )

    def _status_failure(self, prepared: _Prepared, response: HTTPResponse) -> AttemptFailed:
        endpoint = prepared.endpoint
        text = response.body.decode("utf-8", "replace")
        try:
            decoded: Any = json.loads(text)
        except ValueError:
            decoded = text
        verdict = prepared.adapter.parse_error(response.status, decoded)
        decision = retry_decision(
            response.status,
            response.headers,
            verdict_retryable=verdict.retryable,
            max_retry_after=endpoint.max_retry_after,
            body_delay=verdict.retry_after,
            now=self._wall_clock,
        )
        message = verdict.message
        if response.status in AUTH_STATUSES and not decision.retry:
            # Providers rarely say which credential failed; name the variable (never its value) and say that
            # retrying would not help, so nobody waits for a retry that is not coming.
            message = f"{message} (not retried: check the token in {endpoint.token_env})"
        elif response.status == 404 and not decision.retry:
            # An unknown endpoint name or a wrong base_url: say which URL was asked, so the fix is obvious.
            message = f"{message} (not retried: no model {endpoint.model!r} at {prepared.url}; check the name)"
        error = status_error_class(response.status)(
            message,
            endpoint=endpoint.name,
            status_code=response.status,
            headers=response.headers,
            body=text,
        )
        return AttemptFailed(error, decision)

    async def aclose(self) -> None:
        """Close connections and flush the sink."""
        await self._transport.aclose()
        self.sink.flush()


def _deadline_reason(last: AttemptFailed, endpoint: Endpoint) -> str:
    """What stopped a call at its deadline: the unsent attempt's own reason, or the deadline itself."""
    return last.error.message if not last.sent else f"call deadline of {endpoint.deadline:g} s reached"
