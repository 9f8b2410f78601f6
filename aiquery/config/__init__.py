"""Configuration: endpoints, connection settings and the usage ledger.

Where settings come from, in order:

- ``DATABRICKS_HOST`` (workspace URL; ``http://`` is allowed for local gateways) and ``DATABRICKS_TOKEN``;
- the TOML file named by ``AIQUERY_CONFIG``, else ``conf/aiquery.toml`` in the working directory if it exists;
- per endpoint, the variable named by ``token_env`` for its token.

Only :func:`load_settings` reads ``os.environ``. Tokens are wrapped in :class:`Secret`, whose ``repr`` never shows
the value. The package's modules, one job each: :mod:`~aiquery.config.defaults` (every default),
:mod:`~aiquery.config.endpoint` and :mod:`~aiquery.config.settings` (the frozen dataclasses),
:mod:`~aiquery.config.loading` (environment and TOML), :mod:`~aiquery.config.endpoint_checks` (one endpoint
table's checks) and :mod:`~aiquery.config.api_catalog` (the wire formats ``api`` may name, registered by
:mod:`aiquery.apis`).
"""

from __future__ import annotations

from aiquery.config.api_catalog import APIS, EndpointOption
from aiquery.config.defaults import (
    DATABRICKS_EMBEDDING_ENDPOINTS,
    DEFAULT_AUTH,
    DEFAULT_CACHE_MAX_BYTES,
    DEFAULT_CACHE_TTL_S,
    DEFAULT_CHAT_ENDPOINT,
    DEFAULT_CONFIG_PATH,
    DEFAULT_CONTEXT_TOKENS,
    DEFAULT_CURRENCY,
    DEFAULT_DEADLINE_S,
    DEFAULT_EMBEDDING_ENDPOINT,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_RETRY_AFTER_S,
    DEFAULT_TIMEOUT_S,
    DEFAULT_TOKEN_ENV,
    DEFAULT_USAGE_TABLE,
    MAX_RESPONSE_BYTES_LIMIT,
    MIN_CONTEXT_TOKENS,
    TEXT_FUNCTIONS,
)
from aiquery.config.endpoint import Endpoint, Secret
from aiquery.config.loading import load_settings
from aiquery.config.settings import CacheSettings, CoordinatorSettings, FunctionSettings, Settings, UsageSettings
from aiquery.pricing import Price

__all__ = [
    "APIS",
    "DATABRICKS_EMBEDDING_ENDPOINTS",
    "DEFAULT_AUTH",
    "DEFAULT_CACHE_MAX_BYTES",
    "DEFAULT_CACHE_TTL_S",
    "DEFAULT_CHAT_ENDPOINT",
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_CONTEXT_TOKENS",
    "DEFAULT_CURRENCY",
    "DEFAULT_DEADLINE_S",
    "DEFAULT_EMBEDDING_ENDPOINT",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MAX_REQUEST_BYTES",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_MAX_RETRY_AFTER_S",
    "DEFAULT_TIMEOUT_S",
    "DEFAULT_TOKEN_ENV",
    "DEFAULT_USAGE_TABLE",
    "MAX_RESPONSE_BYTES_LIMIT",
    "MIN_CONTEXT_TOKENS",
    "TEXT_FUNCTIONS",
    "CacheSettings",
    "CoordinatorSettings",
    "Endpoint",
    "EndpointOption",
    "FunctionSettings",
    "Price",
    "Secret",
    "Settings",
    "UsageSettings",
    "load_settings",
]
