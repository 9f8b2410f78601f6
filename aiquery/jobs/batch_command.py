"""``aiquery batch status|list|cancel``: what a batch run's state folder holds, the providers' batches, and
cancelling a run's batches.

    aiquery batch status STATE_DIR            # the run's batches and outcomes, as its state holds them
    aiquery batch list [--config FILE]        # each batch endpoint's batches at its provider
    aiquery batch cancel STATE_DIR [--config FILE]   # cancel the run's batches still running

``status`` reads the state without its lock (it may run beside the run); ``cancel`` takes the lock, so it
refuses while a run holds the folder (naming the process).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import IO, Any

from aiquery.config import Endpoint
from aiquery.errors import AIQueryError
from aiquery.jobs.batch_run import (
    DEFAULT_BATCH_ROUNDS,
    DEFAULT_BATCH_WAIT_S,
    FALLBACKS,
    BatchOptions,
    batch_endpoints,
)
from aiquery.provider_batches.clients import client_for
from aiquery.provider_batches.provider_http import ProviderHTTP
from aiquery.provider_batches.records import BatchState, ProviderBatchError
from aiquery.provider_batches.run_state import STATE_FILE, RunState

__all__ = ["add_batch_arguments", "add_batch_run_arguments", "batch_command", "batch_options", "parse_duration"]


class NotAStateFolder(AIQueryError):
    """The folder named is not a batch run's state folder (exit status 2)."""


def add_batch_arguments(parser: argparse.ArgumentParser) -> None:
    """The sub-commands of ``aiquery batch``."""
    actions = parser.add_subparsers(dest="batch_action", metavar="ACTION", required=True)
    status = actions.add_parser("status", help="the batches and outcomes a batch run's state folder holds")
    status.add_argument("state", metavar="STATE_DIR", help="the run's state folder (--batch-state, or as printed)")
    listing = actions.add_parser("list", help="each batch endpoint's batches at its provider")
    listing.add_argument("--config", metavar="FILE", help="endpoints file, as for aiquery run")
    cancel = actions.add_parser("cancel", help="cancel the batches of a run that are still running")
    cancel.add_argument("state", metavar="STATE_DIR", help="the run's state folder")
    cancel.add_argument("--config", metavar="FILE", help="endpoints file, as for aiquery run")


def batch_command(args: argparse.Namespace, *, out: IO[str], err: IO[str]) -> int:
    """Run ``aiquery batch ACTION``; the exit status."""
    if args.batch_action == "status":
        if not (Path(args.state) / STATE_FILE).is_file():
            raise NotAStateFolder(f"{args.state} is not a batch run's state folder (no {STATE_FILE})")
        with RunState(args.state, lock=False) as state:
            out.write(format_status(state) + "\n")
        return 0
    from aiquery.config import load_settings

    settings = load_settings(config_path=args.config)
    endpoints = batch_endpoints(settings)
    if args.batch_action == "list":
        for line in asyncio.run(_listing(endpoints)):
            out.write(line + "\n")
        return 0
    if not (Path(args.state) / STATE_FILE).is_file():
        raise NotAStateFolder(f"{args.state} is not a batch run's state folder (no {STATE_FILE})")
    with RunState(args.state) as state:
        for line in asyncio.run(_cancel(state, endpoints)):
            out.write(line + "\n")
    return 0


def format_status(state: RunState) -> str:
    """The run's batches, one line each, and its totals."""
    counts = state.counts()
    kinds = state.outcome_kinds()
    lines = [
        f"run {state.meta('run') or '(not started)'}: {counts['requests']} request(s) collected, "
        f"{kinds.get('succeeded', 0)} answered, {counts['failed']} failed or expired"
    ]
    for row in state.batches():
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(row.created_at))
        lines.append(
            f"  {row.endpoint:<16} {row.provider_id or '(intent: no id yet)':<40} {row.status:<22} "
            f"{min(row.done, row.lines)}/{row.lines} done, {row.failed} failed; created {when} UTC"
            + ("; stored" if row.stored else "")
        )
        lines.extend(f"      {error}" for error in row.errors[:5])
    return "\n".join(lines)


