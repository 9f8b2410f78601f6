"""The adapter registry and the package's public surface."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest

import aiquery.apis
import aiquery.apis.base
from aiquery.apis import ADAPTERS, get_adapter
from aiquery.config import APIS
from aiquery.errors import ConfigError


def test_one_adapter_per_configured_api() -> None:
    assert list(ADAPTERS) == list(APIS)
    for name, adapter in ADAPTERS.items():
        assert adapter.api == name
        assert get_adapter(name) is adapter


def test_route_families_as_the_usage_table_records_them() -> None:
    assert {name: adapter.api_type for name, adapter in ADAPTERS.items()} == {
        "chat": "mlflow/v1/chat/completions",
        "embeddings": "mlflow/v1/embeddings",
        "responses": "mlflow/v1/responses",
        "openai-responses": "openai/v1/responses",
        "anthropic": "anthropic/v1/messages",
        "gemini": "gemini/v1beta/generateContent",
    }
    assert {name for name, adapter in ADAPTERS.items() if adapter.output == "vector"} == {"embeddings"}


def test_unknown_api_names_the_allowed_ones() -> None:
    with pytest.raises(ConfigError) as raised:
        get_adapter("openai-chat")
    message = str(raised.value)
    assert "'openai-chat'" in message
    for name in APIS:
        assert name in message


def test_gemini_url_drops_a_models_prefix_and_quotes_the_name() -> None:
    gemini = get_adapter("gemini")
    base = "https://generativelanguage.googleapis.com"
    assert gemini.url(base, "models/gemini-2.5-flash") == f"{base}/v1beta/models/gemini-2.5-flash:generateContent"
    assert gemini.url(base, "my model") == f"{base}/v1beta/models/my%20model:generateContent"


def _modules() -> list[str]:
    return [f"aiquery.apis.{info.name}" for info in pkgutil.iter_modules(aiquery.apis.__path__)]


@pytest.mark.parametrize("module_name", ["aiquery.apis", *_modules()])
def test_all_is_declared_and_resolvable(module_name: str) -> None:
    module = importlib.import_module(module_name)
    exported = module.__all__
    assert len(set(exported)) == len(exported), module_name
    for name in exported:
        assert hasattr(module, name), f"{module_name}.{name}"


def test_package_reexports_the_protocol_and_every_adapter() -> None:
    exported = set(aiquery.apis.__all__)
    assert set(aiquery.apis.base.__all__) <= exported
    assert {type(adapter).__name__ for adapter in ADAPTERS.values()} <= exported


@pytest.mark.parametrize("module_name", _modules())
def test_modules_stay_small(module_name: str) -> None:
    path = Path(importlib.import_module(module_name).__file__ or "")
    assert len(path.read_text().splitlines()) <= 300, path.name
