"""Google Gemini: ``POST {base_url}/v1beta/models/{model}:generateContent``.

Request: ``{"contents": [{"role": "user", "parts": [{"text": prompt}]}], "generationConfig"?}``; the model is
in the URL, never the body. Answer: the text parts of ``candidates[0].content``, concatenated (``thought``
parts skipped). Usage (``usageMetadata``): ``promptTokenCount`` already includes
``cachedContentTokenCount``; output is ``candidatesTokenCount + thoughtsTokenCount`` (thinking is billed as
output).

Structured output: ``generationConfig.responseMimeType = "application/json"`` and, for a schema,
``responseJsonSchema``. That field takes standard JSON Schema (``additionalProperties``, ``required``,
lower-case types), so the schema built for OpenAI is sent unchanged; the older ``responseSchema`` takes only
Google's OpenAPI subset and rejects ``additionalProperties`` with a 400.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal
from urllib.parse import quote

from aiquery.apis.adapter_defaults import AdapterDefaults
from aiquery.apis.base import Answer, APIRequest, MalformedResponse, ResponseFormat, TokenUsage
from aiquery.apis.decoding import build_usage, require_list, require_object, require_text, token_count
from aiquery.apis.images import base64_text, media_type
from aiquery.apis.parameter_mappings import ParameterMapping, ParameterRoute, as_list

__all__ = ["GEMINI_PARAMETERS", "GeminiAdapter"]

# finishReason in OpenAI's vocabulary of finish reasons; anything else passes through lower-cased.
_FINISH_REASONS: Mapping[str, str] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}


_GENERATION = "generationConfig"
GEMINI_PARAMETERS = ParameterMapping(
    routes={
        "max_tokens": ParameterRoute((_GENERATION, "maxOutputTokens")),
        "temperature": ParameterRoute((_GENERATION, "temperature")),
        "top_p": ParameterRoute((_GENERATION, "topP")),
        "top_k": ParameterRoute((_GENERATION, "topK")),
        "stop": ParameterRoute((_GENERATION, "stopSequences"), convert=as_list),
        "n": ParameterRoute((_GENERATION, "candidateCount")),
        "presence_penalty": ParameterRoute((_GENERATION, "presencePenalty")),
        "frequency_penalty": ParameterRoute((_GENERATION, "frequencyPenalty")),
        "seed": ParameterRoute((_GENERATION, "seed")),
        # Gemini 3's thinking control; Gemini 2.5 models take thinkingBudget instead and reject this.
        "reasoning_effort": ParameterRoute((_GENERATION, "thinkingConfig", "thinkingLevel")),
    },
    passthrough=(_GENERATION,),
)
"""Gemini generateContent keeps every generation knob in ``generationConfig``, in camelCase."""


class GeminiAdapter(AdapterDefaults):
    """Gemini's generateContent, on the gateway's ``gemini`` route or at Google itself."""

    api: ClassVar[str] = "gemini"
    api_type: ClassVar[str] = "gemini/v1beta/generateContent"
    output: ClassVar[Literal["text", "vector"]] = "text"
    gateway_path: ClassVar[str] = "/ai-gateway/gemini"
    auth: ClassVar[str] = "x-goog-api-key"
    parameters: ClassVar[ParameterMapping] = GEMINI_PARAMETERS

    def url(self, base_url: str, model: str) -> str:
        """``{base_url}/v1beta/models/{model}:generateContent``.

        A ``models/`` prefix (the resource name Google's own listings use) is dropped so it is not doubled.
        """
        name = model.removeprefix("models/")
        return f"{base_url.rstrip('/')}/v1beta/models/{quote(name, safe='-_.~')}:generateContent"

    def build_body(self, request: APIRequest) -> dict[str, Any]:
        """The generateContent body: one user turn, parameters in ``generationConfig``, structured output."""
        parts: list[dict[str, Any]] = [{"text": request.prompt}]
        parts.extend(
            {"inlineData": {"mimeType": media_type(image), "data": base64_text(image)}} for image in request.images
        )
        body: dict[str, Any] = {"contents": [{"role": "user", "parts": parts}]}
        self.parameters.apply(body, request.parameters)
        rendered = render_response_format(request.response_format)
        if rendered:
            body.setdefault("generationConfig", {}).update(rendered)
        return body

    def parse_response(self, body: Any, request: APIRequest) -> Answer:
        """The first candidate's text, its finish reason and the usage.

        A candidate whose content has no parts (the token budget went to thinking) is an empty answer.

        Raises:
            MalformedResponse: no candidates (the prompt was blocked, for instance), a candidate without
                content, or parts of the wrong type.
        """
        response = require_object(body, "the response body")
        if not response.get("candidates"):
            feedback = response.get("promptFeedback")
            reason = feedback.get("blockReason") if isinstance(feedback, Mapping) else None
            if isinstance(reason, str):
                raise MalformedResponse(f"the prompt was blocked: {reason}")
        candidates = require_list(response, "candidates", "candidates", non_empty=True)
        candidate = require_object(candidates[0], "candidates[0]")
        finish = candidate.get("finishReason")
        if "content" not in candidate:
            raise MalformedResponse(f"candidates[0] has no content (finishReason: {finish})")
        content = require_object(candidate["content"], "candidates[0].content")
        parts = content.get("parts", [])
        if not isinstance(parts, list):
            raise MalformedResponse("expected candidates[0].content.parts to be an array")
        texts: list[str] = []
        for index, part in enumerate(parts):
            part = require_object(part, f"candidates[0].content.parts[{index}]")
            if "text" in part and not part.get("thought"):
                texts.append(require_text(part["text"], f"candidates[0].content.parts[{index}].text"))
        text = "".join(texts)
        return Answer(
            value=text,
            usage=_map_usage(response.get("usageMetadata"), request.prompt, text),
            finish_reason=_FINISH_REASONS.get(finish, finish.lower()) if isinstance(finish, str) else None,
        )


def render_response_format(response_format: ResponseFormat | None) -> dict[str, Any]:
    """The ``generationConfig`` entries for structured output (empty for plain text)."""
    if response_format is None or response_format.kind == "text":
        return {}
    rendered: dict[str, Any] = {"responseMimeType": "application/json"}
    if response_format.kind == "json_schema":
        rendered["responseJsonSchema"] = dict(response_format.schema or {})
    return rendered


def _map_usage(metadata: Any, prompt: str, text: str) -> TokenUsage:
    prompt_tokens = token_count(metadata, "promptTokenCount")
    tool_prompt = token_count(metadata, "toolUsePromptTokenCount") or 0
    candidates = token_count(metadata, "candidatesTokenCount")
    thoughts = token_count(metadata, "thoughtsTokenCount") or 0
    # candidatesTokenCount is left out when the answer is empty; a zero is then the truth, not an unknown.
    if candidates is None and prompt_tokens is not None:
        candidates = 0
    return build_usage(
        prompt=prompt,
        output=text,
        input_tokens=None if prompt_tokens is None else prompt_tokens + tool_prompt,
        output_tokens=None if candidates is None else candidates + thoughts,
        cache_read_input_tokens=token_count(metadata, "cachedContentTokenCount"),
        output_reasoning_tokens=thoughts,
    )
