"""Anthropic Messages: ``POST {base_url}/v1/messages`` with ``anthropic-version: 2023-06-01``.

Request: ``{"model", "max_tokens", "messages": [{"role": "user", "content": prompt}], <parameters>}``;
``max_tokens`` is required by the API, so a default is always sent. Answer: the ``text`` blocks of
``content``, concatenated (``thinking`` blocks skipped). Usage: Anthropic's ``input_tokens`` excludes cache
reads and writes, so normalised input is ``input_tokens + cache_creation_input_tokens +
cache_read_input_tokens``.

Structured output: a strict JSON schema goes to ``output_config.format`` (``{"type": "json_schema",
"schema"}``), Anthropic's generally available structured outputs (constrained decoding; Claude Sonnet 4.5,
Opus 4.5, Haiku 4.5 and later; the beta ``output_format`` field it replaced is deprecated). That decoder wants
``additionalProperties: false`` on every object, so a non-strict schema (one holding a MAP, or a JSON
``json_schema`` without ``"strict": true``) and ``json_object`` (Anthropic has no JSON mode) are asked for in
the ``system`` prompt instead, which every Claude model honours, without a guarantee.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from aiquery.apis.adapter_defaults import BodyModelAdapter
from aiquery.apis.base import Answer, APIRequest, ResponseFormat, TokenUsage
from aiquery.apis.decoding import build_usage, require_list, require_object, require_text, token_count
from aiquery.apis.images import base64_text, media_type
from aiquery.apis.parameter_mappings import ParameterMapping, ParameterRoute, as_list
from aiquery.apis.response_format import JSON_OBJECT_INSTRUCTION
from aiquery.config import Endpoint, EndpointOption
from aiquery.errors import ArgumentError

__all__ = [
    "ANTHROPIC_PARAMETERS",
    "ANTHROPIC_VERSION",
    "DEFAULT_MAX_TOKENS",
    "SAMPLING_DROPPED_IN",
    "AnthropicAdapter",
    "check_version_parameters",
]

ANTHROPIC_VERSION = "2023-06-01"
"""The default: version 2026-10-21 drops temperature, top_p and top_k, which modelParameters may carry (an
endpoint chooses its version with ``anthropic_version``)."""
SAMPLING_DROPPED_IN = "2026-10-21"
"""The first API version that answers 400 to ``temperature``, ``top_p`` and ``top_k``, for every model."""
SAMPLING_PARAMETERS = ("temperature", "top_p", "top_k")


def check_version_parameters(version: str | None, parameters: Mapping[str, Any], endpoint: str | None) -> None:
    """Refuse the sampling parameters under an API version that dropped them (nothing would be answered).

    Raises:
        ArgumentError: ``AI_FUNCTION_INVALID_MODEL_PARAMETERS.UNSUPPORTED_MODEL_PARAMETER``, naming the version.
    """
    if (version or ANTHROPIC_VERSION) < SAMPLING_DROPPED_IN:
        return
    for name in SAMPLING_PARAMETERS:
        if name in parameters:
            where = f"endpoint '{endpoint}'" if endpoint else "the endpoint"
            raise ArgumentError(
                "AI_FUNCTION_INVALID_MODEL_PARAMETERS.UNSUPPORTED_MODEL_PARAMETER",
                f'The "{name}" parameter is not supported for the serving endpoint: {where} uses Anthropic API '
                f"version {version}, which refuses temperature, top_p and top_k for every model. Leave it out, or "
                'set anthropic_version = "2023-06-01" for the endpoint.',
                sqlstate="22023",
            )


DEFAULT_MAX_TOKENS = 1024
"""Sent when modelParameters has no ``max_tokens``: the Messages API refuses a request without one."""

# stop_reason in OpenAI's vocabulary of finish reasons; anything else passes through as is.
_STOP_REASONS: Mapping[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


ANTHROPIC_PARAMETERS = ParameterMapping(
    routes={
        "temperature": ParameterRoute(("temperature",), maximum=1.0),
        "stop": ParameterRoute(("stop_sequences",), convert=as_list),
        # Anthropic's effort control (Claude Opus 4.5 and later); older models reject it with a 400.
        "reasoning_effort": ParameterRoute(("output_config", "effort")),
    },
    unsupported=frozenset({"n", "presence_penalty", "frequency_penalty", "seed"}),
)
"""Anthropic Messages takes ``max_tokens``, ``top_p`` and ``top_k`` as is."""


class AnthropicAdapter(BodyModelAdapter):
    """Anthropic's Messages API, on the gateway's ``anthropic`` route or at Anthropic itself."""

    api: ClassVar[str] = "anthropic"
    api_type: ClassVar[str] = "anthropic/v1/messages"
    path: ClassVar[str] = "/v1/messages"
    output: ClassVar[Literal["text", "vector"]] = "text"
    gateway_path: ClassVar[str] = "/ai-gateway/anthropic"
    auth: ClassVar[str] = "x-api-key"
    parameters: ClassVar[ParameterMapping] = ANTHROPIC_PARAMETERS
    max_image_bytes: ClassVar[int | None] = 5_000_000
    """Anthropic takes at most 5 MB per image, below the request-size limit."""
    endpoint_options: ClassVar[Mapping[str, EndpointOption]] = {
        "anthropic_version": EndpointOption(
            pattern=r"\d{4}-\d{2}-\d{2}",
            expected='an Anthropic API version date, like "2023-06-01" or "2026-10-21"',
        )
    }

    def headers(self, version: str | None = None) -> Mapping[str, str]:
        """``anthropic-version``, which the API requires on every request (the endpoint's, else the default)."""
        return {"anthropic-version": version or ANTHROPIC_VERSION}

    def check_call(self, endpoint: Endpoint, parameters: Mapping[str, Any]) -> None:
        """Refuse the sampling parameters under an API version that dropped them (see
        :func:`check_version_parameters`)."""
        check_version_parameters(endpoint.anthropic_version, parameters, endpoint.name)

    def build_body(self, request: APIRequest) -> dict[str, Any]:
        """The Messages body: ``max_tokens`` always, ``stop`` as ``stop_sequences``, structured output."""
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": DEFAULT_MAX_TOKENS,
            "messages": [{"role": "user", "content": _content(request)}],
        }
        self.parameters.apply(body, request.parameters)
        _apply_response_format(body, request.response_format)
        return body

    def parse_response(self, body: Any, request: APIRequest) -> Answer:
        """The concatenated text blocks, the finish reason (from ``stop_reason``) and the usage.

        An empty ``content`` array is an empty answer: Claude may end its turn without text.

        Raises:
            MalformedResponse: no ``content`` array, or a text block without a string ``text``.
        """
        response = require_object(body, "the response body")
        blocks = require_list(response, "content", "content")
        texts: list[str] = []
        for index, block in enumerate(blocks):
            block = require_object(block, f"content[{index}]")
            if block.get("type") == "text":
                texts.append(require_text(block.get("text"), f"content[{index}].text"))
        text = "".join(texts)
        stop_reason = response.get("stop_reason")
        return Answer(
            value=text,
            usage=_map_usage(response.get("usage"), request.prompt, text),
            finish_reason=_STOP_REASONS.get(stop_reason, stop_reason) if isinstance(stop_reason, str) else None,
        )


