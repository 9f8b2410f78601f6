"""The configuration of batch mode: ``batch = true`` on an endpoint and ``price.batch_discount``; the batch cost."""

from __future__ import annotations

import math
from typing import Any

import pytest

from aiquery.config import load_settings
from aiquery.errors import ConfigError
from aiquery.gateway.command import build_parser
from aiquery.pricing import Price, _entry_price

ENV = {"DATABRICKS_HOST": "https://workspace.example", "DATABRICKS_TOKEN": "t"}


def endpoint(**options: Any) -> Any:
    return load_settings(ENV).with_endpoint("e", **options).endpoint("e")


def test_batch_is_off_unless_asked() -> None:
    assert endpoint(api="chat", base_url="https://api.openai.com/v1").batch is False


def test_batch_takes_an_endpoint_at_a_provider() -> None:
    assert endpoint(api="anthropic", base_url="https://api.anthropic.com", batch=True).batch is True


def test_batch_without_a_base_url_says_the_gateway_has_no_batch_api() -> None:
    with pytest.raises(ConfigError, match=r"batch = True is invalid.*Databricks AI Gateway's route, which has no"):
        endpoint(api="chat", batch=True)


def test_batch_at_an_ai_gateway_route_is_refused() -> None:
    with pytest.raises(ConfigError, match="not a Databricks AI Gateway route"):
        endpoint(api="chat", base_url="https://workspace.example/ai-gateway/mlflow/v1", batch=True)


def test_batch_must_be_true_or_false() -> None:
    with pytest.raises(ConfigError, match="batch = 'yes' is invalid; expected true or false"):
        endpoint(api="chat", base_url="https://api.openai.com/v1", batch="yes")


PRICE = {"input_per_million": 2.0, "output_per_million": 10.0}


@pytest.mark.parametrize("discount", [1, 1.5, -0.1, math.nan, math.inf, "half", True])
def test_a_batch_discount_outside_zero_to_one_is_refused(discount: Any) -> None:
    with pytest.raises(ConfigError, match="price"):
        endpoint(api="chat", price={**PRICE, "batch_discount": discount})


def test_the_batch_discount_defaults_to_half_and_prices_a_batch_request() -> None:
    price = endpoint(api="chat", model="no-such-model", price=PRICE).price
    assert price.batch_discount == 0.5
    assert price.cost(1_000_000, 100_000) == pytest.approx(3.0)
    assert price.batch_cost(1_000_000, 100_000) == pytest.approx(1.5)


def test_a_configured_batch_discount_is_used() -> None:
    price = endpoint(api="chat", model="no-such-model", price={**PRICE, "batch_discount": 0.25}).price
    assert price.batch_cost(1_000_000, 0) == pytest.approx(1.5)
    assert endpoint(api="chat", price={**PRICE, "batch_discount": 0}).price.batch_cost(1_000_000, 0) == 2.0


def test_a_published_batch_price_wins_over_the_discount() -> None:
    entry = {"model": "m", "input_per_million": 2.0, "output_per_million": 10.0, "cached_input_per_million": 0.2,
             "currency": "USD", "source": "s", "source_date": "undated",
             "batch": {"input_per_million": 0.8, "output_per_million": 5.0}}  # fmt: skip
    price = _entry_price(entry, "2026-12-01")
    assert price.batch is not None and price.batch.input_per_million == 0.8
    # Cache reads keep the live cache price in this entry's batch prices (Gemini's rule), not half of it.
    assert price.batch_cost(1_000_000, 0, cache_read_tokens=1_000_000) == pytest.approx(0.2)
    assert price.batch_cost(1_000_000, 1_000_000) == pytest.approx(5.8)
    assert Price(input_per_million=1.0, output_per_million=1.0).batch_cost(None, None) is None


def test_the_emulator_command_takes_a_batch_delay() -> None:
    assert build_parser().parse_args(["--batch-delay", "2.5"]).batch_delay == 2.5
    assert build_parser().parse_args(["--batch-failed-share", "0.1"]).batch_failed_share == 0.1
