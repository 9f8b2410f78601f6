"""Reading decoded JSON response bodies: typed field access that fails with a clear message, and token counts.

Every reader raises :class:`~aiquery.apis.base.MalformedResponse` naming the JSON path it expected and what it
found, so a user reading ``errorMessage`` can tell a gateway's odd answer from a bug.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiquery.apis.base import MalformedResponse, TokenUsage, estimate_tokens

MAX_TOKEN_COUNT = 2**53
"""Largest token count believed: past it a count is unknown. Costs are floats (exact up to 2**53), and the usage
table's counts are 64-bit."""

__all__ = [
    "MAX_TOKEN_COUNT",
    "OpenAIUsageKeys",
    "build_usage",
    "describe",
    "openai_usage",
    "openai_usage_keys",
    "require_list",
    "require_object",
    "require_text",
    "token_count",
]


def describe(value: Any) -> str:
    """A short JSON-flavoured description of a value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an empty array" if not value else "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def require_object(value: Any, path: str) -> Mapping[str, Any]:
    """``value`` as a JSON object.

    Raises:
        MalformedResponse: ``value`` is not an object.
    """
    # Decoded JSON objects are dicts; the concrete check is several times cheaper than the Mapping ABC.
    if not isinstance(value, dict):
        raise MalformedResponse(f"expected {path} to be an object, found {describe(value)}")
    return value


def require_list(parent: Mapping[str, Any], key: str, path: str, *, non_empty: bool = False) -> list[Any]:
    """``parent[key]`` as a JSON array (optionally non-empty).

    Raises:
        MalformedResponse: the key is missing, not an array, or empty when ``non_empty``.
    """
    if key not in parent:
        raise MalformedResponse(f"{path} is missing{_provider_error_hint(parent)}")
    value = parent[key]
    if not isinstance(value, list):
        raise MalformedResponse(f"expected {path} to be an array, found {describe(value)}")
    if non_empty and not value:
        raise MalformedResponse(f"{path} is an empty array{_provider_error_hint(parent)}")
    return value


def require_text(value: Any, path: str) -> str:
    """``value`` as a string.

    Raises:
        MalformedResponse: ``value`` is not a string.
    """
    if not isinstance(value, str):
        raise MalformedResponse(f"expected {path} to be a string, found {describe(value)}")
    return value


def _provider_error_hint(body: Mapping[str, Any]) -> str:
    # Some gateways answer 200 with an error object instead of the promised shape; its message is the cause.
    error = body.get("error")
    if isinstance(error, Mapping) and isinstance(error.get("message"), str):
        return f" (the body holds an error: {error['message']})"
    if isinstance(error, str):
        return f" (the body holds an error: {error})"
    return ""


def token_count(container: Any, *path: str) -> int | None:
    """The non-negative integer at ``path`` inside ``container``, or None when absent or not a count.

    Usage blocks are best effort: a missing or odd count means "unknown" (and is then estimated), never a
    failed row, because the answer itself is fine.
    """
    # Exact type checks: this runs several times per response, and `type(x) is int` also rules out bools.
    value = container
    for key in path:
        if type(value) is not dict:
            return None
        value = value.get(key)
    if type(value) is int:
        return value if 0 <= value <= MAX_TOKEN_COUNT else None
    if type(value) is float and value.is_integer() and 0 <= value <= MAX_TOKEN_COUNT:
        return int(value)
    return None


def build_usage(
    *,
    prompt: str,
    output: str,
    input_tokens: int | None,
    output_tokens: int | None,
    cache_read_input_tokens: int | None = None,
    cache_creation_input_tokens: int | None = None,
    output_reasoning_tokens: int | None = None,
) -> TokenUsage:
    """A :class:`TokenUsage` from counts already normalised by an adapter's ``_map_usage``.

    A missing input or output count is estimated from the prompt or the output text and the usage is
    flagged ``estimated``; ``total_tokens`` is always input plus output.
    """
    if input_tokens is None and output_tokens is None:
        return TokenUsage.estimate(prompt, output)
    estimated = input_tokens is None or output_tokens is None
    final_input = estimate_tokens(prompt) if input_tokens is None else input_tokens
    final_output = estimate_tokens(output) if output_tokens is None else output_tokens
    return TokenUsage(
        input_tokens=final_input,
        output_tokens=final_output,
        total_tokens=final_input + final_output,
        cache_read_input_tokens=cache_read_input_tokens or 0,
        cache_creation_input_tokens=cache_creation_input_tokens or 0,
        output_reasoning_tokens=output_reasoning_tokens or 0,
        estimated=estimated,
    )


OpenAIUsageKeys = tuple[str, str, str, str]
"""The keys of one of OpenAI's usage shapes: input and output tokens, then their details."""


def openai_usage_keys(given: str, produced: str) -> OpenAIUsageKeys:
    """The keys of an OpenAI usage shape, which differ only in the names of the two sides: ``prompt`` and
    ``completion`` for chat, ``input`` and ``output`` for Responses (``<side>_tokens``, ``<side>_tokens_details``).
    Built once per adapter, not per response."""
    return f"{given}_tokens", f"{produced}_tokens", f"{given}_tokens_details", f"{produced}_tokens_details"


def openai_usage(usage: Any, prompt: str, text: str, *, keys: OpenAIUsageKeys) -> TokenUsage:
    """The usage of OpenAI's shapes (``keys`` from :func:`openai_usage_keys`): cached tokens included in the input,
    reasoning in the output."""
    given, produced, given_details, produced_details = keys
    return build_usage(
        prompt=prompt,
        output=text,
        input_tokens=token_count(usage, given),
        output_tokens=token_count(usage, produced),
        cache_read_input_tokens=token_count(usage, given_details, "cached_tokens"),
        output_reasoning_tokens=token_count(usage, produced_details, "reasoning_tokens"),
    )
