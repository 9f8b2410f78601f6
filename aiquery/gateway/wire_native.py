"""Native wire formats: Anthropic Messages and Google Gemini ``generateContent``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiquery.gateway.canned_answers import Ask, Reply
from aiquery.gateway.wire import (
    BadRequest,
    optional_positive_int,
    require_list,
    require_model,
    require_object,
    text_of,
)

__all__ = ["AnthropicFormat", "GeminiFormat"]


ANTHROPIC_VERSIONS = ("2023-01-01", "2023-06-01", "2026-10-21")
"""The API versions Anthropic documents; 2026-10-21 refuses the sampling parameters for every model."""


class AnthropicFormat:
    """``POST .../v1/messages``; like the real API it requires ``anthropic-version`` (a version it knows) and
    ``max_tokens``, and under version 2026-10-21 refuses ``temperature``, ``top_p`` and ``top_k``."""

    image_form: str | None = "anthropic"

    def parse(self, body: Any, headers: Mapping[str, str], path_model: str | None) -> Ask:
        version = headers.get("anthropic-version")
        if not version:
            raise BadRequest("anthropic-version: header is required")
        if version not in ANTHROPIC_VERSIONS:
            raise BadRequest(f"anthropic-version: {version!r} is not a valid version")
        body = require_object(body)
        if version >= "2026-10-21":
            for name in ("temperature", "top_p", "top_k"):
                if name in body:
                    raise BadRequest(f"{name}: Extra inputs are not permitted")
        max_tokens = optional_positive_int(body, "max_tokens")
        if max_tokens is None:
            raise BadRequest("max_tokens: Field required")
        messages = require_list(body, "messages")
        texts = [text_of(body.get("system"))] if body.get("system") else []
        texts.extend(text_of(message.get("content")) for message in messages if isinstance(message, Mapping))
        # Structured outputs arrived as `output_format` (beta) and later moved under `output_config.format`.
        output_config = body.get("output_config")
        form = output_config.get("format") if isinstance(output_config, Mapping) else body.get("output_format")
        json_mode, schema = None, None
        if isinstance(form, Mapping):
            if form.get("type") != "json_schema" or not isinstance(form.get("schema"), Mapping):
                raise BadRequest("output format must be {'type': 'json_schema', 'schema': {...}}")
            json_mode, schema = "schema", form["schema"]
        return Ask(
            model=require_model(body),
            prompt="\n".join(texts),
            max_tokens=max_tokens,
            json_mode=json_mode,
            schema=schema,
        )

    def render(self, ask: Ask, reply: Reply, response_id: str) -> dict[str, Any]:
        return self._body(ask, reply, response_id, [{"type": "text", "text": reply.text}])

    def render_without_answer(self, ask: Ask, reply: Reply, response_id: str) -> dict[str, Any]:
        return self._body(ask, reply, response_id, [])

    def _body(self, ask: Ask, reply: Reply, response_id: str, content: list[dict[str, Any]]) -> dict[str, Any]:
        # Anthropic's input_tokens excludes what was read from or written to the prompt cache.
        uncached = reply.input_tokens - reply.cached_tokens - reply.cache_creation_tokens
        return {
            "id": f"msg_{response_id}",
            "type": "message",
            "role": "assistant",
            "model": ask.model,
            "content": content,
            "stop_reason": "max_tokens" if reply.stopped_by_max_tokens else "end_turn",
            "stop_sequence": None,
            "usage": {
                "input_tokens": uncached,
                "output_tokens": reply.output_tokens,
                "cache_creation_input_tokens": reply.cache_creation_tokens,
                "cache_read_input_tokens": reply.cached_tokens,
                "service_tier": "standard",
            },
        }


def _field(mapping: Mapping[str, Any], camel: str, snake: str) -> Any:
    # Google's JSON mapping accepts both spellings of every field.
    return mapping.get(camel, mapping.get(snake))


class GeminiFormat:
    """``POST .../v1beta/models/{model}:generateContent``; the model comes from the URL."""

    image_form: str | None = "inline_data"

    def parse(self, body: Any, headers: Mapping[str, str], path_model: str | None) -> Ask:
        body = require_object(body)
        contents = require_list(body, "contents")
        texts = [text_of(content) for content in contents]
        system = _field(body, "systemInstruction", "system_instruction")
        if system:
            texts.insert(0, text_of(system))
        config = _field(body, "generationConfig", "generation_config") or {}
        if not isinstance(config, Mapping):
            raise BadRequest("generationConfig must be an object")
        json_mode, schema = None, None
        if _field(config, "responseMimeType", "response_mime_type") == "application/json":
            schema = _field(config, "responseJsonSchema", "response_json_schema") or _field(
                config, "responseSchema", "response_schema"
            )
            json_mode = "schema" if isinstance(schema, Mapping) else "object"
        max_tokens = optional_positive_int(config, "maxOutputTokens", "max_output_tokens")
        return Ask(
            model=path_model or require_model(body),
            prompt="\n".join(texts),
            max_tokens=max_tokens,
            json_mode=json_mode,
            schema=schema if json_mode == "schema" else None,
        )

    def render(self, ask: Ask, reply: Reply, response_id: str) -> dict[str, Any]:
        candidate = {
            "content": {"role": "model", "parts": [{"text": reply.text}]},
            "finishReason": "MAX_TOKENS" if reply.stopped_by_max_tokens else "STOP",
            "index": 0,
        }
        return self._body(ask, reply, response_id, candidate)

    def render_without_answer(self, ask: Ask, reply: Reply, response_id: str) -> dict[str, Any]:
        # What a blocked answer looks like: a candidate with a finish reason and no content.
        return self._body(ask, reply, response_id, {"finishReason": "SAFETY", "index": 0, "safetyRatings": []})

    def _body(self, ask: Ask, reply: Reply, response_id: str, candidate: dict[str, Any]) -> dict[str, Any]:
        # promptTokenCount includes cached content; candidates exclude thoughts; the total counts both.
        return {
            "candidates": [candidate],
            "usageMetadata": {
                "promptTokenCount": reply.input_tokens,
                "candidatesTokenCount": reply.output_tokens - reply.reasoning_tokens,
                "totalTokenCount": reply.input_tokens + reply.output_tokens,
                "cachedContentTokenCount": reply.cached_tokens,
                "thoughtsTokenCount": reply.reasoning_tokens,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": reply.input_tokens}],
            },
            "modelVersion": ask.model,
            "responseId": response_id,
        }
