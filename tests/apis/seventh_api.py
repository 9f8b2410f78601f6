"""A wire format that exists only in the tests: the "seventh API" of docs/adding_an_api.md, written the way the
checklist says (one module, facts on the adapter class), so that a test can prove the checklist is enough.

Request: ``POST {base_url}/v1/generate`` with ``{"model", "prompt", "options": {"length"}?, <parameters>}``, the
key in an ``x-seventh-key`` header. Answer: ``{"text", "stop", "counts": {"in", "out"}}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from aiquery.apis.adapter_defaults import BodyModelAdapter
from aiquery.apis.base import Answer, APIRequest
from aiquery.apis.decoding import build_usage, require_object, require_text, token_count
from aiquery.apis.parameter_mappings import ParameterMapping, ParameterRoute

__all__ = ["SEVENTH_PARAMETERS", "SeventhAdapter"]

SEVENTH_PARAMETERS = ParameterMapping(
    routes={"max_tokens": ParameterRoute(("options", "length"))},
    unsupported=frozenset({"seed"}),
)
"""``max_tokens`` becomes ``options.length``; the API has no ``seed``; the other names pass through."""

_STOPS: Mapping[str, str] = {"done": "stop", "cut": "length"}


class SeventhAdapter(BodyModelAdapter):
    """The seventh API: its facts as class attributes, its body and answer in two methods."""

    api: ClassVar[str] = "seventh"
    api_type: ClassVar[str] = "seventh/v1/generate"
    path: ClassVar[str] = "/v1/generate"
    output: ClassVar[Literal["text", "vector"]] = "text"
    gateway_path: ClassVar[str] = "/ai-gateway/seventh"
    auth: ClassVar[str] = "x-seventh-key"
    parameters: ClassVar[ParameterMapping] = SEVENTH_PARAMETERS

    def build_body(self, request: APIRequest) -> dict[str, Any]:
        """``{"model", "prompt"}`` and the mapped parameters."""
        body: dict[str, Any] = {"model": request.model, "prompt": request.prompt}
        self.parameters.apply(body, request.parameters)
        return body

    def parse_response(self, body: Any, request: APIRequest) -> Answer:
        """``text``, ``stop`` in OpenAI's vocabulary, and ``counts``."""
        response = require_object(body, "the response body")
        text = require_text(response.get("text"), "text")
        stop = response.get("stop")
        usage = build_usage(
            prompt=request.prompt,
            output=text,
            input_tokens=token_count(response.get("counts"), "in"),
            output_tokens=token_count(response.get("counts"), "out"),
        )
        return Answer(value=text, usage=usage, finish_reason=_STOPS.get(stop, stop) if isinstance(stop, str) else None)
