"""Fixtures for the emulator tests (the emulator itself comes from tests/conftest.py)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# The test modules import their HTTP helpers as `gateway_http`, whichever import mode pytest runs in.
sys.path.insert(0, str(Path(__file__).parent))

from gateway_http import ANTHROPIC, Response, send


@pytest.fixture
def post(gateway: Any) -> Callable[..., Response]:
    """``post(path, body, **options)`` against the shared, freshly reset emulator, with its token."""

    def call(path: str, body: Any = None, **options: Any) -> Response:
        options.setdefault("token", gateway.token)
        if path == ANTHROPIC:
            headers = {"anthropic-version": "2023-06-01", **options.pop("headers", {})}
            options["headers"] = headers
        return send(gateway.url, path, body, **options)

    return call
