"""The checks of the AI Functions' literal arguments, made at analysis time so that a bad argument fails the query
before any request is sent.

Each failure is ``INVALID_PARAMETER_VALUE.<what>`` (SQLSTATE 22023), the error class Databricks raises for the
same mistakes, with a message that shows a valid argument.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from aiquery.errors import ArgumentError

__all__ = [
    "MAX_INSTRUCTIONS_CHARS",
    "SUPPORTED_VERSIONS",
    "checked_options",
    "invalid_argument",
    "json_argument",
    "require_labels",
    "require_text",
]

MAX_INSTRUCTIONS_CHARS = 20_000
SUPPORTED_VERSIONS = ("2.0", "2.1")
"""The ``version`` option's accepted values; aiquery answers every version the same way."""


def invalid_argument(what: str, message: str, *, function: str = "") -> ArgumentError:
    """``INVALID_PARAMETER_VALUE.<what>`` (22023) with ``message``, after ``function: `` when one is named."""
    if function:
        message = f"{function}: {message}"
    return ArgumentError(f"INVALID_PARAMETER_VALUE.{what}", message, sqlstate="22023")


def require_labels(labels: Sequence[Any], function: str, error: str, example: str) -> None:
    """Refuse labels that are not a non-empty ARRAY of non-empty strings."""
    if not labels or any(not isinstance(label, str) or not label.strip() for label in labels):
        message = f"{function}'s labels must be a non-empty ARRAY of non-empty strings, like {example}."
        raise invalid_argument(error, message)


def require_text(value: Any, function: str, argument: str, error: str, example: str) -> str:
    """``value`` stripped, or ``INVALID_PARAMETER_VALUE.<error>`` when it is not a non-empty string."""
    if not isinstance(value, str) or not value.strip():
        raise invalid_argument(error, f"{function}'s {argument} must be a non-empty STRING literal, like {example}.")
    return value.strip()


def checked_options(function: str, options: Any, allowed: Sequence[str]) -> dict[str, str]:
    """``options`` (a MAP<STRING, STRING> literal, as a dict) checked: known keys, instructions' length, version."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise _invalid_options(
            function,
            "options must be a MAP<STRING, STRING> literal, like map('instructions', 'Answer for a support team')",
        )
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise _invalid_options(
            function, f"option {unknown[0]!r} is not supported by aiquery; the options are {', '.join(allowed)}"
        )
    values = {key: str(value) for key, value in options.items() if value is not None}
    if len(values.get("instructions", "")) > MAX_INSTRUCTIONS_CHARS:
        raise _invalid_options(function, f"instructions take at most {MAX_INSTRUCTIONS_CHARS} characters")
    if "version" in values and values["version"] not in SUPPORTED_VERSIONS:
        raise _invalid_options(
            function, f"version {values['version']!r}; supported: {', '.join(SUPPORTED_VERSIONS)}"
        )
    return values


def _invalid_options(function: str, message: str) -> ArgumentError:
    return invalid_argument("AI_FUNCTION_OPTIONS", message, function=function)


def json_argument(function: str, name: str, text: Any, example: str) -> Any:
    """The JSON value a STRING literal argument holds (the labels or schema of a JSON form)."""
    what = f"{function.upper()}_{name.upper()}"
    if not isinstance(text, str):
        message = f"{name} must be a STRING literal holding JSON, like {example}"
        raise invalid_argument(what, message, function=function)
    try:
        return json.loads(text)
    except ValueError:
        message = f"{name} is not valid JSON: {text[:200]!r}; expected something like {example}"
        raise invalid_argument(what, message, function=function) from None
