"""Fixtures for the usage-ledger tests: records, spool readers, and ledgers on temporary folders."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# The test modules import their helpers as `usage_helpers`, whichever import mode pytest runs in.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def make_ledger(spark: Any, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``make_ledger(name=None, **settings)``: a UsageLedger on a fresh table in ``tmp_path``.

    The table is dropped afterwards (its files stay in tmp_path, as after a session ends).
    """
    from aiquery.config import UsageSettings
    from aiquery.usage.ingest import UsageLedger

    made: list[Any] = []

    def make(table: str | None = None, **overrides: Any) -> Any:
        name = table or f"ai_gateway.usage_{uuid.uuid4().hex[:12]}"
        settings = UsageSettings(
            table=name,
            dir=str(overrides.pop("dir", tmp_path / "usage")),
            path=str(overrides.pop("path", tmp_path / "table" / name.split(".")[-1])),
            **overrides,
        )
        ledger = UsageLedger(spark, settings)
        made.append(ledger)
        return ledger

    yield make
    for ledger in made:
        ledger.stop_background()
        spark.sql(f"DROP TABLE IF EXISTS {ledger.table}")
