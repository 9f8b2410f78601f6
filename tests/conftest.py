"""Shared fixtures: a clean environment, the local gateway emulator and one Spark session for the run."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Helpers the tests import by module name (tests/support/processes.py), whichever import mode pytest runs in.
sys.path.insert(0, str(Path(__file__).parent / "support"))

EMULATOR_TOKEN = "dapi-test-emulator-token-0123456789"

_SCRUBBED_PREFIXES = ("AIQUERY_", "DATABRICKS_", "OPENAI_", "ANTHROPIC_", "GEMINI_", "GOOGLE_API")


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's credentials or configuration."""
    for name in list(os.environ):
        if name.startswith(_SCRUBBED_PREFIXES):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def gateway_session() -> Iterator[Any]:
    """One emulator process for the whole run; tests reset and configure it through `gateway`."""
    from aiquery.gateway import start_gateway

    with start_gateway(token=EMULATOR_TOKEN) as handle:
        yield handle


@pytest.fixture
def gateway(gateway_session: Any) -> Any:
    """The shared emulator, reset to a healthy default (no latency, no faults, counters at zero)."""
    gateway_session.reset()
    return gateway_session


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """One local[2] Spark session with Delta for the whole run."""
    from aiquery.spark.session import local_spark

    # The coordinator listens where the workers reach the driver: loopback only, as every server in the tests.
    session = local_spark(app_name="aiquery-tests", extra_conf={"spark.driver.host": "127.0.0.1"})
    yield session
    session.stop()
