"""Where each API wants each model parameter, as data.

``modelParameters`` arrive under Databricks' names, already validated. Each API's :class:`ParameterMapping`
routes a name to a path in that API's body (``max_tokens`` becomes Gemini's
``generationConfig.maxOutputTokens``), lists the known parameters the API does not have, and says where the
other names go: under their own names, at the top of the body (into ``generationConfig`` for Gemini).
Each adapter module defines its API's mapping and its adapter holds it (``Adapter.parameters``):
``aiquery.apis.parameters.check_supported`` reads it at analysis time, the adapter applies it to each body.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from aiquery.errors import ArgumentError

__all__ = [
    "ParameterMapping",
    "ParameterRoute",
    "as_list",
    "unsupported_parameter",
]


def as_list(value: Any) -> Any:
    """A lone string as a one-item list: some APIs take stop sequences only as arrays, Databricks allows one string."""
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
