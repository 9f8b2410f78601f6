"""Configuration: endpoints, connection settings and the usage ledger.

Where settings come from, in order:

- ``DATABRICKS_HOST`` (workspace URL; ``http://`` is allowed for local gateways) and ``DATABRICKS_TOKEN``;
- the TOML file named by ``AIQUERY_CONFIG``, else ``conf/aiquery.toml`` in the working directory if it exists;
- per endpoint, the variable named by ``token_env`` for its token.

This is the only module that reads ``os.environ`` (in :func:`load_settings`). Tokens are wrapped in
:class:`Secret`, whose ``repr`` never shows the value.
"""

from __future__ import annotations

import getpass
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aiquery.config_numbers import is_plain_number, number_problem, refuse_unusable_numbers
from aiquery.errors import ConfigError
from aiquery.pricing import PRICE_KEYS, Price, builtin_price
from aiquery.redis_url import DEFAULT_NAMESPACE, exposure, malformed, redacted

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found, no-redef, unused-ignore]

__all__ = [
    "APIS",
    "DATABRICKS_EMBEDDING_ENDPOINTS",
    "DEFAULT_CONFIG_PATH",
    "CacheSettings",
    "CoordinatorSettings",
    "Endpoint",
    "FunctionSettings",
    "Price",
    "Secret",
    "Settings",
    "UsageSettings",
    "load_settings",
]

# ---- defaults, in one place -------------------------------------------------------------------------------
DEFAULT_CONFIG_PATH = Path("conf") / "aiquery.toml"
DEFAULT_TOKEN_ENV = "DATABRICKS_TOKEN"
DEFAULT_AUTH = "bearer"
DEFAULT_MAX_CONCURRENCY = 64
DEFAULT_TIMEOUT_S = 120.0
DEFAULT_DEADLINE_S = 600.0
DEFAULT_MAX_RETRIES = 10
DEFAULT_MAX_RETRY_AFTER_S = 120.0
DEFAULT_USAGE_TABLE = "ai_gateway.usage"
DEFAULT_MAX_REQUEST_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024
MAX_RESPONSE_BYTES_LIMIT = 48 * 1024 * 1024
"""The largest ``max_response_bytes``: an answer travels to the coordinator's store and back in one 64 MiB frame,
with room left for its JSON escaping and the frame's own fields."""
DEFAULT_CACHE_TTL_S = 30 * 86_400.0
DEFAULT_CACHE_MAX_BYTES = 1 << 30
DEFAULT_CONTEXT_TOKENS = 32_000
"""A context window every current chat model has (most have 128,000 or more): set ``context_tokens`` for more."""
MIN_CONTEXT_TOKENS = 256
DEFAULT_CHAT_ENDPOINT = "databricks-meta-llama-3-3-70b-instruct"
DEFAULT_EMBEDDING_ENDPOINT = "databricks-gte-large-en"
"""The endpoints the AI Functions use unless ``[functions]`` names others: Databricks' foundation models."""
TEXT_FUNCTIONS = (
    "ai_agg",
    "ai_analyze_sentiment",
    "ai_classify",
    "ai_extract",
    "ai_filter",
    "ai_fix_grammar",
    "ai_gen",
    "ai_mask",
    "ai_summarize",
    "ai_translate",
)
"""The AI Functions a chat endpoint answers (``ai_similarity`` uses the embedding endpoint)."""
DEFAULT_CURRENCY = "USD"

# Wire formats we speak (STYLE: kebab-case names) and where each lives on the Databricks AI Gateway.
APIS: Mapping[str, str] = {
    "chat": "/ai-gateway/mlflow/v1",
    "embeddings": "/ai-gateway/mlflow/v1",
    "responses": "/ai-gateway/mlflow/v1",
    "openai-responses": "/ai-gateway/openai/v1",
    "anthropic": "/ai-gateway/anthropic",
    "gemini": "/ai-gateway/gemini",
}
AUTH_STYLES = ("bearer", "x-api-key", "x-goog-api-key")
# Databricks-provided embedding endpoints: unconfigured, they default to the embeddings API, not chat.
DATABRICKS_EMBEDDING_ENDPOINTS = frozenset(
    {"databricks-gte-large-en", "databricks-bge-large-en", "databricks-qwen3-embedding-0-6b"}
)

