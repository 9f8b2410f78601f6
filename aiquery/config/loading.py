"""Reading settings: the environment (the only place in aiquery that reads ``os.environ`` for settings), the
TOML file, and the checks of its ``[usage]``, ``[coordinator]``, ``[cache]`` and ``[functions]`` tables."""

from __future__ import annotations

import getpass
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiquery.config.defaults import (
    CACHE_KEYS,
    COORDINATOR_KEYS,
    DEFAULT_CONFIG_PATH,
    DEFAULT_TOKEN_ENV,
    DURATION_UNITS,
    ENDPOINT_ROLES,
    FUNCTION_KEYS,
    SIZE_UNITS,
    TOP_KEYS,
    USAGE_KEYS,
)
from aiquery.config.endpoint import Secret
from aiquery.config.endpoint_checks import check_endpoint, is_int
from aiquery.config.settings import CacheSettings, CoordinatorSettings, FunctionSettings, Settings, UsageSettings
from aiquery.config_numbers import is_plain_number, number_problem, refuse_unusable_numbers
from aiquery.errors import ConfigError
from aiquery.redis_url import exposure, malformed, redacted

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found, no-redef, unused-ignore]

__all__ = ["load_settings"]


def load_settings(environ: Mapping[str, str] | None = None, *, config_path: str | Path | None = None) -> Settings:
    """Read settings from the environment and the TOML file.

    Variables read: ``DATABRICKS_HOST``, ``DATABRICKS_TOKEN``, ``AIQUERY_CONFIG``, ``AIQUERY_REQUESTER``, ``USER``
    and any variable an endpoint names in ``token_env``.

    Args:
        environ: the environment to read; ``os.environ`` when None.
        config_path: a TOML file to read instead of ``AIQUERY_CONFIG`` / ``conf/aiquery.toml``.

    Raises:
        ConfigError: the file cannot be read or parsed, or holds an unknown key or a value of the wrong type.
    """
    env = dict(os.environ if environ is None else environ)
    path: Path | None
    if config_path is not None:
        path = Path(config_path)
    elif env.get("AIQUERY_CONFIG"):
        path = Path(env["AIQUERY_CONFIG"])
    else:
        path = DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.is_file() else None
    data: dict[str, Any] = {}
    source = ""
    if path is not None:
        source = str(path)
        data = _read_toml(path)
        refuse_unusable_numbers(data, source)
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise ConfigError(
            f"{source}: unknown top-level key {sorted(unknown)[0]!r}; allowed: {', '.join(sorted(TOP_KEYS))}"
        )
    endpoints = data.get("endpoints", {})
    if not isinstance(endpoints, dict):
        raise ConfigError(f"{source}: 'endpoints' must be a table of [endpoints.<name>] tables")
    for name, raw in endpoints.items():
        check_endpoint(name, raw, source)
    token = env.get(DEFAULT_TOKEN_ENV)
    requester = data.get("requester") or env.get("AIQUERY_REQUESTER") or env.get("USER") or _login_name()
    return Settings(
        host=env.get("DATABRICKS_HOST") or None,
        token=Secret(token) if token else None,
        endpoints=endpoints,
        usage=_usage_settings(data.get("usage", {}), source),
        coordinator=_coordinator_settings(data.get("coordinator", {}), source),
        cache=_cache_settings(data.get("cache", {}), source),
        functions=_function_settings(data.get("functions", {}), source),
        requester=str(requester),
        source=source,
        environ=env,
    )


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no passwd entry inside some containers
        return "unknown"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data: dict[str, Any] = tomllib.load(handle)
            return data
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found (named by AIQUERY_CONFIG)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror}") from None


