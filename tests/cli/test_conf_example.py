"""conf/aiquery.toml: one valid, working example per API, and every endpoint option documented with its default."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from aiquery import config
from aiquery.config import APIS, load_settings

CONF = Path(__file__).resolve().parents[2] / "conf" / "aiquery.toml"


def test_one_endpoint_per_api_all_resolving_with_the_two_variables() -> None:
    settings = load_settings({"DATABRICKS_HOST": "https://ws.example.com", "DATABRICKS_TOKEN": "t"}, config_path=CONF)
    endpoints = {name: settings.endpoint(name) for name in settings.endpoints}
    assert sorted(e.api for e in endpoints.values()) == sorted(APIS)
    for endpoint in endpoints.values():
        assert endpoint.base_url == "https://ws.example.com" + APIS[endpoint.api]


def test_every_endpoint_option_is_documented_with_its_default() -> None:
    text = CONF.read_text(encoding="utf-8")
    documented = dict(re.findall(r"^#   (\w+)\s+= (.+?)\s+#", text, re.M))
    fields = {f.name for f in dataclasses.fields(config.Endpoint)} - {"name", "token"}
    assert set(documented) == fields | {"currency"}  # the price's currency is a key of its own in the file
    assert documented["max_concurrency"] == str(config.DEFAULT_MAX_CONCURRENCY)
    assert documented["timeout"] == f"{config.DEFAULT_TIMEOUT_S:g}"
    assert documented["deadline"] == f"{config.DEFAULT_DEADLINE_S:g}"
    assert documented["max_retries"] == str(config.DEFAULT_MAX_RETRIES)
    assert documented["max_retry_after"] == f"{config.DEFAULT_MAX_RETRY_AFTER_S:g}"
    assert documented["token_env"] == f'"{config.DEFAULT_TOKEN_ENV}"'
    assert documented["auth"] == f'"{config.DEFAULT_AUTH}"'


@pytest.mark.spark
def test_each_example_answers_through_the_emulator(spark: Any, gateway: Any) -> None:
    import aiquery

    settings = load_settings({"DATABRICKS_HOST": gateway.url, "DATABRICKS_TOKEN": gateway.token}, config_path=CONF)
    settings = dataclasses.replace(settings, usage=config.UsageSettings(enabled=False))
    aiquery.register(spark, settings=settings)
    for name in settings.endpoints:
        row = spark.sql(f"SELECT ai_query('{name}', 'Describe the sea in a few words') AS answer").first()
        assert row is not None and row.answer, name
    assert gateway.stats()["requests"] == len(settings.endpoints) == 6