_ENDPOINT_KEYS = frozenset(
    {
        "api",
        "model",
        "base_url",
        "token_env",
        "auth",
        "max_concurrency",
        "requests_per_minute",
        "tokens_per_minute",
        "timeout",
        "deadline",
        "max_retries",
        "max_retry_after",
        "verify_tls",
        "request_tags",
        "cache",
        "price",
        "currency",
        "anthropic_version",
        "context_tokens",
        "max_response_bytes",
    }
)
_TOP_KEYS = frozenset({"endpoints", "usage", "requester", "coordinator", "cache", "functions"})
_FUNCTION_KEYS = frozenset({"chat_endpoint", "embedding_endpoint", *TEXT_FUNCTIONS, "ai_similarity"})
_CACHE_KEYS = frozenset({"enabled", "ttl", "url", "max_size", "namespace", "insecure"})
_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0}
_SIZE_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30}
_USAGE_KEYS = frozenset({"enabled", "table", "path", "dir", "ingest_interval"})
_COORDINATOR_KEYS = frozenset({"port"})


class Secret:
    """A string that never shows itself in ``repr``, ``str``, logs or query plans."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret value, for the one place that puts it on the wire."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Secret, (self._value,))


@dataclass(frozen=True, kw_only=True, slots=True)
class Endpoint:
    """One endpoint as ``ai_query('name', ...)`` reaches it: wire format, URL, model, token and limits."""

    name: str
    """The name used in SQL."""
    api: str
    """Wire format: one of :data:`APIS`."""
    model: str
    """The model name sent to the gateway (defaults to the endpoint's name)."""
    base_url: str
    """The base URL you would give that API's official SDK, without a trailing slash."""
    token: Secret | None = field(default=None, compare=False)
    """The credential, or None for an unauthenticated endpoint."""
    token_env: str = DEFAULT_TOKEN_ENV
    """The environment variable the token came from (named in errors, never the value)."""
    auth: str = DEFAULT_AUTH
    """How the token travels: ``bearer``, ``x-api-key`` (Anthropic direct) or ``x-goog-api-key`` (Gemini direct)."""
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    """Requests in flight at once, per Python worker."""
    requests_per_minute: float | None = None
    """Request budget shared by every worker of the application; None to learn the limit from 429s."""
    tokens_per_minute: float | None = None
    """Token budget (input + output) shared by every worker; None for no token budget."""
    timeout: float = DEFAULT_TIMEOUT_S
    """Seconds one HTTP attempt may take."""
    deadline: float = DEFAULT_DEADLINE_S
    """Seconds one call may take in all, attempts and waits included."""
    max_retries: int = DEFAULT_MAX_RETRIES
    """Retries after the first attempt for retryable failures."""
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER_S
    """Longest server-requested wait (Retry-After) honoured; a longer one is not retried."""
    verify_tls: bool = True
    """Check the server's TLS certificate. Only an explicit ``verify_tls = false`` turns it off."""
    request_tags: Mapping[str, str] = field(default_factory=dict)
    """Tags sent with every request to this endpoint (``Databricks-Ai-Gateway-Request-Tags``)."""
    cache: bool = True
    """Answer from the answer store when it has the answer; ``cache = false`` sends every row."""
    price: Price | None = None
    """Prices per million tokens: the endpoint's ``price`` table, else the built-in list price of its model, else
    None (its requests' cost is NULL)."""
    anthropic_version: str | None = None
    """The ``anthropic-version`` header of an Anthropic endpoint (None: the adapter's default, 2023-06-01)."""
    context_tokens: int = DEFAULT_CONTEXT_TOKENS
    """The model's context window in tokens: ``ai_agg`` packs each request's rows to fit it."""
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    """Bytes of one answer read at most, counted after decompression; a larger answer is that row's error."""


@dataclass(frozen=True, kw_only=True, slots=True)
class CacheSettings:
    """The answer store: answers once paid for are answered from it while fresh."""

    enabled: bool = True
    ttl: float = DEFAULT_CACHE_TTL_S
    """Seconds an answer stays fresh (the file says ``ttl = "30d"``, ``"12h"``, or a number of seconds)."""
    url: str | None = None
    """A Redis server (``redis://host:port/db``) shared by several applications; None for the driver's disk."""
    max_size: int = DEFAULT_CACHE_MAX_BYTES
    """Bytes of answers the disk store keeps (``max_size = "1GB"``); the least recently used go first."""
    namespace: str = DEFAULT_NAMESPACE
    """The first part of every Redis key (``<namespace>:answer:<fingerprint>``): applications naming the same one
    share answers; a namespace per team or user keeps stores apart on one server."""
    insecure: bool = False
    """Accept a Redis server reached over the network with neither a password nor TLS (``rediss://``)."""

    def __repr__(self) -> str:
        url = None if self.url is None else redacted(self.url)  # a password in the URL never shows
        return (
            f"CacheSettings(enabled={self.enabled!r}, ttl={self.ttl!r}, url={url!r}, max_size={self.max_size!r}, "
            f"namespace={self.namespace!r}, insecure={self.insecure!r})"
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class UsageSettings:
    """Where the usage ledger goes."""

    enabled: bool = True
    table: str = DEFAULT_USAGE_TABLE
    """The Delta table's name in the session catalog."""
    path: str | None = None
    """Storage location of the table; None for the catalog's default."""
    dir: str | None = None
    """Folder for spool files and the ingestion checkpoint; None for ``<warehouse>/_aiquery``."""
    ingest_interval: float = 30.0
    """Seconds between background ingestions while a query runs."""


@dataclass(frozen=True, kw_only=True, slots=True)
class CoordinatorSettings:
    """The driver-side coordinator that every worker of the application reaches."""

    port: int = 0
    """The TCP port it listens on; 0 for an ephemeral one. Set it for clusters whose firewall opens fixed ports."""


@dataclass(frozen=True, kw_only=True, slots=True)
class FunctionSettings:
    """Which endpoints answer the AI Functions (``ai_summarize``, ``ai_classify``, ``ai_similarity``, ...)."""

    chat_endpoint: str = DEFAULT_CHAT_ENDPOINT
    """The chat endpoint of every text function without one of its own."""
    embedding_endpoint: str = DEFAULT_EMBEDDING_ENDPOINT
    """The embeddings endpoint of ``ai_similarity``."""
    overrides: Mapping[str, str] = field(default_factory=dict)
    """One function's own endpoint (``ai_summarize = "my-claude"`` in the file)."""

    def endpoint_for(self, function: str) -> str:
        """The endpoint that answers ``function``."""
        default = self.embedding_endpoint if function == "ai_similarity" else self.chat_endpoint
        return self.overrides.get(function, default)


@dataclass(frozen=True, kw_only=True, slots=True)
class Settings:
    """Everything aiquery reads from the environment and the configuration file."""

    host: str | None = None
    token: Secret | None = field(default=None, compare=False)
    endpoints: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Raw endpoint tables from the file, already checked for unknown keys and types."""
    usage: UsageSettings = field(default_factory=UsageSettings)
    coordinator: CoordinatorSettings = field(default_factory=CoordinatorSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    functions: FunctionSettings = field(default_factory=FunctionSettings)
    requester: str = ""
    source: str = ""
    """The file the settings came from, or '' when none was read."""
    environ: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    """The variables endpoints may name in ``token_env`` (read once, here)."""

    def endpoint(self, name: str) -> Endpoint:
        """Resolve an endpoint by name: configured, or a workspace chat (or embeddings) endpoint.

        Raises:
            ConfigError: the host or token it needs is missing, or a value is invalid.
        """
        raw = dict(self.endpoints.get(name, {}))
        where = f"[endpoints.{name}] in {self.source}" if name in self.endpoints else f"endpoint '{name}'"
        default_api = "embeddings" if name in DATABRICKS_EMBEDDING_ENDPOINTS else "chat"
        api = raw.get("api", default_api)
        base_url = raw.get("base_url")
        if base_url is None:
            if not self.host:
                raise ConfigError(
                    f"{where}: DATABRICKS_HOST is not set. Set it to your workspace URL "
                    f"(for example https://my-workspace.cloud.databricks.com) or give the endpoint a base_url."
                )
            base_url = self.host.rstrip("/") + APIS[api]
        token_env = raw.get("token_env", DEFAULT_TOKEN_ENV)
        token_value = self.environ.get(token_env)
        token = Secret(token_value) if token_value else None
        if token is None and raw.get("auth") != "none":
            raise ConfigError(
                f"{where}: no token. Set the environment variable {token_env} "
                f"(the endpoint's token_env) to the endpoint's access token."
            )
        auth = raw.get("auth", DEFAULT_AUTH)
        return Endpoint(
            name=name,
            api=api,
            model=raw.get("model", name),
            base_url=str(base_url).rstrip("/"),
            token=token,
            token_env=token_env,
            auth=auth,
            max_concurrency=raw.get("max_concurrency", DEFAULT_MAX_CONCURRENCY),
            requests_per_minute=raw.get("requests_per_minute"),
            tokens_per_minute=raw.get("tokens_per_minute"),
            timeout=raw.get("timeout", DEFAULT_TIMEOUT_S),
            deadline=raw.get("deadline", DEFAULT_DEADLINE_S),
            max_retries=raw.get("max_retries", DEFAULT_MAX_RETRIES),
            max_retry_after=raw.get("max_retry_after", DEFAULT_MAX_RETRY_AFTER_S),
            verify_tls=raw.get("verify_tls", True),
            request_tags=dict(raw.get("request_tags", {})),
            cache=raw.get("cache", True),
            price=_price(raw, raw.get("model", name)),
            anthropic_version=raw.get("anthropic_version"),
            context_tokens=raw.get("context_tokens", DEFAULT_CONTEXT_TOKENS),
            max_response_bytes=raw.get("max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES),
        )

    def with_endpoint(self, name: str, **options: Any) -> Settings:
        """A copy with one more (or a replaced) endpoint table, checked like one from a file."""
        _check_endpoint(name, options, "with_endpoint()")
        endpoints = {**self.endpoints, name: options}
        return replace(self, endpoints=endpoints)


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
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ConfigError(
            f"{source}: unknown top-level key {sorted(unknown)[0]!r}; allowed: {', '.join(sorted(_TOP_KEYS))}"
        )
    endpoints = data.get("endpoints", {})
    if not isinstance(endpoints, dict):
        raise ConfigError(f"{source}: 'endpoints' must be a table of [endpoints.<name>] tables")
    for name, raw in endpoints.items():
        _check_endpoint(name, raw, source)
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
    _check_table(raw, source, "usage", _USAGE_KEYS)
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
    _check_table(raw, source, "coordinator", _COORDINATOR_KEYS)
    port = raw.get("port", 0)
    if not _is_int(port) or not 0 <= port <= 65535:
        raise ConfigError(
            f"{source}: [coordinator] port = {port!r} is invalid; expected a whole number from 0 to 65535"
        )
    return CoordinatorSettings(port=port)


def _function_settings(raw: Any, source: str) -> FunctionSettings:
    names = ", ".join(sorted(_FUNCTION_KEYS - _ENDPOINT_ROLES))
    _check_table(
        raw, source, "functions", _FUNCTION_KEYS, f"chat_endpoint, embedding_endpoint, or a function's name ({names})"
    )
    for key, value in raw.items():
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{source}: [functions] {key} = {value!r} is invalid; expected an endpoint's name")
    overrides = {key: value for key, value in raw.items() if key not in _ENDPOINT_ROLES}
    return FunctionSettings(**{key: raw[key] for key in _ENDPOINT_ROLES if key in raw}, overrides=overrides)


_ENDPOINT_ROLES = frozenset({"chat_endpoint", "embedding_endpoint"})


def _cache_settings(raw: Any, source: str) -> CacheSettings:
    _check_table(raw, source, "cache", _CACHE_KEYS)

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
        ttl = _amount(raw["ttl"], _DURATION_UNITS)
        if ttl is None or ttl <= 0:
            raise fail("ttl", 'a positive number of seconds, or a duration like "30d", "12h", "90m"')
        options["ttl"] = ttl
    if "max_size" in raw:
        size = _amount(raw["max_size"], _SIZE_UNITS)
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
    if _is_number(value):
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


def _check_endpoint(name: str, raw: Any, source: str) -> None:
    where = f"{source}: [endpoints.{name}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table")
    refuse_unusable_numbers(raw, source, table=f"endpoints.{name}")
    unknown = set(raw) - _ENDPOINT_KEYS
    if unknown:
        raise ConfigError(
            f"{where} has unknown key {sorted(unknown)[0]!r}; allowed: {', '.join(sorted(_ENDPOINT_KEYS))}"
        )

    def fail(key: str, expected: str) -> None:
        raise ConfigError(f"{where} {key} = {raw[key]!r} is invalid; expected {expected}")

    if "api" in raw and raw["api"] not in APIS:
        fail("api", "one of " + ", ".join(APIS))
    if "auth" in raw and raw["auth"] not in (*AUTH_STYLES, "none"):
        fail("auth", "one of " + ", ".join((*AUTH_STYLES, "none")))
    for key in ("model", "token_env"):
        if key in raw and (not isinstance(raw[key], str) or not raw[key]):
            fail(key, "a non-empty string")
    if "base_url" in raw and (
        not isinstance(raw["base_url"], str) or not raw["base_url"].startswith(("http://", "https://"))
    ):
        fail("base_url", "an http:// or https:// URL")
    for key, least in (("max_concurrency", 1), ("max_retries", 0), ("context_tokens", MIN_CONTEXT_TOKENS)):
        if key in raw and (not _is_int(raw[key]) or raw[key] < least):
            fail(key, f"a whole number of at least {least}")
    for key in ("requests_per_minute", "tokens_per_minute", "timeout", "deadline", "max_retry_after"):
        if key in raw and (not _is_number(raw[key]) or raw[key] <= 0):
            fail(key, "a positive number")
    for key in ("verify_tls", "cache"):
        if key in raw and not isinstance(raw[key], bool):
            fail(key, "true or false")
    size = raw.get("max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES)
    if not _is_int(size) or not 1 <= size <= MAX_RESPONSE_BYTES_LIMIT:
        # Any answer must fit, stored and replied, in one of the coordinator's 64 MiB frames.
        fail(
            "max_response_bytes",
            f"a whole number of bytes from 1 to {MAX_RESPONSE_BYTES_LIMIT} (48 MiB, so that any answer fits the "
            f"coordinator's 64 MiB frame), like {32 * 1024 * 1024} for 32 MiB",
        )
    _check_price(raw, fail)
    _check_anthropic_version(raw, fail)
    tags = raw.get("request_tags")
    if tags is not None and (
        not isinstance(tags, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items())
    ):
        fail("request_tags", 'a table of string values, like { team = "ml" }')


def _check_anthropic_version(raw: Mapping[str, Any], fail: Callable[[str, str], None]) -> None:
    if "anthropic_version" not in raw:
        return
    version = raw["anthropic_version"]
    if not isinstance(version, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", version):
        fail("anthropic_version", 'an Anthropic API version date, like "2023-06-01" or "2026-10-21"')
    if raw.get("api") != "anthropic":
        fail("anthropic_version", 'an option of api = "anthropic" endpoints only')


def _check_price(raw: Mapping[str, Any], fail: Callable[[str, str], None]) -> None:
    table = raw.get("price")
    if "currency" in raw:
        currency = raw["currency"]
        if not isinstance(currency, str) or not re.fullmatch(r"[A-Za-z]{3,8}", currency):
            fail("currency", 'a currency code, like "USD", "EUR" or "DBU"')
        if table is None:
            fail("currency", "a price table beside it (price = { input_per_million = ..., output_per_million = ... })")
    if table is None:
        return
    example = "{ input_per_million = 0.15, output_per_million = 0.60 } (0 for an embeddings endpoint's output)"
    if not isinstance(table, dict):
        fail("price", "a table like " + example)
    unknown = set(table) - set(PRICE_KEYS)
    missing = [key for key in PRICE_KEYS[:2] if key not in table]
    bad = [key for key, value in table.items() if key in PRICE_KEYS and (not _is_number(value) or value < 0)]
    if unknown or missing or bad:
        keys = ", ".join(PRICE_KEYS)
        fail("price", f"a table of {keys} (the first two required, each a number >= 0), like {example}")


def _price(raw: Mapping[str, Any], model: str) -> Price | None:
    """The endpoint's configured price (checked by :func:`_check_endpoint`), else its model's built-in one."""
    table = raw.get("price")
    if table is None:
        return builtin_price(model)
    return Price(
        input_per_million=float(table["input_per_million"]),
        output_per_million=float(table["output_per_million"]),
        cached_input_per_million=_float_or_none(table.get("cached_input_per_million")),
        cache_write_per_million=_float_or_none(table.get("cache_write_per_million")),
        currency=raw.get("currency", DEFAULT_CURRENCY),
    )


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return is_plain_number(value)
