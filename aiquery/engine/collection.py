"""Batch mode's collect pass on a worker: the answer store answers what it can, the rest goes to the driver.

A collect pass runs a job without sending anything. For a call that can be batched (its endpoint has
``batch = true`` and the answer store is on for it) each chunk's requests are looked up in the store as usual:
a hit gives its rows the stored value (so a later statement reading them gets real input), and records nothing
(the answer was paid for, and recorded, when it was stored); a miss is handed to the driver, request and
fingerprint, to go into a provider batch, and its rows are NULL. A call that cannot be batched only counts its
rows. No row is ever an error here: a live run decides that later.

The governor's :meth:`~aiquery.engine.governor.Governor.collect` is awaited for every chunk, so a task ends only
once the driver holds its requests; a governor that cannot deliver them raises
:class:`~aiquery.errors.BatchCollectionLost` and the task fails (a request dropped would never be batched).
"""

from __future__ import annotations

from collections.abc import Sequence

from aiquery.apis.images import FilePrompt
from aiquery.apis.request_json import RequestTexts
from aiquery.engine.batch import Outcome, plan_calls
from aiquery.engine.governor import CollectCounts, Governor
from aiquery.engine.prepared import PreparedSite
from aiquery.errors import BatchCollectionLost

__all__ = ["collect_rows"]


async def collect_rows(
    governor: Governor, prepared: PreparedSite, prompts: Sequence[str | FilePrompt | None], run: str, batchable: bool
) -> list[Outcome]:
    """One chunk of a collect pass: the rows' outcomes (stored values, else NULL), once the driver has its misses.

    Args:
        run: the batch run's id (the session setting ``aiquery.batch.collect``).
        batchable: the call's requests may go into a batch (else its rows are only counted).

    Raises:
        BatchCollectionLost: the driver could not be told.
    """
    outcomes = [Outcome()] * len(prompts)
    seen = len(prompts) - prompts.count(None)
    endpoint = prepared.endpoint
    if not seen:
        return outcomes
    if not batchable:
        await governor.collect(run, endpoint.name, CollectCounts(rows=seen, skipped=seen), [])
        return outcomes
    # Requests that cannot be made (invalid text, too large) are left NULL: nothing to batch, and the live run
    # reports their error.
    calls = [call for call in plan_calls(prepared, prompts) if call.error is None]
    if not calls:
        await governor.collect(run, endpoint.name, CollectCounts(rows=seen), [])
        return outcomes
    governor.limits(endpoint, prepared.site.budget_share)  # the lookups go with a (zero) demand for its lease
    admitted = governor.admit(endpoint, 0, 0.0, [call.fingerprint for call in calls])
    admission = (await admitted) if admitted is not None else None
    if admission is None:  # no coordinator, or cut off from it: its governor says which
        await governor.collect(run, endpoint.name, CollectCounts(), [])
        raise BatchCollectionLost(
            f"batch collect run {run!r}: the driver's coordinator cannot be reached to look requests to "
            f"endpoint '{endpoint.name}' up in the answer store; the task fails rather than lose them"
        )
    hits = misses = 0
    requests = []
    texts = RequestTexts(prepared.request(""))
    for call in calls:
        stored = admission.hits.get(call.fingerprint)
        if stored is not None:
            outcome = Outcome(value=stored.value)
            for index in call.rows:
                outcomes[index] = outcome
            hits += len(call.rows)
            continue
        misses += len(call.rows)
        requests.append((call.fingerprint, texts.text(call.request)))
        if call.fingerprint not in admission.waiting:
            governor.settled(call.fingerprint, None)  # the lookup claimed it for this worker: nothing will be sent
    await governor.collect(run, endpoint.name, CollectCounts(rows=seen, hits=hits, misses=misses), requests)
    return outcomes
