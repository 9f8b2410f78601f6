"""MLflow embeddings (OpenAI's embeddings shape): ``POST {base_url}/embeddings``.

Request: ``{"model", "input": prompt}``. Answer: ``data[0].embedding`` as a list of floats. Usage:
``prompt_tokens``; embeddings produce no output tokens.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

from aiquery.apis.adapter_defaults import BodyModelAdapter
from aiquery.apis.base import Answer, APIRequest, MalformedResponse, TokenUsage
from aiquery.apis.decoding import build_usage, describe, require_list, require_object, token_count
from aiquery.apis.parameter_mappings import ParameterMapping
from aiquery.apis.response_format import reject_response_format

__all__ = ["EMBEDDINGS_PARAMETERS", "FLOAT32_MAX", "EmbeddingsAdapter"]

FLOAT32_MAX = 3.4028234663852886e38
"""The largest SQL FLOAT: an embedding value past it is out of range."""


EMBEDDINGS_PARAMETERS = ParameterMapping(
    routes={},
    unsupported=frozenset(
        {
            "max_tokens",
            "temperature",
            "top_p",
            "top_k",
            "stop",
            "n",
            "presence_penalty",
            "frequency_penalty",
            "seed",
            "reasoning_effort",
        }
    ),
)
"""Embeddings have no generation parameters; others (``dimensions``, ``encoding_format``) pass through."""


class EmbeddingsAdapter(BodyModelAdapter):
    """OpenAI-style embeddings; answers are vectors (``ARRAY<FLOAT>`` in SQL)."""

    api: ClassVar[str] = "embeddings"
    api_type: ClassVar[str] = "mlflow/v1/embeddings"
    path: ClassVar[str] = "/embeddings"
    output: ClassVar[Literal["text", "vector"]] = "vector"
    gateway_path: ClassVar[str] = "/ai-gateway/mlflow/v1"
    parameters: ClassVar[ParameterMapping] = EMBEDDINGS_PARAMETERS

    def build_body(self, request: APIRequest) -> dict[str, Any]:
        """``{"model", "input"}`` plus any pass-through parameters (``dimensions`` …).

        Raises:
            ArgumentError: the request carries a response format, which only chat models take.
        """
        if request.response_format is not None:
            reject_response_format(self.api)
        body: dict[str, Any] = {"model": request.model, "input": request.prompt}
        self.parameters.apply(body, request.parameters)
        return body

    def parse_response(self, body: Any, request: APIRequest) -> Answer:
        """The first embedding and the usage.

        Raises:
            MalformedResponse: no data, or an embedding that is not a non-empty array of numbers (a base64
                string, for instance, which only comes back when ``encoding_format`` asked for it).
        """
        response = require_object(body, "the response body")
        data = require_list(response, "data", "data", non_empty=True)
        item = require_object(data[0], "data[0]")
        vector = item.get("embedding")
        if not isinstance(vector, list) or not vector:
            raise MalformedResponse(f"expected data[0].embedding to be an array of numbers, found {describe(vector)}")
        return Answer(value=_finite_floats(vector), usage=_map_usage(response.get("usage"), request.prompt))


def _finite_floats(vector: list[Any]) -> list[float]:
    # Python's decoder reads 1e400 as inf and accepts NaN and Infinity; an integer can be any length. None of
    # them is a usable FLOAT, so each is the row's error rather than a vector of infinities or an OverflowError.
    # The bound is SQL FLOAT's (32 bits, the default returnType), where a larger value would arrive as inf; no
    # embedding model's values come anywhere near it.
    values: list[float] = []
    for index, number in enumerate(vector):
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise MalformedResponse(f"data[0].embedding holds {describe(number)}, not a number")
        try:
            value = float(number)
        except OverflowError:
            value = math.inf
        if not -FLOAT32_MAX <= value <= FLOAT32_MAX:
            kind = "not a number" if math.isnan(value) else "out of float range"
            raise MalformedResponse(f"embedding value {kind} at data[0].embedding[{index}]")
        values.append(value)
    return values


def _map_usage(usage: Any, prompt: str) -> TokenUsage:
    return build_usage(
        prompt=prompt,
        output="",
        input_tokens=token_count(usage, "prompt_tokens"),
        output_tokens=0,
    )
