"""Settings for a test that needs a usage ledger (and so an answer store) of its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiquery.config import Settings, UsageSettings


def own_ledger_settings(gateway: Any, tmp_path: Path, name: str) -> Settings:
    """Settings against the emulator whose usage folder, table (``ai_gateway.usage_<name>_<test>``) and answer
    store are this test's own."""
    return Settings(
        host=gateway.url,
        environ={"DATABRICKS_TOKEN": gateway.token},
        usage=UsageSettings(
            dir=str(tmp_path / "usage"),
            table=f"ai_gateway.usage_{name}_{tmp_path.name[-12:].replace('-', '_')}",
            path=str(tmp_path / "usage_table"),
            ingest_interval=3600.0,
        ),
    )
