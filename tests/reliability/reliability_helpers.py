"""Helpers shared by the reliability tests: the usage ledger against the emulator's log."""

from __future__ import annotations

import collections
from collections.abc import Iterable
from typing import Any

LEDGER_COLUMNS = (
    "request_id",
    "call_id",
    "attempt",
    "status_code",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "error_message",
    "task_attempt_id",
    "request_hash",
    "query_tag",
)


def served_by(gateway: Any, model: str) -> list[dict[str, Any]]:
    """The emulator's log entries for ``model`` (each test's endpoints have names, so models, of their own).

    A task killed when a query fails keeps its Python worker sending until Spark kills the worker
    (spark.python.task.killTimeout, 2 s), so a previous test's requests may still land after the reset.
    """
    return [entry for entry in gateway.requests() if entry["model"] == model]


def by_status(entries: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Log entries counted like the ledger's :func:`status_counts` (hang and drop: no status, ``none``)."""
    counts: collections.Counter[str] = collections.Counter()
    for entry in entries:
        counts["none" if entry["status"] in ("hang", "drop") else str(entry["status"])] += 1
    return dict(counts)


def ledger_rows(spark: Any, table: str, where: str = "true") -> list[Any]:
    """The usage rows of ``table`` (the columns the comparisons need)."""
    return spark.sql(f"SELECT {', '.join(LEDGER_COLUMNS)} FROM {table} WHERE {where}").collect()


def assert_ledger_matches_emulator(rows: Iterable[Any], served: list[dict[str, Any]]) -> None:
    """Every request the emulator saw is one ledger row and the other way round, with the same outcome.

    Joined on request_id = the emulator's ``client_request_id``. A request the emulator answered with a status
    has that status in the ledger; a hang or a dropped connection has none. Tokens are compared per request
    (answers the client could read) and in total.
    """
    rows = list(rows)
    by_id = {entry["client_request_id"]: entry for entry in served}
    ids = [row.request_id for row in rows]
    duplicates = [rid for rid, count in collections.Counter(ids).items() if count > 1]
    assert not duplicates, f"request_id recorded twice: {duplicates[:5]}"
    assert len(by_id) == len(served), "the emulator saw a request id twice"
    missing, unknown = set(by_id) - set(ids), set(ids) - set(by_id)
    assert not missing and not unknown, (
        f"{len(missing)} served requests missing from the ledger (e.g. {sorted(missing)[:3]}), "
        f"{len(unknown)} ledger rows the emulator never saw (e.g. {sorted(unknown)[:3]})"
    )
    for row in rows:
        entry = by_id[row.request_id]
        status = entry["status"]
        if isinstance(status, int):
            assert row.status_code == status, (row, entry)
        else:  # "hang" or "drop": no response reached the client
            assert row.status_code is None and row.error_message, (row, entry)
        if status == 200 and entry["outcome"] == "ok":
            assert (row.input_tokens, row.output_tokens) == (entry["input_tokens"], entry["output_tokens"])
        else:
            assert not row.input_tokens and not row.output_tokens, (row, entry)
            assert row.error_message, (row, entry)
    served_tokens = sum(e["input_tokens"] + e["output_tokens"] for e in served if e["outcome"] == "ok")
    assert sum(row.total_tokens or 0 for row in rows) == served_tokens


def status_counts(rows: Iterable[Any]) -> dict[str, int]:
    """Ledger rows counted like the emulator's ``by_status`` (no status: counted under ``none``)."""
    counts: collections.Counter[str] = collections.Counter()
    for row in rows:
        counts["none" if row.status_code is None else str(row.status_code)] += 1
    return dict(counts)


def assert_attempts_are_consecutive(rows: Iterable[Any]) -> dict[str, list[int]]:
    """Each call's attempts are numbered 1..n with no gap or repeat; returns attempts by call id."""
    attempts: dict[str, list[int]] = collections.defaultdict(list)
    for row in rows:
        attempts[row.call_id].append(row.attempt)
    for call_id, numbers in attempts.items():
        assert sorted(numbers) == list(range(1, len(numbers) + 1)), (call_id, numbers)
    return attempts
