"""``aiquery run JOB.sql --batch``: a job's calls through the providers' batch APIs, at their batch price.

For every endpoint with ``batch = true``, in rounds (at most ``rounds``):

1. *collect*: the job runs as an estimate runs it (user tables not written; ``ai_agg`` gives NULL there) with
   ``aiquery.batch.collect`` set; each call hands its answer-store misses to the coordinator's collector, which
   keeps them (deduplicated) in the run's state folder, and gets NULL;
2. *submit, wait, store* (:func:`aiquery.provider_batches.provider_run.send_and_store`);

until a collect pass finds nothing new (a call fed by another call's answers gets its real inputs one round
later). Then the job runs as usual with ``aiquery.batch.run`` set: the batched rows come from the answer store or
the state folder (cache hits carrying their ``batch_id``), a failed or expired line is sent live or fails with its
error (``fallback``), and every other call runs live.

The state folder is ``<usage folder>/batch/<hash of the job's statements>`` unless given; it is locked for the
run, and a run started again on it resumes: nothing submitted twice, nothing stored twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from aiquery.config import Endpoint, Settings
from aiquery.errors import ConfigError
from aiquery.jobs.estimate_run import AGGREGATE_CALL, plan_statement, run_dry_pass
from aiquery.jobs.script import Statement
from aiquery.provider_batches.collect_sink import CollectSink
from aiquery.provider_batches.provider_run import RoundReport, new_run_tag, send_and_store
from aiquery.provider_batches.result_storing import LedgerSide
from aiquery.provider_batches.run_state import RunState
from aiquery.spark.call_context import BATCH_COLLECT_SETTING, BATCH_RUN_SETTING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["DEFAULT_BATCH_ROUNDS", "DEFAULT_BATCH_WAIT_S", "BatchOptions", "BatchPhase", "batch_phase"]

DEFAULT_BATCH_WAIT_S = 24 * 3600.0
DEFAULT_BATCH_ROUNDS = 3
FALLBACKS = ("live", "fail")
FINISHED = "finished"
"""The state's mark of a run whose run pass succeeded: the next run on the folder starts afresh."""
MIN_CAP = 1e-9
"""What the live calls may spend once the batches took the whole cap: nothing worth a request."""


@dataclass(frozen=True, kw_only=True)
class BatchOptions:
    """A batch run's choices (the ``--batch-*`` options)."""

    state_dir: str | None = None
    wait_s: float = DEFAULT_BATCH_WAIT_S
    fallback: str = "live"
    rounds: int = DEFAULT_BATCH_ROUNDS
    max_cost: float | None = None
    currency: str = "USD"


@dataclass
class BatchPhase:
    """What the batch phase did, for the run's summary."""

    state_dir: Path
    run: str
    rounds: int = 0
    collected: int = 0
    created: int = 0
    answered: int = 0
    failed: int = 0
    expired: int = 0
    submitted_cost: float = 0.0
    last_collect: str = ""
    notes: list[str] = field(default_factory=list)

    def summary(self) -> list[str]:
        lines = [
            f"batch mode ({self.state_dir}): {self.collected} request(s) collected in {self.rounds} round(s), "
            f"{self.created} batch(es) created; {self.answered} line(s) answered, {self.failed} failed, "
            f"{self.expired} expired or cancelled"
        ]
        return lines + self.notes


def batch_endpoints(settings: Settings) -> dict[str, Endpoint]:
    """The endpoints whose calls go through a batch API.

    Raises:
        ConfigError: none has ``batch = true``.
    """
    found = {name: settings.endpoint(name) for name, raw in settings.endpoints.items() if raw.get("batch") is True}
    if not found:
        raise ConfigError("--batch: no endpoint has batch = true (set it on the endpoints to send in batches)")
    return found


def default_state_dir(usage_dir: Path, statements: Sequence[Statement]) -> Path:
    """``<usage folder>/batch/<hash>``: the same job with the same variables resumes the same state."""
    digest = hashlib.sha256("\0".join(statement.sql for statement in statements).encode()).hexdigest()
    return usage_dir / "batch" / digest[:20]