def _check_table(raw: Any, source: str, section: str, keys: frozenset[str], allowed: str = "") -> None:
    """Refuse a ``[section]`` that is no table or holds a key outside ``keys`` (``allowed`` describes them)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: [{section}] must be a table")
    unknown = set(raw) - keys
    if unknown:
        raise ConfigError(
            f"{source}: [{section}] has unknown key {sorted(unknown)[0]!r}; "
            f"allowed: {allowed or ', '.join(sorted(keys))}"
        )


def _usage_settings(raw: Any, source: str) -> UsageSettings:
    _check_table(raw, source, "usage", USAGE_KEYS)
    checks: dict[str, type | tuple[type, ...]] = {
        "enabled": bool,
        "table": str,
        "path": str,
        "dir": str,
        "ingest_interval": (int, float),
    }
    for key, value in raw.items():
        too_small = key == "ingest_interval" and (not is_plain_number(value) or value <= 0)
        if not isinstance(value, checks[key]) or too_small:
            raise ConfigError(f"{source}: [usage] {key} = {value!r} is invalid; expected {_describe(checks[key])}")
    return UsageSettings(**raw)


def _coordinator_settings(raw: Any, source: str) -> CoordinatorSettings:
    _check_table(raw, source, "coordinator", COORDINATOR_KEYS)
    port = raw.get("port", 0)
    if not is_int(port) or not 0 <= port <= 65535:
        raise ConfigError(
            f"{source}: [coordinator] port = {port!r} is invalid; expected a whole number from 0 to 65535"
        )
    return CoordinatorSettings(port=port)


def _function_settings(raw: Any, source: str) -> FunctionSettings:
    names = ", ".join(sorted(FUNCTION_KEYS - ENDPOINT_ROLES))
    _check_table(
        raw, source, "functions", FUNCTION_KEYS, f"chat_endpoint, embedding_endpoint, or a function's name ({names})"
    )
    for key, value in raw.items():
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{source}: [functions] {key} = {value!r} is invalid; expected an endpoint's name")
    overrides = {key: value for key, value in raw.items() if key not in ENDPOINT_ROLES}
    return FunctionSettings(**{key: raw[key] for key in ENDPOINT_ROLES if key in raw}, overrides=overrides)


def _cache_settings(raw: Any, source: str) -> CacheSettings:
    _check_table(raw, source, "cache", CACHE_KEYS)

    def fail(key: str, expected: str) -> ConfigError:
        value = redacted(raw[key]) if key == "url" and isinstance(raw[key], str) else raw[key]
        return ConfigError(f"{source}: [cache] {key} = {value!r} is invalid; expected {expected}")

    options: dict[str, Any] = {}
    for key in ("enabled", "insecure"):
        if key in raw:
            if not isinstance(raw[key], bool):
                raise fail(key, "true or false")
            options[key] = raw[key]
    if "namespace" in raw:
        if not isinstance(raw["namespace"], str) or not re.fullmatch(r"[A-Za-z0-9_.:/-]{1,100}", raw["namespace"]):
            raise fail("namespace", 'a name of letters, digits and _ . : / - (like "team-ml" or "alice")')
        options["namespace"] = raw["namespace"]
    if "ttl" in raw:
        ttl = _amount(raw["ttl"], DURATION_UNITS)
        if ttl is None or ttl <= 0:
            raise fail("ttl", 'a positive number of seconds, or a duration like "30d", "12h", "90m"')
        options["ttl"] = ttl
    if "max_size" in raw:
        size = _amount(raw["max_size"], SIZE_UNITS)
        if size is None or size < 1:
            raise fail("max_size", 'a positive number of bytes, or a size like "1GB", "500MB", "2GiB"')
        options["max_size"] = int(size)
    if "url" in raw:
        url = raw["url"]
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")) or malformed(url):
            raise fail("url", "a Redis URL (redis://host:port/db or rediss://...)")
        reason = exposure(url)
        if reason is not None and not options.get("insecure", False):
            raise ConfigError(
                f"{source}: [cache] url = {redacted(url)!r} is refused: {reason}, so anyone who reaches it could "
                "read the stored answers or plant answers of their own. Give the server a password "
                "(redis://:PASSWORD@host:6379/0) or TLS (rediss://), or set [cache] insecure = true to accept it"
            )
        options["url"] = url
    return CacheSettings(**options)


def _amount(value: Any, units: Mapping[str, float]) -> float | None:
    """A number, or a string of a number and one of ``units`` (case-insensitive), as a number of the base unit."""
    if is_plain_number(value):
        return float(value)
    if not isinstance(value, str):
        return None
    text = value.strip().upper()
    for unit in sorted(units, key=len, reverse=True):
        if text.endswith(unit.upper()):
            try:
                amount = float(text[: -len(unit)].strip())
            except ValueError:
                return None
            return None if number_problem(amount) else amount * units[unit]
    return None


def _describe(kind: Any) -> str:
    if kind == (int, float):
        return "a positive number"
    return {bool: "true or false", str: "a string", int: "an integer"}.get(kind, str(kind))
