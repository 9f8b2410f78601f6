"""Model parameters: Databricks' validation rules for ``modelParameters``.

``modelParameters`` use Databricks' names (``max_tokens``, ``temperature``, ``stop`` …) whatever the
endpoint's API. :func:`validate_model_parameters` checks them as Databricks does, raising ``ArgumentError``
with the ``AI_FUNCTION_INVALID_MODEL_PARAMETERS.*`` error classes (SQLSTATE 22023). Where each API wants each
parameter is data each adapter holds (:mod:`aiquery.apis.parameter_mappings`); :func:`check_supported` rejects
the known parameters an API does not have (``UNSUPPORTED_MODEL_PARAMETER``), and :func:`prepare_model_parameters`
does both checks, as the Spark layer needs at analysis time.

Rules:

- Known parameters (:data:`PARAMETER_SPECS`) are type- and range-checked. Integers are accepted where numbers
  are expected; an integral float or decimal (``256.0`` from a SQL decimal) is accepted where an integer is
  expected and converted.
- Reserved names (:data:`RESERVED_PARAMETERS`) would overwrite what aiquery builds itself (the prompt, the
  model, the response format, streaming) and are rejected.
- Unknown names pass through unchanged, so a gateway's extra knobs (``dimensions``, ``service_tier``,
  ``store`` …) stay usable; the API is the judge of those.
- NULL values (a SQL ``NULL`` inside ``named_struct``) mean "not set" and are dropped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from numbers import Integral, Real
from typing import Any, Literal

from aiquery.apis.parameter_mappings import unsupported_parameter
from aiquery.apis.registry import get_adapter
from aiquery.errors import ArgumentError

__all__ = [
    "ERROR_CLASS",
    "PARAMETER_SPECS",
    "REASONING_EFFORTS",
    "RESERVED_PARAMETERS",
    "SQLSTATE",
    "ParameterSpec",
    "check_supported",
    "prepare_model_parameters",
    "validate_model_parameters",
]

ERROR_CLASS = "AI_FUNCTION_INVALID_MODEL_PARAMETERS"
SQLSTATE = "22023"

_IN_REQUEST = 'should be specified in the "request" argument of AI_QUERY'
_IN_RESPONSE_FORMAT = 'should be specified in the "responseFormat" argument of AI_QUERY'
_BY_AIQUERY = "is set by aiquery itself (the endpoint's configuration names the model; answers are not streamed)"

RESERVED_PARAMETERS: Mapping[str, str] = {
    # the prompt, in every API's spelling: it comes only from `request`
    "messages": _IN_REQUEST,
    "prompt": _IN_REQUEST,
    "input": _IN_REQUEST,
    "contents": _IN_REQUEST,
    "system": _IN_REQUEST,
    "instructions": _IN_REQUEST,
    "systemInstruction": _IN_REQUEST,
    # structured output, in every API's spelling: it comes only from `responseFormat`
    "response_format": _IN_RESPONSE_FORMAT,
    "text": _IN_RESPONSE_FORMAT,
    "output_format": _IN_RESPONSE_FORMAT,
    "responseMimeType": _IN_RESPONSE_FORMAT,
    "responseSchema": _IN_RESPONSE_FORMAT,
    "responseJsonSchema": _IN_RESPONSE_FORMAT,
    # transport matters the engine owns
    "model": _BY_AIQUERY,
    "stream": _BY_AIQUERY,
    "stream_options": _BY_AIQUERY,
}
"""Names rejected with ``FOUND_RESERVED_PARAMETER_NAME``, each with where the value belongs instead."""

REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
"""Values accepted for ``reasoning_effort`` (the union of what OpenAI, Anthropic and Gemini models take)."""


@dataclass(frozen=True, slots=True)
class ParameterSpec:
    """How one known parameter is checked."""

    kind: Literal["integer", "number", "stop", "choice"]
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()

    def constraint(self) -> str:
        """The range in Databricks' wording ("must be <constraint>")."""
        if self.minimum is not None and self.maximum is not None:
            return f"between {self.minimum} and {self.maximum}"
        if self.minimum is not None:
            return f"greater than or equal to {self.minimum}"
        return "a finite number"


PARAMETER_SPECS: Mapping[str, ParameterSpec] = {
    "max_tokens": ParameterSpec("integer", minimum=1),
    "temperature": ParameterSpec("number", minimum=0.0, maximum=2.0),
    "top_p": ParameterSpec("number", minimum=0.0, maximum=1.0),
    "top_k": ParameterSpec("integer", minimum=1),
    "n": ParameterSpec("integer", minimum=1),
    "presence_penalty": ParameterSpec("number", minimum=-2.0, maximum=2.0),
    "frequency_penalty": ParameterSpec("number", minimum=-2.0, maximum=2.0),
    "seed": ParameterSpec("integer"),
    "stop": ParameterSpec("stop"),
    "reasoning_effort": ParameterSpec("choice", choices=REASONING_EFFORTS),
}
"""The parameters Databricks documents for ai_query, with their types and ranges."""


class _Invalid(Exception):
    """One parameter's failure, before the message gets its endpoint prefix."""

    def __init__(self, subclass: str, detail: str) -> None:
        super().__init__(detail)
        self.subclass = subclass
        self.detail = detail