def batch_phase(
    spark: SparkSession,
    statements: Sequence[Statement],
    options: BatchOptions,
    *,
    query_tag: str,
    progress: IO[str],
) -> tuple[BatchPhase, RunState]:
    """Collect, submit, wait and store, in rounds; the state (still locked: the run pass reads it) and a report."""
    from aiquery.spark.registry import context_for, ledger_for
    from aiquery.usage.ingest import usage_folder

    info = context_for(spark)
    coordinator = info.service
    if coordinator is None:
        raise ConfigError("--batch needs the application's coordinator, which is not running")
    endpoints = batch_endpoints(info.settings)
    ledger = ledger_for(spark)
    usage_dir = usage_folder(spark, info.settings.usage)
    folder = Path(options.state_dir) if options.state_dir else default_state_dir(usage_dir, statements)
    state = RunState(folder)
    try:
        if state.meta(FINISHED) is not None:
            state.reset()
        run = new_run_tag(state)
        phase = BatchPhase(state_dir=folder, run=run)
        side = None
        if ledger is not None:
            side = LedgerSide(spool_dir=Path(ledger.spool_dir), run=run, query_tag=query_tag,
                              requester=info.settings.requester)  # fmt: skip
        store = coordinator.answers.store(info.store) if info.store else None
        put = store.put_many if store is not None else None
        # ai_agg statements run too (their calls give NULL and collect nothing): later statements may read them.
        actions = [plan_statement(statement) for statement in statements]
        deadline = time.monotonic() + options.wait_s
        for round_number in range(1, options.rounds + 1):
            new = _collect(spark, coordinator, state, actions, run, round_number)
            phase.last_collect = collect_run(run, round_number)
            phase.collected = state.request_count()
            if not new and not _unfinished(state, endpoints):
                break
            phase.rounds = round_number
            report = asyncio.run(
                send_and_store(state, endpoints, tag=run, deadline=deadline, ledger=side, put_answers=put,
                               budget=_budget(options, state, endpoints), progress=_printer(progress))
            )  # fmt: skip
            _add(phase, report)
            if time.monotonic() >= deadline:
                phase.notes.append("the --batch-wait time ran out: what the batches did not answer runs live")
                break
        phase.submitted_cost = sum(row.cost or 0.0 for row in state.batches())
        _count_outcomes(phase, state)
        return phase, state
    except BaseException:
        state.close()
        raise


def _collect(
    spark: SparkSession, coordinator: Any, state: RunState, actions: list[Any], run: str, round_number: int
) -> int:
    """One collect pass; how many requests it found that the state did not hold."""
    sink = CollectSink(state, round_number)
    # A collect id per round: the coordinator's counts of the last one say which rows cannot be batched.
    collect_id = collect_run(run, round_number)
    coordinator.set_collector(collect_id, sink, raw=True)
    try:
        run_dry_pass(spark, actions, collect_id, {BATCH_COLLECT_SETTING: collect_id})
    finally:
        coordinator.set_collector(collect_id, None)
        new = sink.close()
    return new


def collect_run(run: str, round_number: int) -> str:
    """The collect pass's id (its setting's value and query tag) in round ``round_number``."""
    return f"{run}-collect-{round_number}"


def _unfinished(state: RunState, endpoints: Mapping[str, Endpoint]) -> bool:
    """Requests not yet in a batch, or batches not yet stored."""
    if any(state.unsent(name) for name in endpoints):
        return True
    return any(row.provider_id is None or not row.stored for row in state.batches())


def _budget(
    options: BatchOptions, state: RunState, endpoints: Mapping[str, Endpoint]
) -> Callable[[float], bool] | None:
    """The cost cap's check of a batch about to be submitted (counting what the run submitted before)."""
    if options.max_cost is None:
        return None
    spent = [sum(row.cost or 0.0 for row in state.batches())]
    currencies = {endpoint.price.currency if endpoint.price else None for endpoint in endpoints.values()}

    def allows(cost: float) -> bool:
        if currencies != {options.currency} or spent[0] + cost > float(options.max_cost or 0.0):
            return False
        spent[0] += cost
        return True

    return allows


def _printer(stream: IO[str]) -> Callable[[str], None]:
    def show(line: str) -> None:
        stream.write(line + "\n")
        stream.flush()

    return show


def _add(phase: BatchPhase, report: RoundReport) -> None:
    phase.created += report.created
    phase.notes.extend(report.notes + report.stored.notes)


