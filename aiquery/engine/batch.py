"""From a batch of prompts to the distinct calls the engine makes: dedupe, request bodies and fingerprints."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from aiquery.apis.base import APIRequest
from aiquery.apis.images import FilePrompt
from aiquery.engine.prepared import PreparedSite
from aiquery.errors import CallError

__all__ = ["PendingCall", "plan_calls"]


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
