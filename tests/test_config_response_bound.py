"""The endpoint option max_response_bytes: its default, and values refused with what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiquery.config import DEFAULT_MAX_RESPONSE_BYTES, MAX_RESPONSE_BYTES_LIMIT, load_settings
from aiquery.errors import ConfigError

ENV = {"DATABRICKS_HOST": "https://ws.example.com/", "DATABRICKS_TOKEN": "dapi-config-test-token"}


def endpoint_with(tmp_path: Path, line: str) -> int:
    path = tmp_path / "aiquery.toml"
    path.write_text(f"[endpoints.e]\n{line}\n")
    return load_settings(ENV, config_path=path).endpoint("e").max_response_bytes


def test_the_default_is_16_mib_and_a_value_is_taken(tmp_path: Path) -> None:
    assert DEFAULT_MAX_RESPONSE_BYTES == 16 * 1024 * 1024
    assert endpoint_with(tmp_path, "") == DEFAULT_MAX_RESPONSE_BYTES
    assert endpoint_with(tmp_path, "max_response_bytes = 33554432") == 32 << 20
    assert endpoint_with(tmp_path, f"max_response_bytes = {MAX_RESPONSE_BYTES_LIMIT}") == 48 << 20


@pytest.mark.parametrize("value", ["0", "-1", "1.5", '"16MiB"', "true", str(MAX_RESPONSE_BYTES_LIMIT + 1)])
def test_a_bound_that_is_not_a_size_or_past_the_frame_is_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        endpoint_with(tmp_path, f"max_response_bytes = {value}")
    message = str(raised.value)
    assert "[endpoints.e] max_response_bytes" in message and "coordinator's 64 MiB frame" in message
