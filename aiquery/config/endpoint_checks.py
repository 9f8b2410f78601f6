"""Checking one ``[endpoints.<name>]`` table, and turning its price table into a :class:`Price`.

Every check names the file, the table, the key and what is expected, so a wrong value is fixed without reading
code. ``api``, ``auth`` and the options of one API alone (``anthropic_version``) are checked against the
registered wire formats (:mod:`aiquery.config.api_catalog`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from aiquery.config.api_catalog import auth_styles, wire_formats
from aiquery.config.defaults import (
    DEFAULT_CURRENCY,
    DEFAULT_MAX_RESPONSE_BYTES,
    ENDPOINT_KEYS,
    MAX_RESPONSE_BYTES_LIMIT,
    MIN_CONTEXT_TOKENS,
)
from aiquery.config_numbers import is_plain_number, refuse_unusable_numbers
from aiquery.errors import ConfigError
from aiquery.pricing import DEFAULT_BATCH_DISCOUNT, PRICE_KEYS, PRICE_TABLE_KEYS, Price, builtin_price

__all__ = ["check_endpoint", "endpoint_price", "is_int"]

Fail = Callable[[str, str], None]
"""Raises the ConfigError for one key: ``fail(key, what is expected)``."""

_CURRENCY = r"[A-Za-z]{3,8}"


def check_endpoint(name: str, raw: Any, source: str) -> None:
    """Refuse an endpoint table that is no table, has an unknown key, or holds a value of the wrong type or range.

    Raises:
        ConfigError: naming ``source``, the table and the key.
    """
    where = f"{source}: [endpoints.{name}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table")
    refuse_unusable_numbers(raw, source, table=f"endpoints.{name}")
    unknown = set(raw) - ENDPOINT_KEYS
    if unknown:
        raise ConfigError(
            f"{where} has unknown key {sorted(unknown)[0]!r}; allowed: {', '.join(sorted(ENDPOINT_KEYS))}"
        )

    def fail(key: str, expected: str) -> None:
        raise ConfigError(f"{where} {key} = {raw[key]!r} is invalid; expected {expected}")

    _check_wire_format(raw, fail)
    _check_values(raw, fail)
    _check_batch(raw, fail)
    _check_price(raw, fail)


def _check_wire_format(raw: Mapping[str, Any], fail: Fail) -> None:
    formats = wire_formats()
    if "api" in raw and raw["api"] not in formats:
        fail("api", "one of " + ", ".join(formats))
    if "auth" in raw and raw["auth"] not in auth_styles():
        fail("auth", "one of " + ", ".join(auth_styles()))
    for wire in formats.values():
        for key, option in wire.endpoint_options.items():
            if key not in raw:
                continue
            if not option.accepts(raw[key]):
                fail(key, option.expected)
            if raw.get("api") != wire.api:
                fail(key, f'an option of api = "{wire.api}" endpoints only')


def _check_values(raw: Mapping[str, Any], fail: Fail) -> None:
    for key in ("model", "token_env"):
        if key in raw and (not isinstance(raw[key], str) or not raw[key]):
            fail(key, "a non-empty string")
    if "base_url" in raw and (
        not isinstance(raw["base_url"], str) or not raw["base_url"].startswith(("http://", "https://"))
    ):
        fail("base_url", "an http:// or https:// URL")
    for key, least in (("max_concurrency", 1), ("max_retries", 0), ("context_tokens", MIN_CONTEXT_TOKENS)):
        if key in raw and (not is_int(raw[key]) or raw[key] < least):
            fail(key, f"a whole number of at least {least}")
    for key in ("requests_per_minute", "tokens_per_minute", "timeout", "deadline", "max_retry_after"):
        if key in raw and (not is_plain_number(raw[key]) or raw[key] <= 0):
            fail(key, "a positive number")
    for key in ("verify_tls", "cache", "batch"):
        if key in raw and not isinstance(raw[key], bool):
            fail(key, "true or false")
    size = raw.get("max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES)
    if not is_int(size) or not 1 <= size <= MAX_RESPONSE_BYTES_LIMIT:
        # Any answer must fit, stored and replied, in one of the coordinator's 64 MiB frames.
        fail(
            "max_response_bytes",
            f"a whole number of bytes from 1 to {MAX_RESPONSE_BYTES_LIMIT} (48 MiB, so that any answer fits the "
            f"coordinator's 64 MiB frame), like {32 * 1024 * 1024} for 32 MiB",
        )
    tags = raw.get("request_tags")
    if tags is not None and (
        not isinstance(tags, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items())
    ):
        fail("request_tags", 'a table of string values, like { team = "ml" }')


GATEWAY_PATH_MARK = "/ai-gateway/"
"""In a ``base_url``, the Databricks AI Gateway's routes: they serve live calls only, no batch API."""


def _check_batch(raw: Mapping[str, Any], fail: Fail) -> None:
    if raw.get("batch") is not True:
        return
    base_url = raw.get("base_url")
    if base_url is None:
        fail(
            "batch",
            "a base_url at the provider or a compatible server beside it (like https://api.openai.com/v1): without "
            "one, calls go to the Databricks AI Gateway's route, which has no batch API",
        )
    if GATEWAY_PATH_MARK in str(base_url):
        fail("batch", "a base_url at the provider, not a Databricks AI Gateway route (it has no batch API)")


def _check_price(raw: Mapping[str, Any], fail: Fail) -> None:
    table = raw.get("price")
    if "currency" in raw:
        currency = raw["currency"]
        if not isinstance(currency, str) or not re.fullmatch(_CURRENCY, currency):
            fail("currency", 'a currency code, like "USD", "EUR" or "DBU"')
        if table is None:
            fail("currency", "a price table beside it (price = { input_per_million = ..., output_per_million = ... })")
    if table is None:
        return
    example = "{ input_per_million = 0.15, output_per_million = 0.60 } (0 for an embeddings endpoint's output)"
    if not isinstance(table, dict):
        fail("price", "a table like " + example)
    unknown = set(table) - set(PRICE_TABLE_KEYS)
    missing = [key for key in PRICE_KEYS[:2] if key not in table]
    bad = [key for key, value in table.items() if key in PRICE_KEYS and (not is_plain_number(value) or value < 0)]
    if unknown or missing or bad:
        keys = ", ".join(PRICE_KEYS)
        fail("price", f"a table of {keys} (the first two required, each a number >= 0), like {example}")
    discount = table.get("batch_discount", DEFAULT_BATCH_DISCOUNT)
    if not is_plain_number(discount) or not 0 <= discount < 1:
        fail("price", f"a batch_discount from 0 up to (not including) 1, like {DEFAULT_BATCH_DISCOUNT} for half price")


def endpoint_price(raw: Mapping[str, Any], model: str) -> Price | None:
    """The endpoint's configured price (checked by :func:`check_endpoint`), else its model's built-in one."""
    table = raw.get("price")
    if table is None:
        return builtin_price(model)
    return Price(
        input_per_million=float(table["input_per_million"]),
        output_per_million=float(table["output_per_million"]),
        cached_input_per_million=_float_or_none(table.get("cached_input_per_million")),
        cache_write_per_million=_float_or_none(table.get("cache_write_per_million")),
        currency=raw.get("currency", DEFAULT_CURRENCY),
        batch_discount=float(table.get("batch_discount", DEFAULT_BATCH_DISCOUNT)),
    )


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def is_int(value: Any) -> bool:
    """A whole number, and not a bool (TOML's ``true`` is no count)."""
    return isinstance(value, int) and not isinstance(value, bool)
