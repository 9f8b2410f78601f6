"""API adapters: one pure object per wire format, and the registry that finds them by configured name.

An adapter builds the URL, headers and JSON body of one request and reads the response or error body back; it
does no I/O (the engine sends the bytes). An adapter is also the one place holding its API's facts: gateway path,
parameter mapping, auth style, limits (see :class:`~aiquery.apis.base.Adapter`). Adapters are stateless, so the
registry (:data:`ADAPTERS`, filled by the ``register`` calls below) holds one shared instance of each::

    adapter = get_adapter(endpoint.api)
    request = APIRequest(prompt=..., model=endpoint.model, parameters=..., response_format=...)
    body = adapter.build_body(request)
    answer = adapter.parse_response(response_json, request)   # or adapter.parse_error(status, body)

At analysis time the Spark layer validates literal arguments with :func:`prepare_call_options` (model
parameters and response format against the endpoint's API) and, for a DDL ``responseFormat``, with
:func:`response_format_from_spark_type`.

``Answer.finish_reason`` uses OpenAI's vocabulary (``stop``, ``length``, ``content_filter``, ``tool_calls``)
whatever the API; reasons with no equivalent pass through.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiquery.apis.anthropic import AnthropicAdapter
from aiquery.apis.base import (
    Adapter,
    Answer,
    APIRequest,
    ErrorVerdict,
    MalformedResponse,
    ResponseFormat,
    TokenUsage,
    estimate_tokens,
)
from aiquery.apis.chat import ChatAdapter
from aiquery.apis.embeddings import EmbeddingsAdapter
from aiquery.apis.gemini import GeminiAdapter
from aiquery.apis.parameters import check_supported, prepare_model_parameters, validate_model_parameters
from aiquery.apis.registry import ADAPTERS, get_adapter, register, unregister
from aiquery.apis.response_format import (
    DDLResponseFormat,
    parse_response_format,
    reject_response_format,
    response_format_from_spark_type,
)
from aiquery.apis.responses import OpenAIResponsesAdapter, ResponsesAdapter

__all__ = [
    "ADAPTERS",
    "APIRequest",
    "Adapter",
    "Answer",
    "AnthropicAdapter",
    "ChatAdapter",
    "DDLResponseFormat",
    "EmbeddingsAdapter",
    "ErrorVerdict",
    "GeminiAdapter",
    "MalformedResponse",
    "OpenAIResponsesAdapter",
    "ResponseFormat",
    "ResponsesAdapter",
    "TokenUsage",
    "check_supported",
    "estimate_tokens",
    "get_adapter",
    "parse_response_format",
    "prepare_call_options",
    "prepare_model_parameters",
    "register",
    "response_format_from_spark_type",
    "unregister",
    "validate_model_parameters",
]

for _adapter in (
    ChatAdapter(),
    EmbeddingsAdapter(),
    ResponsesAdapter(),
    OpenAIResponsesAdapter(),
    AnthropicAdapter(),
    GeminiAdapter(),
):
    register(_adapter)


def prepare_call_options(
    api: str,
    model_parameters: Mapping[str, Any] | None,
    response_format: ResponseFormat | None,
    *,
    endpoint: str | None = None,
) -> dict[str, Any]:
    """Check an ai_query call's literal options against the endpoint's API, before any request.

    Args:
        api: the endpoint's configured API name.
        model_parameters: ``modelParameters`` as a dict (Databricks names), or None.
        response_format: the parsed ``responseFormat``, or None.
        endpoint: the endpoint name, for error messages.

    Returns:
        The validated model parameters, ready for :class:`APIRequest`.

    Raises:
        ArgumentError: an ``AI_FUNCTION_INVALID_MODEL_PARAMETERS.*`` error, or
            ``AI_FUNCTION_UNSUPPORTED_RESPONSE_FORMAT`` for a response format on an embeddings endpoint.
        ConfigError: ``api`` is unknown.
    """
    adapter = get_adapter(api)
    parameters = prepare_model_parameters(api, model_parameters, endpoint=endpoint)
    if response_format is not None and adapter.output == "vector":
        reject_response_format(api)
    return parameters
