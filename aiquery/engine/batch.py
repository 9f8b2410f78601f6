"""From a batch of prompts to the distinct calls the engine makes (dedupe, request bodies and fingerprints), and
from the calls' outcomes back to one outcome per row."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiquery.apis.base import APIRequest
from aiquery.apis.images import FilePrompt
from aiquery.engine.prepared import PreparedSite
from aiquery.errors import CallError

__all__ = ["Outcome", "PendingCall", "RowOutcomes", "plan_calls"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """One row's result: a value, or the error that stopped it (both None for a NULL prompt)."""

    value: str | list[float] | None = None
    error: CallError | None = None


@dataclass(slots=True)
class PendingCall:
    """One distinct request of a batch and the rows that share its answer.

    ``error`` is set, and nothing is to be sent, when the request cannot be made (invalid text, too large).
    """

    request: APIRequest
    rows: list[int] = field(default_factory=list)
    body: bytes = b""
    fingerprint: str = ""
    error: CallError | None = None


def plan_calls(prepared: PreparedSite, prompts: Sequence[str | FilePrompt | None]) -> list[PendingCall]:
    """The calls of a batch, in order of first appearance; NULL prompts make none.

    Identical requests share one call (their fingerprints are equal), unless the call site's cache is off: then
    every row is a call of its own, as when sampling several answers to one prompt on purpose.
    """
    by_prompt: dict[str | FilePrompt, PendingCall] = {}
    calls: list[PendingCall] = []
    share = prepared.site.cache
    for index, prompt in enumerate(prompts):
        if prompt is None:
            continue
        call = by_prompt.get(prompt) if share else None
        if call is None:
            call = PendingCall(prepared.request(prompt))
            calls.append(call)
            if share:
                by_prompt[prompt] = call
        call.rows.append(index)
    for call in calls:
        try:
            call.body = prepared.body(call.request)
        except CallError as error:
            call.error = error
            continue
        call.fingerprint = prepared.fingerprint(call.body)
    return calls


class RowOutcomes:
    """A batch's outcomes, row by row, as its calls end; and how many rows were answered and how many failed."""

    def __init__(self, count: int) -> None:
        self.outcomes: list[Outcome] = [Outcome()] * count
        self.answered = 0
        self.failures = 0

    def answer(self, call: PendingCall, outcome: Outcome) -> None:
        for index in call.rows:
            self.outcomes[index] = outcome
        if outcome.error is None:
            self.answered += len(call.rows)
        else:
            self.failures += len(call.rows)

    def set_aside_unsendable(self, calls: list[PendingCall]) -> list[PendingCall]:
        """Fail the rows of calls that cannot be made; the calls that can."""
        sendable = []
        for call in calls:
            if call.error is None:
                sendable.append(call)
            else:
                self.answer(call, Outcome(error=call.error))
        return sendable

    def first_error(self, calls: list[PendingCall]) -> CallError | None:
        """The error of the first call that could not be made, if any row failed so."""
        return next(call.error for call in calls if call.error is not None) if self.failures else None

    def settle(self, calls: list[PendingCall], tasks: list[asyncio.Task[Outcome]]) -> None:
        """Take the outcome of every call that ended (those cut short by ``fail_fast`` have none)."""
        for call, task in zip(calls, tasks, strict=True):
            if task.cancelled() or task.exception() is not None:
                continue
            self.answer(call, task.result())
