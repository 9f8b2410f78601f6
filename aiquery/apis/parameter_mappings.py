"""Where each API wants each model parameter, as data.

``modelParameters`` arrive under Databricks' names, already validated. Each API's :class:`ParameterMapping`
routes a name to a path in that API's body (``max_tokens`` becomes Gemini's
``generationConfig.maxOutputTokens``), lists the known parameters the API does not have, and says where the
other names go: under their own names, at the top of the body (into ``generationConfig`` for Gemini).
Each adapter holds its API's mapping (``Adapter.parameters``): ``aiquery.apis.parameters.check_supported`` reads
it at analysis time, the adapter applies it when building a body.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from aiquery.errors import ArgumentError

__all__ = [
    "ANTHROPIC_PARAMETERS",
    "CHAT_PARAMETERS",
    "EMBEDDINGS_PARAMETERS",
    "GEMINI_PARAMETERS",
    "RESPONSES_PARAMETERS",
    "ParameterMapping",
    "ParameterRoute",
    "unsupported_parameter",
]


def _as_list(value: Any) -> Any:
    # Anthropic and Gemini take stop sequences only as arrays; Databricks also allows one string.
    return [value] if isinstance(value, str) else value


@dataclass(frozen=True, slots=True)
class ParameterRoute:
    """Where one Databricks-named parameter goes in an API's body."""

    path: tuple[str, ...]
    """Keys from the body's top level down to the value, e.g. ``("generationConfig", "maxOutputTokens")``."""
    convert: Callable[[Any], Any] | None = None
    """Turns the validated value into the API's form (a lone stop string into a list)."""
    maximum: float | None = None
    """A bound tighter than Databricks' own, where the API has one (Anthropic's temperature stops at 1)."""


@dataclass(frozen=True, slots=True)
class ParameterMapping:
    """One API's spelling of the model parameters."""

    routes: Mapping[str, ParameterRoute]
    """Parameters renamed or moved; the others keep their name at ``passthrough``."""
    unsupported: frozenset[str] = frozenset()
    """Known Databricks parameters the API does not have."""
    passthrough: tuple[str, ...] = ()
    """Where parameters without a route go, under their own names (``()`` for the body's top level)."""

    def apply(self, body: MutableMapping[str, Any], params: Mapping[str, Any]) -> None:
        """Write validated parameters into ``body`` under this API's names, merging nested objects.

        Raises:
            ArgumentError: a parameter the API does not have (``check_supported`` catches it earlier).
        """
        for name, value in params.items():
            if name in self.unsupported:
                raise unsupported_parameter(name)
            route = self.routes.get(name)
            if route is None:
                _set_path(body, (*self.passthrough, name), value)
            else:
                _set_path(body, route.path, route.convert(value) if route.convert else value)


def _set_path(body: MutableMapping[str, Any], path: tuple[str, ...], value: Any) -> None:
    target = body
    for key in path[:-1]:
        child = target.get(key)
        if not isinstance(child, MutableMapping):
            child = {}
            target[key] = child
        target = child
    last = path[-1]
    existing = target.get(last)
    if isinstance(existing, MutableMapping) and isinstance(value, Mapping):
        for key, item in value.items():
            _set_path(existing, (key,), item)
    else:
        # A copy, so that merging a later parameter into it never edits the caller's (shared) parameters.
        target[last] = copy.deepcopy(value) if isinstance(value, (Mapping, list)) else value


def unsupported_parameter(name: str, api: str | None = None) -> ArgumentError:
    """Databricks' ``UNSUPPORTED_MODEL_PARAMETER`` error for one parameter."""
    where = f' The "{api}" API has no such parameter.' if api else ""
    return ArgumentError(
        "AI_FUNCTION_INVALID_MODEL_PARAMETERS.UNSUPPORTED_MODEL_PARAMETER",
        f'The "{name}" parameter is not supported for the serving endpoint.{where}',
        sqlstate="22023",
    )


CHAT_PARAMETERS = ParameterMapping(routes={})
"""OpenAI chat completions (and the MLflow gateway route) take every Databricks name as is."""

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

RESPONSES_PARAMETERS = ParameterMapping(
    routes={
        "max_tokens": ParameterRoute(("max_output_tokens",)),
        "reasoning_effort": ParameterRoute(("reasoning", "effort")),
    },
    unsupported=frozenset({"stop", "n", "top_k", "presence_penalty", "frequency_penalty", "seed"}),
)
"""The Responses API takes ``temperature`` and ``top_p`` as is; it has no stop sequences, ``n``, penalties."""

ANTHROPIC_PARAMETERS = ParameterMapping(
    routes={
        "temperature": ParameterRoute(("temperature",), maximum=1.0),
        "stop": ParameterRoute(("stop_sequences",), convert=_as_list),
        # Anthropic's effort control (Claude Opus 4.5 and later); older models reject it with a 400.
        "reasoning_effort": ParameterRoute(("output_config", "effort")),
    },
    unsupported=frozenset({"n", "presence_penalty", "frequency_penalty", "seed"}),
)
"""Anthropic Messages takes ``max_tokens``, ``top_p`` and ``top_k`` as is."""

_GENERATION = "generationConfig"
GEMINI_PARAMETERS = ParameterMapping(
    routes={
        "max_tokens": ParameterRoute((_GENERATION, "maxOutputTokens")),
        "temperature": ParameterRoute((_GENERATION, "temperature")),
        "top_p": ParameterRoute((_GENERATION, "topP")),
        "top_k": ParameterRoute((_GENERATION, "topK")),
        "stop": ParameterRoute((_GENERATION, "stopSequences"), convert=_as_list),
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
