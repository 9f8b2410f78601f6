"""The Responses wire format, on two routes: MLflow responses (``api = "responses"``, the gateway's
OpenResponses-compatible Supervisor API) and OpenAI responses (``api = "openai-responses"``).

Request: ``{"model", "input": [{"role": "user", "content": prompt}], "max_output_tokens"?, "reasoning"?,
"text": {"format": ...}?}``. Answer: the ``output_text`` parts of the ``message`` items of ``output``,
concatenated (``reasoning`` and tool items are skipped; ``output_text`` on the SDK object is only a
convenience property, absent from the wire). Usage: ``input_tokens`` (cached included),
``output_tokens`` (reasoning included) and their ``*_details``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from aiquery.apis.adapter_defaults import BodyModelAdapter
from aiquery.apis.base import Answer, APIRequest, MalformedResponse
from aiquery.apis.decoding import openai_usage, openai_usage_keys, require_list, require_object, require_text
from aiquery.apis.images import data_uri
from aiquery.apis.parameter_mappings import ParameterMapping, ParameterRoute
from aiquery.apis.response_format import JSON_OBJECT_INSTRUCTION, openai_format

__all__ = ["RESPONSES_PARAMETERS", "OpenAIResponsesAdapter", "ResponsesAdapter"]

# `incomplete_details.reason` in OpenAI's vocabulary of finish reasons.
_INCOMPLETE_REASONS: Mapping[str, str] = {"max_output_tokens": "length", "content_filter": "content_filter"}


RESPONSES_PARAMETERS = ParameterMapping(
    routes={
        "max_tokens": ParameterRoute(("max_output_tokens",)),
        "reasoning_effort": ParameterRoute(("reasoning", "effort")),
    },
    unsupported=frozenset({"stop", "n", "top_k", "presence_penalty", "frequency_penalty", "seed"}),
)
"""The Responses API takes ``temperature`` and ``top_p`` as is; it has no stop sequences, ``n``, penalties."""
_USAGE_KEYS = openai_usage_keys("input", "output")


class ResponsesAdapter(BodyModelAdapter):
    """The MLflow responses route of the Databricks gateway (``{base_url}/responses``)."""

    api: ClassVar[str] = "responses"
    api_type: ClassVar[str] = "mlflow/v1/responses"
    path: ClassVar[str] = "/responses"
    output: ClassVar[Literal["text", "vector"]] = "text"
    gateway_path: ClassVar[str] = "/ai-gateway/mlflow/v1"
    parameters: ClassVar[ParameterMapping] = RESPONSES_PARAMETERS

    def build_body(self, request: APIRequest) -> dict[str, Any]:
        """The Responses body: one user message, mapped parameters, ``text.format`` for structured output."""
        # A message list rather than a bare string: both routes document it, and OpenResponses servers that
        # implement only the item form accept it too.
        body: dict[str, Any] = {
            "model": request.model,
            "input": [{"role": "user", "content": _content(request)}],
        }
        fmt = request.response_format
        if fmt is not None and fmt.kind == "json_object":
            body["instructions"] = JSON_OBJECT_INSTRUCTION
        self.parameters.apply(body, request.parameters)
        rendered = openai_format(fmt, nested=False)
        if rendered is not None:
            body["text"] = {"format": rendered}
        return body

    def parse_response(self, body: Any, request: APIRequest) -> Answer:
        """The concatenated output text, the finish reason (from ``status``) and the usage.

        Raises:
            MalformedResponse: no ``output`` array, a completed response without a message item, a refusal,
                or parts of the wrong type.
        """
        response = require_object(body, "the response body")
        items = require_list(response, "output", "output")
        status = response.get("status")
        messages = [item for item in items if isinstance(item, Mapping) and item.get("type") == "message"]
        if not messages and status != "incomplete":
            kinds = ", ".join(sorted({str(item.get("type")) for item in items if isinstance(item, Mapping)}))
            raise MalformedResponse(f"output holds no message item (found: {kinds or 'nothing'})")
        text = "".join(_message_text(message, index) for index, message in enumerate(messages))
        return Answer(
            value=text,
            usage=openai_usage(response.get("usage"), request.prompt, text, keys=_USAGE_KEYS),
            finish_reason=_finish_reason(response),
        )


class OpenAIResponsesAdapter(ResponsesAdapter):
    """OpenAI's native Responses API, on the gateway's ``openai/v1`` route or at OpenAI itself."""

    api: ClassVar[str] = "openai-responses"
    api_type: ClassVar[str] = "openai/v1/responses"
    gateway_path: ClassVar[str] = "/ai-gateway/openai/v1"


def _message_text(message: Mapping[str, Any], index: int) -> str:
    where = f"output message {index}"
    parts = require_list(message, "content", f"{where}.content")
    texts: list[str] = []
    for part in parts:
        part = require_object(part, f"{where}.content[]")
        if part.get("type") == "output_text":
            texts.append(require_text(part.get("text"), f"{where}.content[].text"))
        elif part.get("type") == "refusal":
            raise MalformedResponse(f"the model refused to answer: {part.get('refusal')}")
    return "".join(texts)


def _finish_reason(response: Mapping[str, Any]) -> str | None:
    status = response.get("status")
    if status == "completed":
        return "stop"
    details = response.get("incomplete_details")
    reason = details.get("reason") if isinstance(details, Mapping) else None
    if isinstance(reason, str):
        return _INCOMPLETE_REASONS.get(reason, reason)
    return status if isinstance(status, str) else None


def _content(request: APIRequest) -> Any:
    """The user message's content: the prompt, or its text and images as input parts."""
    if not request.images:
        return request.prompt
    images = [{"type": "input_image", "image_url": data_uri(image), "detail": "auto"} for image in request.images]
    return [{"type": "input_text", "text": request.prompt}, *images]
