"""OpenAI-style wire formats: Chat Completions, Embeddings and Responses (MLflow's and OpenAI's routes)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiquery.gateway.canned_answers import Ask, Reply, encode_embedding
from aiquery.gateway.wire import (
    BadRequest,
    now,
    optional_positive_int,
    require_list,
    require_model,
    require_object,
    text_of,
)

__all__ = ["ChatFormat", "EmbeddingsFormat", "ResponsesFormat"]


def _json_request(kind: Any, schema: Any, where: str) -> tuple[str | None, Mapping[str, Any] | None]:
    if kind in (None, "text"):
        return None, None
    if kind == "json_object":
        return "object", None
    if kind == "json_schema":
        if not isinstance(schema, Mapping):
            raise BadRequest(f"'{where}' of type json_schema needs a 'schema' object")
        return "schema", schema
    raise BadRequest(f"'{where}.type' must be text, json_object or json_schema, got {kind!r}")


class ChatFormat:
    """``POST .../chat/completions``."""

    image_form: str | None = "image_url"

    def parse(self, body: Any, headers: Mapping[str, str], path_model: str | None) -> Ask:
        body = require_object(body)
        messages = require_list(body, "messages")
        prompt = "\n".join(text_of(message.get("content")) for message in messages if isinstance(message, Mapping))
        response_format = body.get("response_format")
        json_mode, schema = None, None
        if isinstance(response_format, Mapping):
            inner = response_format.get("json_schema")
            schema_value = inner.get("schema") if isinstance(inner, Mapping) else None
            json_mode, schema = _json_request(response_format.get("type"), schema_value, "response_format")
        return Ask(
            model=require_model(body),
            prompt=prompt,
            max_tokens=optional_positive_int(body, "max_completion_tokens", "max_tokens"),
            json_mode=json_mode,
            schema=schema,
        )

    def render(self, ask: Ask, reply: Reply, response_id: str) -> dict[str, Any]:
        message = {"role": "assistant", "content": reply.text, "refusal": None}
        return self._body(ask, reply, response_id, message)

    def render_without_answer(self, ask: Ask, reply: Reply, response_id: str) -> dict[str, Any]:
        return self._body(ask, reply, response_id, {"role": "assistant", "refusal": None})

    def _body(self, ask: Ask, reply: Reply, response_id: str, message: dict[str, Any]) -> dict[str, Any]:
        finish_reason = "length" if reply.stopped_by_max_tokens else "stop"
        return {
            "id": f"chatcmpl-{response_id}",
            "object": "chat.completion",
            "created": now(),
            "model": ask.model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
            "usage": {
                "prompt_tokens": reply.input_tokens,
                "completion_tokens": reply.output_tokens,
                "total_tokens": reply.input_tokens + reply.output_tokens,
                "prompt_tokens_details": {"cached_tokens": reply.cached_tokens, "audio_tokens": 0},
                "completion_tokens_details": {
                    "reasoning_tokens": reply.reasoning_tokens,
                    "audio_tokens": 0,
                    "accepted_prediction_tokens": 0,
                    "rejected_prediction_tokens": 0,
                },
            },
        }


class EmbeddingsFormat:
    """``POST .../embeddings``: ``input`` is a string or a list of strings, one ``data`` item each."""

    image_form: str | None = None

    def parse(self, body: Any, headers: Mapping[str, str], path_model: str | None) -> Ask:
        body = require_object(body)
        raw = body.get("input")
        inputs = [raw] if isinstance(raw, str) else raw
        if not isinstance(inputs, list) or not inputs or not all(isinstance(item, str) for item in inputs):
            raise BadRequest("'input' must be a string or a non-empty array of strings")
        encoding_format = body.get("encoding_format", "float")
        if encoding_format not in ("float", "base64"):
            raise BadRequest(f"'encoding_format' must be float or base64, got {encoding_format!r}")
        return Ask(
            model=require_model(body),
            prompt="\n".join(inputs),
            inputs=inputs,
            dimensions=optional_positive_int(body, "dimensions"),
            encoding_format=encoding_format,
        )

    def render(self, ask: Ask, reply: Reply, response_id: str) -> dict[str, Any]:
        data = [
            {
                "object": "embedding",
                "index": index,
                "embedding": encode_embedding(vector, ask.encoding_format),
            }
            for index, vector in enumerate(reply.vectors or [])
        ]
        return self._body(ask, reply, data)

    def render_without_answer(self, ask: Ask, reply: Reply, response_id: str) -> dict[str, Any]:
        return self._body(ask, reply, [])

    def _body(self, ask: Ask, reply: Reply, data: list[dict[str, Any]]) -> dict[str, Any]:
        usage = {"prompt_tokens": reply.input_tokens, "total_tokens": reply.input_tokens}
        return {"object": "list", "data": data, "model": ask.model, "usage": usage}


class ResponsesFormat:
    """``POST .../responses`` (OpenAI Responses and the Open Responses spec MLflow's route follows)."""

    image_form: str | None = "input_image"

    def parse(self, body: Any, headers: Mapping[str, str], path_model: str | None) -> Ask:
        body = require_object(body)
        raw = body.get("input")
        if isinstance(raw, str) and raw:
            texts = [raw]
        elif isinstance(raw, list) and raw:
            texts = [text_of(item) for item in raw]
        else:
            raise BadRequest("'input' is required and must be a string or a non-empty array of items")
        instructions = body.get("instructions")
        if isinstance(instructions, str):
            texts.insert(0, instructions)
        json_mode, schema = None, None
        text_options = body.get("text")
        if isinstance(text_options, Mapping) and isinstance(text_options.get("format"), Mapping):
            form = text_options["format"]
            json_mode, schema = _json_request(form.get("type"), form.get("schema"), "text.format")
        return Ask(
            model=require_model(body),
            prompt="\n".join(texts),
            max_tokens=optional_positive_int(body, "max_output_tokens"),
            json_mode=json_mode,
            schema=schema,
        )

    def render(self, ask: Ask, reply: Reply, response_id: str) -> dict[str, Any]:
        message = {
            "type": "message",
            "id": f"msg_{response_id}",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": reply.text, "annotations": []}],
        }
        return self._body(ask, reply, response_id, [message])

    def render_without_answer(self, ask: Ask, reply: Reply, response_id: str) -> dict[str, Any]:
        return self._body(ask, reply, response_id, [])

    def _body(self, ask: Ask, reply: Reply, response_id: str, output: list[dict[str, Any]]) -> dict[str, Any]:
        if reply.reasoning_tokens:
            # Reasoning models put a reasoning item before the message; clients must look past it.
            output = [{"type": "reasoning", "id": f"rs_{response_id}", "summary": []}, *output]
        stopped = reply.stopped_by_max_tokens
        return {
            "id": f"resp_{response_id}",
            "object": "response",
            "created_at": now(),
            "status": "incomplete" if stopped else "completed",
            "incomplete_details": {"reason": "max_output_tokens"} if stopped else None,
            "model": ask.model,
            "output": output,
            "usage": {
                "input_tokens": reply.input_tokens,
                "input_tokens_details": {"cached_tokens": reply.cached_tokens},
                "output_tokens": reply.output_tokens,
                "output_tokens_details": {"reasoning_tokens": reply.reasoning_tokens},
                "total_tokens": reply.input_tokens + reply.output_tokens,
            },
        }
