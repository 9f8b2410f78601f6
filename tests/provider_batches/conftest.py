"""The provider-batch tests import their helpers as `batch_helpers` (and the SDK checks of tests/apis as
`sdk_types`), whichever import mode pytest runs in."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "apis"))


@pytest.fixture
def batch_gateway(gateway: Any) -> Any:
    """The shared emulator with a short batch clock."""
    gateway.configure(batch_delay=0.4)
    return gateway
