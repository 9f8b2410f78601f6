"""Prices: what a request costs, from its tokens and its endpoint's price.

An endpoint's price comes from its TOML table (``price = { input_per_million = 0.15, output_per_million = 0.60,
cached_input_per_million = 0.075, cache_write_per_million = 0.1875 }`` and ``currency``), or else from the
built-in table of list prices (``aiquery/data/prices.json``: each entry names its source and the date it was
read), looked up by the endpoint's model. A model in neither has no price: its requests' cost is NULL, never a
guess.

The cost of a request (see :meth:`Price.cost`): the input tokens that were neither read from nor written to the
provider's prompt cache at the input price, cache reads at the cached-input price, cache writes at the
cache-write price (each the input price when the table gives none), and output tokens at the output price. The
ledger's ``input_tokens`` includes cached ones on every API (the adapters normalise them so).

A request sent through a provider's batch API costs :meth:`Price.batch_cost`: the model's published ``batch``
prices where ``prices.json`` has them (they carry each provider's rule for cache reads: Gemini bills them at the
normal cache rate), else the live cost less ``batch_discount`` (the table's ``batch_discount``, default 0.5).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

__all__ = ["DEFAULT_BATCH_DISCOUNT", "PRICE_KEYS", "PRICE_TABLE_KEYS", "Price", "builtin_price", "builtin_prices"]

PRICE_KEYS = ("input_per_million", "output_per_million", "cached_input_per_million", "cache_write_per_million")
PRICE_TABLE_KEYS = (*PRICE_KEYS, "batch_discount")
"""Every key of an endpoint's ``price`` table: the prices, and the fraction a batch request saves."""
DEFAULT_BATCH_DISCOUNT = 0.5
"""What the providers' batch APIs take off the live price (OpenAI, Anthropic and Google all take half)."""
_DATED_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8})$")
"""A model id's snapshot date (``gpt-4o-mini-2024-07-18``, ``claude-3-5-haiku-20241022``): priced as the model."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Price:
    """Prices per million tokens, in ``currency``.

    Attributes:
        input_per_million: uncached input tokens.
        output_per_million: output tokens (reasoning tokens included: providers bill them as output).
        cached_input_per_million: input tokens read from the provider's prompt cache; None for the input price.
        cache_write_per_million: input tokens written to the prompt cache; None for the input price.
        currency: ``USD``, ``EUR``, ``DBU`` ...
        source: where the price comes from: ``configured``, or the built-in entry's source and date.
        batch_discount: the fraction of the live cost a batch request saves, where ``batch`` is None.
        batch: the model's own batch prices, where its provider publishes them (they win over the discount).
    """

    input_per_million: float
    output_per_million: float
    cached_input_per_million: float | None = None
    cache_write_per_million: float | None = None
    currency: str = "USD"
    source: str = "configured"
    batch_discount: float = DEFAULT_BATCH_DISCOUNT
    batch: Price | None = None

    def batch_cost(
        self,
        input_tokens: int | None,
        output_tokens: int | None,
        cache_read_tokens: int | None = None,
        cache_write_tokens: int | None = None,
    ) -> float | None:
        """The cost of one request's tokens sent through a provider's batch API; None when they are unknown."""
        if self.batch is not None:
            return self.batch.cost(input_tokens, output_tokens, cache_read_tokens, cache_write_tokens)
        live = self.cost(input_tokens, output_tokens, cache_read_tokens, cache_write_tokens)
        return None if live is None else live * (1.0 - self.batch_discount)

    def cost(
        self,
        input_tokens: int | None,
        output_tokens: int | None,
        cache_read_tokens: int | None = None,
        cache_write_tokens: int | None = None,
    ) -> float | None:
        """The cost of one request's tokens; None when its token counts are unknown."""
        if input_tokens is None and output_tokens is None:
            return None
        read = cache_read_tokens or 0
        written = cache_write_tokens or 0
        uncached = max(0, (input_tokens or 0) - read - written)
        cached_price = _or(self.cached_input_per_million, self.input_per_million)
        write_price = _or(self.cache_write_per_million, self.input_per_million)
        millionths = (
            uncached * self.input_per_million
            + read * cached_price
            + written * write_price
            + (output_tokens or 0) * self.output_per_million
        )
        return millionths / 1_000_000

    def describe(self) -> str:
        """``0.15 / 0.60 USD per million tokens (input / output)`` and the cache prices when set."""
        text = f"{self.input_per_million:g} / {self.output_per_million:g} {self.currency} per million tokens"
        extras = []
        if self.cached_input_per_million is not None:
            extras.append(f"cached input {self.cached_input_per_million:g}")
        if self.cache_write_per_million is not None:
            extras.append(f"cache write {self.cache_write_per_million:g}")
        return text + " (input / output" + "".join(f", {extra}" for extra in extras) + ")"


@functools.cache
def builtin_prices() -> dict[str, Price]:
    """The built-in list prices by model id (read once from ``aiquery/data/prices.json``)."""
    text = resources.files("aiquery").joinpath("data/prices.json").read_text(encoding="utf-8")
    document = json.loads(text)
    return {entry["model"]: _entry_price(entry, document["read"]) for entry in document["prices"]}


def _entry_price(entry: dict[str, Any], read: str) -> Price:
    batch = entry.get("batch")
    return Price(
        batch=None if batch is None else _entry_price({**entry, **batch, "batch": None}, read),
        input_per_million=float(entry["input_per_million"]),
        output_per_million=float(entry.get("output_per_million") or 0.0),
        cached_input_per_million=_optional(entry.get("cached_input_per_million")),
        cache_write_per_million=_optional(entry.get("cache_write_per_million")),
        currency=entry["currency"],
        source=f"{entry['source']} ({entry['source_date']}; read {read})",
    )


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def _optional(value: Any) -> float | None:
    return None if value is None else float(value)


def builtin_price(model: str) -> Price | None:
    """The built-in list price of ``model`` (a snapshot id is priced as its model), or None when unknown."""
    table = builtin_prices()
    price = table.get(model)
    if price is None:
        price = table.get(_DATED_SUFFIX.sub("", model))
    return price