def _count_outcomes(phase: BatchPhase, state: RunState) -> None:
    counts = state.outcome_kinds()
    phase.answered = counts.get("succeeded", 0)
    phase.failed = counts.get("errored", 0) + counts.get("failed", 0)
    phase.expired = counts.get("expired", 0) + counts.get("cancelled", 0)


class StateResults:
    """The run pass's source of batch answers (:class:`aiquery.coordinator.batch_results.BatchResults`): the
    state's answers, and its failures when they are to fail (``fallback`` ``fail``; with ``live`` they are
    misses, sent live)."""

    def __init__(self, state: RunState, fallback: str) -> None:
        self.state = state
        self.fallback = fallback

    def answers(self, fingerprints: Sequence[str]) -> Mapping[str, str]:
        return self.state.answers(fingerprints)

    def failures(self, fingerprints: Sequence[str]) -> Mapping[str, str]:
        return self.state.failures(fingerprints) if self.fallback == "fail" else {}


def run_pass_settings(run: str) -> dict[str, str]:
    """The session settings of the run pass."""
    return {BATCH_RUN_SETTING: run}


def run_batch_job(
    spark: SparkSession,
    statements: Sequence[Statement],
    options: BatchOptions,
    *,
    query_tag: str,
    output: Any,
    cap: Any = None,
) -> tuple[Any, BatchPhase]:
    """The batch phase, then the run pass (see the module docstring); the job's result and the phase's report.

    Args:
        output: a :class:`~aiquery.jobs.statements.JobOutput`.
        cap: the application's :class:`~aiquery.coordinator.cap.CapSetting` (``--max-cost``): the live calls of
            the run pass may spend what the batches left of it.
    """
    from aiquery.jobs.statements import run_statements
    from aiquery.spark.registry import context_for

    if options.fallback not in FALLBACKS:
        raise ConfigError(f"--batch-fallback must be live or fail, not {options.fallback!r}")
    phase, state = batch_phase(spark, statements, options, query_tag=query_tag, progress=output.progress)
    coordinator = context_for(spark).service
    assert coordinator is not None  # batch_phase refused to start without it
    try:
        counts = coordinator.collect_counts(phase.last_collect)
        if cap is not None and cap.max_cost is not None and phase.submitted_cost:
            left = max(cap.max_cost - phase.submitted_cost, MIN_CAP)
            coordinator.set_application_cap(dataclasses.replace(cap, max_cost=left))
        coordinator.set_batch_results(StateResults(state, options.fallback))
        for name, value in run_pass_settings(phase.run).items():
            spark.conf.set(name, value)
        try:
            result = run_statements(
                spark, statements, query_tag=query_tag, out=output.out, progress=output.progress,
                show_rows=output.show_rows, progress_interval=output.progress_interval,
            )  # fmt: skip
        finally:
            for name in run_pass_settings(phase.run):
                spark.conf.unset(name)
            coordinator.set_batch_results(None)
        if result.ok:
            state.set_meta(FINISHED, str(time.time()))
    finally:
        state.close()
    phase.notes.extend(live_reasons(statements, counts, phase, options.fallback))
    result.notes[:0] = phase.summary()
    return result, phase


def live_reasons(
    statements: Sequence[Statement], counts: Mapping[str, Any], phase: BatchPhase, fallback: str
) -> list[str]:
    """Which calls ran live, and why (for the run's summary)."""
    notes = []
    for name, found in sorted(counts.items()):
        if getattr(found, "skipped", 0):
            notes.append(
                f"{name}: {found.skipped} row(s) ran live: the endpoint has no batch = true or the answer store is "
                "off for the call"
            )
    for statement in statements:
        if AGGREGATE_CALL.search(statement.sql):
            notes.append(f"{statement.describe()} ran live: ai_agg is never batched")
        elif plan_statement(statement).kind == "skip":
            notes.append(f"{statement.describe()} ran live: it changes a table in place, which the collect pass skips")
    if phase.failed or phase.expired:
        how = "were sent live" if fallback == "live" else "failed with their line's error (--batch-fallback fail)"
        notes.append(f"{phase.failed + phase.expired} row(s) whose batch line failed, expired or was cancelled {how}")
    return notes
