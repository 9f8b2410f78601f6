"""Which batch API an endpoint's calls go through, by its wire format: one table, no branches over providers."""

from __future__ import annotations

from collections.abc import Mapping

from aiquery.config import Endpoint
from aiquery.errors import ConfigError
from aiquery.provider_batches.anthropic_batches import AnthropicBatchClient
from aiquery.provider_batches.batch_client import ProviderBatchClient
from aiquery.provider_batches.gemini_batches import GeminiBatchClient
from aiquery.provider_batches.openai_batches import OpenAIBatchClient
from aiquery.provider_batches.provider_http import ProviderHTTP

__all__ = ["CLIENTS", "client_for"]

CLIENTS: Mapping[str, type[ProviderBatchClient]] = {
    "chat": OpenAIBatchClient,
    "embeddings": OpenAIBatchClient,
    "responses": OpenAIBatchClient,
    "openai-responses": OpenAIBatchClient,
    "anthropic": AnthropicBatchClient,
    "gemini": GeminiBatchClient,
}
"""The batch client of each wire format (``api``) that has a provider batch API."""


def client_for(endpoint: Endpoint, http: ProviderHTTP) -> ProviderBatchClient:
    """The batch client of ``endpoint``'s API.

    Raises:
        ConfigError: the endpoint's API has no batch API.
    """
    kind = CLIENTS.get(endpoint.api)
    if kind is None:
        raise ConfigError(f"endpoint {endpoint.name!r}: api {endpoint.api!r} has no provider batch API")
    return kind(endpoint, http)