def validate_model_parameters(params: Mapping[str, Any], *, endpoint: str | None = None) -> dict[str, Any]:
    """Check ``modelParameters`` the way Databricks does and return them normalised.

    Args:
        params: parameter name to value, as given in ``modelParameters``.
        endpoint: the endpoint name, for the error message.

    Returns:
        A new dict: NULLs dropped, integers as ``int``, numbers as ``float``, ``stop`` as a string or a
        list of strings, ``reasoning_effort`` lower-cased; unknown names unchanged.

    Raises:
        ArgumentError: ``AI_FUNCTION_INVALID_MODEL_PARAMETERS.FOUND_RESERVED_PARAMETER_NAME``,
            ``.INVALID_PARAMETER_DATA_TYPE`` or ``.INVALID_NUMERIC_PARAMETER``.
    """
    try:
        return {name: _check(name, value) for name, value in params.items() if value is not None}
    except _Invalid as invalid:
        prefix = ""
        if endpoint is not None:
            shown = json.dumps(dict(params), default=_plain, sort_keys=True)
            prefix = (
                f"The provided model parameters ({shown}) are invalid in the AI_QUERY function "
                f'for serving endpoint "{endpoint}". '
            )
        raise ArgumentError(f"{ERROR_CLASS}.{invalid.subclass}", prefix + invalid.detail, sqlstate=SQLSTATE) from None


def _check(name: str, value: Any) -> Any:
    if name in RESERVED_PARAMETERS:
        raise _Invalid("FOUND_RESERVED_PARAMETER_NAME", f'The "{name}" parameter {RESERVED_PARAMETERS[name]}.')
    spec = PARAMETER_SPECS.get(name)
    if spec is None:
        return value
    if spec.kind == "stop":
        if isinstance(value, str):
            return value
        if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
            return list(value)
        raise _wrong_type(name, "STRING or ARRAY<STRING>", value)
    if spec.kind == "choice":
        if isinstance(value, str) and value.lower() in spec.choices:
            return value.lower()
        raise _wrong_type(name, "STRING (one of " + ", ".join(f'"{c}"' for c in spec.choices) + ")", value)
    number = _as_number(value, integer=spec.kind == "integer")
    if number is None:
        raise _wrong_type(name, "INTEGER" if spec.kind == "integer" else "DOUBLE", value)
    too_low = spec.minimum is not None and number < spec.minimum
    too_high = spec.maximum is not None and number > spec.maximum
    if too_low or too_high or not math.isfinite(number):
        raise _Invalid("INVALID_NUMERIC_PARAMETER", _must_be(name, spec.constraint()))
    return number


def _as_number(value: Any, *, integer: bool) -> int | float | None:
    # bool is an int subclass, but `temperature => true` is a type error, not 1.0.
    if isinstance(value, bool) or not isinstance(value, (Real, Decimal)):
        return None
    if not integer:
        return float(value)
    if isinstance(value, Integral):
        return int(value)
    as_float = float(value)
    if math.isfinite(as_float) and as_float.is_integer():
        return int(as_float)  # 256.0, or Decimal("256") from a SQL decimal literal
    return None


def _plain(value: Any) -> Any:
    return float(value) if isinstance(value, Decimal) else str(value)


def _wrong_type(name: str, expected: str, value: Any) -> _Invalid:
    found = json.dumps(value, default=_plain)
    return _Invalid(
        "INVALID_PARAMETER_DATA_TYPE",
        f'The "{name}" parameter has invalid data type. Expected {expected} data type but found {found}.',
    )


def _must_be(name: str, constraint: str) -> str:
    return f'The "{name}" parameter must be {constraint} for the modelParameters argument of AI_QUERY.'


def check_supported(api: str, params: Mapping[str, Any]) -> None:
    """Reject validated parameters that ``api`` does not have, or values beyond that API's tighter bounds.

    Raises:
        ArgumentError: ``AI_FUNCTION_INVALID_MODEL_PARAMETERS.UNSUPPORTED_MODEL_PARAMETER`` or
            ``.INVALID_NUMERIC_PARAMETER``.
        ConfigError: ``api`` is not a known API name.
    """
    mapping = get_adapter(api).parameters
    for name, value in params.items():
        if name in mapping.unsupported:
            raise unsupported_parameter(name, api)
        route = mapping.routes.get(name)
        if route is not None and route.maximum is not None and value > route.maximum:
            limit = f"between {PARAMETER_SPECS[name].minimum} and {route.maximum} (the {api} API's limit)"
            raise ArgumentError(f"{ERROR_CLASS}.INVALID_NUMERIC_PARAMETER", _must_be(name, limit), sqlstate=SQLSTATE)


def prepare_model_parameters(
    api: str, params: Mapping[str, Any] | None, *, endpoint: str | None = None
) -> dict[str, Any]:
    """Validate ``modelParameters`` and check them against ``api`` (the Spark layer's analysis-time call).

    Returns:
        The validated parameters (see :func:`validate_model_parameters`).

    Raises:
        ArgumentError: any ``AI_FUNCTION_INVALID_MODEL_PARAMETERS.*`` error.
        ConfigError: ``api`` is not a known API name.
    """
    validated = validate_model_parameters(params or {}, endpoint=endpoint)
    check_supported(api, validated)
    return validated