async def _listing(endpoints: dict[str, Endpoint]) -> list[str]:
    http = ProviderHTTP()
    lines: list[str] = []
    try:
        for name, endpoint in sorted(endpoints.items()):
            try:
                found = await client_for(endpoint, http).list(None)
            except ProviderBatchError as error:
                lines.append(f"{name}: cannot list its batches: {error}")
                continue
            lines.append(f"{name}: {len(found)} batch(es)")
            lines.extend(f"  {_describe(batch)}" for batch in found)
    finally:
        await http.aclose()
    return lines


async def _cancel(state: RunState, endpoints: dict[str, Endpoint]) -> list[str]:
    http = ProviderHTTP()
    lines: list[str] = []
    try:
        for row in state.batches():
            if row.provider_id is None or row.phase in ("ended", "failed"):
                continue
            endpoint = endpoints.get(row.endpoint)
            if endpoint is None:
                lines.append(f"{row.provider_id}: endpoint {row.endpoint} is not a batch endpoint of this config")
                continue
            try:
                found = await client_for(endpoint, http).cancel(row.provider_id)
            except ProviderBatchError as error:
                lines.append(f"{row.provider_id}: not cancelled: {error}")
                continue
            state.update_batch(row.number, status=found.status, phase=found.phase, done=found.done,
                               failed=found.failed, errors=found.errors)  # fmt: skip
            lines.append(f"{row.provider_id}: {found.status}")
    finally:
        await http.aclose()
    return lines or ["no batch of this run is running"]


def _describe(batch: BatchState) -> str:
    return f"{batch.id:<40} {batch.status:<22} {batch.done}/{batch.total} done, {batch.failed} failed  tag {batch.tag}"


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds of ``90s``, ``30m``, ``24h``, ``2d`` or a plain number of seconds.

    Raises:
        ValueError: not a positive duration.
    """
    value = text.strip().lower()
    factor = _UNITS.get(value[-1:])
    number = value[:-1] if factor is not None else value
    try:
        seconds = float(number) * (factor or 1.0)
    except ValueError:
        raise ValueError(f"--batch-wait takes a duration such as 30m, 24h or 3600, not {text!r}") from None
    if not 0 < seconds < float("inf"):
        raise ValueError(f"--batch-wait must be more than 0, not {text!r}")
    return seconds


def add_batch_run_arguments(parser: Any) -> None:
    """The ``--batch`` options of ``aiquery run``."""
    parser.add_argument(
        "--batch",
        action="store_true",
        help="send the calls of endpoints with batch = true through their provider's batch API (half price, "
        "answered within a day): collect, submit, wait, store, then run the job from the answers",
    )
    parser.add_argument(
        "--batch-wait", metavar="DURATION", help="how long to wait for the batches (default 24h); then cancel them, "
        "keep what came back and send the rest live"
    )  # fmt: skip
    parser.add_argument(
        "--batch-fallback", choices=FALLBACKS, help="rows whose batch line failed or expired: sent live (default) "
        "or failed with the line's error (as the call's failOnError says)"
    )  # fmt: skip
    parser.add_argument(
        "--batch-rounds", type=int, metavar="N", help="collect/submit rounds at most, for calls fed by other calls' "
        f"answers (default {DEFAULT_BATCH_ROUNDS})"
    )  # fmt: skip
    parser.add_argument(
        "--batch-state", metavar="DIR", help="the run's state folder (default <usage dir>/batch/<hash of the job>); "
        "run again on it to resume"
    )  # fmt: skip


def batch_options(args: Any, max_cost: float | None, currency: str) -> BatchOptions | None:
    """The batch options of ``aiquery run``'s arguments (None without ``--batch``).

    Raises:
        ValueError: a ``--batch-*`` option without ``--batch``, or a bad value.
    """
    given = [args.batch_wait, args.batch_fallback, args.batch_rounds, args.batch_state]
    if not args.batch:
        if any(value is not None for value in given):
            raise ValueError("the --batch-* options need --batch")
        return None
    if args.batch_rounds is not None and args.batch_rounds < 1:
        raise ValueError("--batch-rounds must be 1 or more")
    return BatchOptions(
        state_dir=args.batch_state,
        wait_s=parse_duration(args.batch_wait) if args.batch_wait else DEFAULT_BATCH_WAIT_S,
        fallback=args.batch_fallback or "live",
        rounds=args.batch_rounds or DEFAULT_BATCH_ROUNDS,
        max_cost=max_cost,
        currency=currency,
    )