def _apply_response_format(body: dict[str, Any], response_format: ResponseFormat | None) -> None:
    if response_format is None or response_format.kind == "text":
        return
    schema = dict(response_format.schema or {})
    if response_format.kind == "json_schema" and response_format.strict:
        output_config = body.setdefault("output_config", {})
        output_config["format"] = {"type": "json_schema", "schema": schema}
    elif response_format.kind == "json_schema":
        body["system"] = (
            f"{JSON_OBJECT_INSTRUCTION} The object must be valid against this JSON Schema: "
            f"{json.dumps(schema, separators=(',', ':'), sort_keys=True)}"
        )
    else:
        body["system"] = JSON_OBJECT_INSTRUCTION


def _map_usage(usage: Any, prompt: str, text: str) -> TokenUsage:
    uncached = token_count(usage, "input_tokens")
    cache_creation = token_count(usage, "cache_creation_input_tokens") or 0
    cache_read = token_count(usage, "cache_read_input_tokens") or 0
    return build_usage(
        prompt=prompt,
        output=text,
        input_tokens=None if uncached is None else uncached + cache_creation + cache_read,
        output_tokens=token_count(usage, "output_tokens"),
        cache_read_input_tokens=cache_read,
        cache_creation_input_tokens=cache_creation,
    )


def _content(request: APIRequest) -> Any:
    """The user message's content: the prompt, or its images (base64 sources) then its text."""
    if not request.images:
        return request.prompt
    images = [
        {"type": "image", "source": {"type": "base64", "media_type": media_type(image), "data": base64_text(image)}}
        for image in request.images
    ]
    return [*images, {"type": "text", "text": request.prompt}]
