"""Helpers shared by the usage tests: record factories and readers of spool files and tables."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aiquery.usage.codec import decode_line
from aiquery.usage.record import UsageRecord

T0 = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.timezone.utc)


def record(request_id: str, **fields: Any) -> UsageRecord:
    """A record as the engine hands it to ``begin``: request fields set, no outcome."""
    values: dict[str, Any] = {
        "request_id": request_id,
        "call_id": f"call-{request_id}",
        "attempt": 1,
        "event_time": T0,
        "endpoint_name": "my-chat",
        "destination_model": "databricks-gpt-5-4",
        "api_type": "mlflow/v1/chat/completions",
        "url": "http://127.0.0.1:9/ai-gateway/mlflow/v1/chat/completions",
        "requester": "alice@example.com",
        "user_agent": "aiquery-tests",
        "request_tags": {"team": "ml"},
        "request_hash": "h-" + request_id,
    }
    values.update(fields)
    return UsageRecord(**values)


def finish(rec: UsageRecord, **outcome: Any) -> UsageRecord:
    """``rec`` with a successful outcome (or the given one), as the engine hands it to ``end``."""
    values: dict[str, Any] = {
        "status_code": 200,
        "input_tokens": 10,
        "output_tokens": 5,
        "total_tokens": 15,
        "latency_ms": 120,
        "time_to_first_byte_ms": 40,
        "response_content_type": "application/json",
    }
    values.update(outcome)
    for key, value in values.items():
        setattr(rec, key, value)
    return rec


def spool_files(spool_dir: str | Path) -> list[Path]:
    """The visible spool files (what ingestion reads)."""
    return sorted(p for p in Path(spool_dir).iterdir() if p.is_file() and not p.name.startswith(("_", ".")))


def spool_records(spool_dir: str | Path) -> list[UsageRecord]:
    """Every record in the visible spool files."""
    records = []
    for path in spool_files(spool_dir):
        for line in path.read_text(encoding="utf-8").splitlines():
            records.append(decode_line(line))
    return records


def journal_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def ids(records: Iterable[Any]) -> list[str]:
    """Sorted request ids of records or of table rows."""
    return sorted(r.request_id if isinstance(r, UsageRecord) else r["request_id"] for r in records)
