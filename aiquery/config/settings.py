"""The settings read once per application: the ledger, the coordinator, the answer store, the AI Functions'
endpoints, and the raw endpoint tables with the resolution of one endpoint by name."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from aiquery.config.api_catalog import wire_format
from aiquery.config.defaults import (
    DATABRICKS_EMBEDDING_ENDPOINTS,
    DEFAULT_CACHE_MAX_BYTES,
    DEFAULT_CACHE_TTL_S,
    DEFAULT_CHAT_ENDPOINT,
    DEFAULT_EMBEDDING_ENDPOINT,
    DEFAULT_TOKEN_ENV,
    DEFAULT_USAGE_TABLE,
    ENDPOINT_KEYS,
)
from aiquery.config.endpoint import Endpoint, Secret
from aiquery.config.endpoint_checks import check_endpoint, endpoint_price
from aiquery.errors import ConfigError
from aiquery.redis_url import DEFAULT_NAMESPACE, redacted

__all__ = ["CacheSettings", "CoordinatorSettings", "FunctionSettings", "Settings", "UsageSettings"]

_AS_WRITTEN = ENDPOINT_KEYS - {"api", "model", "base_url", "token_env", "request_tags", "price", "currency"}
"""Endpoint options that become :class:`Endpoint` fields unchanged."""


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
        api = raw.get("api", "embeddings" if name in DATABRICKS_EMBEDDING_ENDPOINTS else "chat")
        token_env = raw.get("token_env", DEFAULT_TOKEN_ENV)
        return Endpoint(
            name=name,
            api=api,
            model=raw.get("model", name),
            base_url=self._base_url(raw, api, where),
            token=self._token(raw, token_env, where),
            token_env=token_env,
            request_tags=dict(raw.get("request_tags", {})),
            price=endpoint_price(raw, raw.get("model", name)),
            # The other options are taken as written (checked at load); the dataclass holds their defaults.
            **{key: raw[key] for key in _AS_WRITTEN if key in raw},
        )

    def _base_url(self, raw: Mapping[str, Any], api: str, where: str) -> str:
        """The configured ``base_url``, else the workspace's gateway route of the endpoint's API."""
        base_url = raw.get("base_url")
        if base_url is None:
            if not self.host:
                raise ConfigError(
                    f"{where}: DATABRICKS_HOST is not set. Set it to your workspace URL "
                    f"(for example https://my-workspace.cloud.databricks.com) or give the endpoint a base_url."
                )
            base_url = self.host.rstrip("/") + wire_format(api, where).gateway_path
        return str(base_url).rstrip("/")

    def _token(self, raw: Mapping[str, Any], token_env: str, where: str) -> Secret | None:
        """The token from ``token_env``; None only for ``auth = "none"``."""
        value = self.environ.get(token_env)
        if not value and raw.get("auth") != "none":
            raise ConfigError(
                f"{where}: no token. Set the environment variable {token_env} "
                f"(the endpoint's token_env) to the endpoint's access token."
            )
        return Secret(value) if value else None

    def with_endpoint(self, name: str, **options: Any) -> Settings:
        """A copy with one more (or a replaced) endpoint table, checked like one from a file."""
        check_endpoint(name, options, "with_endpoint()")
        endpoints = {**self.endpoints, name: options}
        return replace(self, endpoints=endpoints)
