"""MLflow chat completions (OpenAI's chat shape): ``POST {base_url}/chat/completions``.

Request: ``{"model", "messages": [{"role": "user", "content": prompt}], <parameters>, "response_format"?}``.
Answer: ``choices[0].message.content``. Usage: ``prompt_tokens`` (cached tokens included, per OpenAI),
``completion_tokens`` (reasoning included), ``prompt_tokens_details.cached_tokens``,
``completion_tokens_details.reasoning_tokens``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from aiquery.apis.adapter_defaults import BodyModelAdapter
from aiquery.apis.base import Answer, APIRequest, MalformedResponse
from aiquery.apis.decoding import (
    describe,
    openai_usage,
    openai_usage_keys,
    require_list,
    require_object,
    require_text,
)
from aiquery.apis.images import data_uri
from aiquery.apis.parameter_mappings import ParameterMapping
from aiquery.apis.response_format import JSON_OBJECT_INSTRUCTION, openai_format

__all__ = ["CHAT_PARAMETERS", "ChatAdapter"]


CHAT_PARAMETERS = ParameterMapping(routes={})
"""OpenAI chat completions (and the MLflow gateway route) take every Databricks name as is."""
_USAGE_KEYS = openai_usage_keys("prompt", "completion")


class ChatAdapter(BodyModelAdapter):
    """OpenAI-style chat completions, as served by the Databricks gateway's MLflow route, OpenAI, vLLM …"""

    api: ClassVar[str] = "chat"
    api_type: ClassVar[str] = "mlflow/v1/chat/completions"
    path: ClassVar[str] = "/chat/completions"
    output: ClassVar[Literal["text", "vector"]] = "text"
    gateway_path: ClassVar[str] = "/ai-gateway/mlflow/v1"
    parameters: ClassVar[ParameterMapping] = CHAT_PARAMETERS

    def build_body(self, request: APIRequest) -> dict[str, Any]:
        """The chat completions body: one user message, parameters under their own names, response format."""
        messages: list[dict[str, Any]] = []
        if request.response_format is not None and request.response_format.kind == "json_object":
            messages.append({"role": "system", "content": JSON_OBJECT_INSTRUCTION})
        content: Any = request.prompt
        if request.images:
            content = [
                {"type": "text", "text": request.prompt},
                *({"type": "image_url", "image_url": {"url": data_uri(image)}} for image in request.images),
            ]
        messages.append({"role": "user", "content": content})
        body: dict[str, Any] = {"model": request.model, "messages": messages}
        self.parameters.apply(body, request.parameters)
        rendered = openai_format(request.response_format, nested=True)
        if rendered is not None:
            body["response_format"] = rendered
        return body

    def parse_response(self, body: Any, request: APIRequest) -> Answer:
        """The first choice's text, its finish reason and the usage.

        Raises:
            MalformedResponse: no choices, no message, or content that is neither text nor text parts.
        """
        response = require_object(body, "the response body")
        choices = require_list(response, "choices", "choices", non_empty=True)
        choice = require_object(choices[0], "choices[0]")
        message = require_object(choice.get("message"), "choices[0].message")
        finish = choice.get("finish_reason")
        text = _message_text(message, finish)
        return Answer(
            value=text,
            usage=openai_usage(response.get("usage"), request.prompt, text, keys=_USAGE_KEYS),
            finish_reason=finish if isinstance(finish, str) else None,
        )


def _message_text(message: Mapping[str, Any], finish: Any) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        # Databricks answers for reasoning models with a list of parts: {"type": "reasoning"}, then
        # {"type": "text"}. Reasoning parts alone (the budget ran out while thinking) are an empty answer,
        # as in the other APIs.
        parts = [part for part in content if isinstance(part, Mapping) and part.get("type") == "text"]
        return "".join(require_text(part.get("text"), "choices[0].message.content[].text") for part in parts)
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal:
        raise MalformedResponse(f"the model refused to answer: {refusal}")
    raise MalformedResponse(
        f"expected choices[0].message.content to be a string, found {describe(content)} (finish_reason: {finish})"
    )
