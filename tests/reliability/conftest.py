"""Fixtures for the reliability tests: ai_query registered against an emulator with a usage ledger of its own."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# The test modules import their helpers as `reliability_helpers`, whichever import mode pytest runs in.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def register_with_ledger(spark: Any, tmp_path: Path) -> Iterator[Callable[..., str]]:
    """``register_with_ledger(gateway, toml, **usage)``: register ai_query in the shared session against
    ``gateway`` (its URL and token as DATABRICKS_HOST / DATABRICKS_TOKEN) with the endpoints in ``toml`` and a
    usage table of its own in ``tmp_path``; returns the table's name. The table is dropped afterwards and the
    session is registered again without a ledger, so no background ingestion outlives the test.
    """
    import aiquery
    from aiquery.config import UsageSettings, load_settings

    tables: list[str] = []

    def register(gateway: Any, toml: str, *, token: str | None = None, **usage: Any) -> str:
        config = tmp_path / f"aiquery-{len(tables)}.toml"
        config.write_text(toml)
        environ = {"DATABRICKS_HOST": gateway.url, "DATABRICKS_TOKEN": token or gateway.token}
        settings = load_settings(environ, config_path=config)
        table = f"ai_gateway.usage_{uuid.uuid4().hex[:10]}"
        # An hour between background ingestions: only the test's own flush_usage ingests, so timings and
        # counts are not disturbed by an ingestion running at a random moment.
        usage = {"ingest_interval": 3600.0, **usage}
        ledger = UsageSettings(table=table, dir=str(tmp_path / "usage"), path=str(tmp_path / table), **usage)
        aiquery.register(spark, settings=dataclasses.replace(settings, usage=ledger))
        tables.append(table)
        return table

    yield register
    from aiquery.config import Settings

    aiquery.register(spark, settings=Settings(usage=UsageSettings(enabled=False)))
    for table in tables:
        spark.sql(f"DROP TABLE IF EXISTS {table}")


@pytest.fixture
def standalone_cluster() -> type[Any]:
    """tests/cluster's StandaloneCluster (master and workers on loopback as child processes of this test)."""
    path = Path(__file__).parents[1] / "cluster" / "conftest.py"
    spec = importlib.util.spec_from_file_location("reliability_cluster_conftest", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cluster: type[Any] = module.StandaloneCluster
    return cluster
