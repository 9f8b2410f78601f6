"""Structured output: JSON valid against the requested schema, on every route that supports it."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

import pytest
from gateway_http import ANTHROPIC, CHAT, GEMINI, OPENAI_RESPONSES, RESPONSES, answer_text, request_body

from aiquery.gateway.schema_values import value_for_schema

_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


def validate(value: Any, schema: Mapping[str, Any], root: Mapping[str, Any] | None = None, path: str = "$") -> None:
    """A small JSON-schema checker for the keywords the generator claims to honour; raises AssertionError."""
    root = root if root is not None else schema
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        return validate(value, target, root, path)
    if "const" in schema:
        assert value == schema["const"], path
    if "enum" in schema:
        assert value in schema["enum"], f"{path}: {value!r} not in enum"
    if "anyOf" in schema:
        errors = 0
        for option in schema["anyOf"]:
            try:
                validate(value, option, root, path)
            except AssertionError:
                errors += 1
        assert errors < len(schema["anyOf"]), f"{path}: matches no anyOf option"
    declared = schema.get("type")
    if declared is None:
        return None
    names = [name.lower() for name in (declared if isinstance(declared, list) else [declared])]
    if value is None and "null" in names:
        return None
    assert names != ["null"], f"{path}: {value!r} is not null"
    kind = next(name for name in names if name != "null")
    if kind == "integer":
        assert isinstance(value, int) and not isinstance(value, bool), f"{path}: {value!r} is not an integer"
    elif kind == "number":
        assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{path}: {value!r} is not a number"
    else:
        assert isinstance(value, _TYPES[kind]), f"{path}: {value!r} is not {kind}"
    if kind in ("integer", "number"):
        assert value >= schema.get("minimum", -math.inf), f"{path}: below minimum"
        assert value <= schema.get("maximum", math.inf), f"{path}: above maximum"
        if "exclusiveMinimum" in schema:
            assert value > schema["exclusiveMinimum"], path
        if "multipleOf" in schema:
            assert abs(value / schema["multipleOf"] - round(value / schema["multipleOf"])) < 1e-9, path
    if kind == "string":
        assert len(value) >= schema.get("minLength", 0), path
        assert len(value) <= schema.get("maxLength", 10**9), path
        if schema.get("format") == "date":
            assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", value), path
        if schema.get("format") == "email":
            assert re.fullmatch(r"[^@]+@[^@]+\.\w+", value), path
    if kind == "array":
        assert schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", 10**9), f"{path}: item count"
        if schema.get("uniqueItems"):
            assert len({json.dumps(item) for item in value}) == len(value), f"{path}: duplicates"
        for index, item in enumerate(value):
            validate(item, schema.get("items", {}), root, f"{path}[{index}]")
    if kind == "object":
        for name in schema.get("required", []):
            assert name in value, f"{path}: missing required {name}"
        properties = schema.get("properties", {})
        if schema.get("additionalProperties") is False:
            assert set(value) <= set(properties), f"{path}: unexpected properties"
        for name, item in value.items():
            if name in properties:
                validate(item, properties[name], root, f"{path}.{name}")
    return None


REVIEW_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 12},
        "sentiment": {"type": "string", "enum": ["positive", "neutral", "negative"]},
        "score": {"type": "integer", "minimum": 1, "maximum": 5},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "spam": {"type": "boolean"},
        "topics": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
        "author": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "email": {"type": "string", "format": "email"}},
            "required": ["name", "email"],
            "additionalProperties": False,
        },
        "published": {"type": ["string", "null"], "format": "date"},
    },
    "required": ["title", "sentiment", "score", "confidence", "spam", "topics", "author", "published"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    "schema",
    [
        REVIEW_SCHEMA,
        {
            "$defs": {
                "item": {
                    "type": "object",
                    "properties": {
                        "sku": {"const": "A-1"},
                        "qty": {"type": "integer", "multipleOf": 5, "minimum": 1, "maximum": 99},
                    },
                }
            },
            "type": "object",
            "properties": {"items": {"type": "array", "items": {"$ref": "#/$defs/item"}, "minItems": 2}},
            "required": ["items"],
        },
        {
            "type": "array",
            "items": {"enum": ["a", "b", "c"]},
            "minItems": 3,
            "maxItems": 3,
            "uniqueItems": True,
        },
        {"anyOf": [{"type": "null"}, {"type": "integer", "exclusiveMinimum": 10, "maximum": 11}]},
        {"type": "string", "minLength": 40},
        {
            "type": "OBJECT",
            "properties": {"n": {"type": "NUMBER"}, "ok": {"type": "BOOLEAN"}},
            "required": ["n", "ok"],
        },
    ],
)
def test_generated_values_are_valid(schema: dict[str, Any]) -> None:
    for prompt in ("first prompt", "second, different prompt", ""):
        value = value_for_schema(schema, prompt)
        validate(value, _lowercase_types(schema))


def _lowercase_types(schema: Any) -> Any:
    # The checker speaks JSON Schema; Gemini's OpenAPI-style schemas spell type names in upper case.
    if isinstance(schema, dict):
        return {
            key: (value.lower() if key == "type" and isinstance(value, str) else _lowercase_types(value))
            for key, value in schema.items()
        }
    if isinstance(schema, list):
        return [_lowercase_types(item) for item in schema]
    return schema


def test_the_checker_itself_rejects_invalid_values() -> None:
    with pytest.raises(AssertionError):
        validate({"title": "x"}, REVIEW_SCHEMA)
    with pytest.raises(AssertionError):
        validate({"score": 9}, {"type": "object", "properties": {"score": {"type": "integer", "maximum": 5}}})


def test_values_are_deterministic_per_prompt() -> None:
    assert value_for_schema(REVIEW_SCHEMA, "a prompt") == value_for_schema(REVIEW_SCHEMA, "a prompt")
    assert value_for_schema(REVIEW_SCHEMA, "a prompt") != value_for_schema(REVIEW_SCHEMA, "another prompt")


@pytest.mark.parametrize(
    ("path", "extra"),
    [
        (
            CHAT,
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "review", "schema": REVIEW_SCHEMA, "strict": True},
                }
            },
        ),
        (RESPONSES, {"text": {"format": {"type": "json_schema", "name": "review", "schema": REVIEW_SCHEMA}}}),
        (
            OPENAI_RESPONSES,
            {"text": {"format": {"type": "json_schema", "name": "review", "schema": REVIEW_SCHEMA}}},
        ),
        (ANTHROPIC, {"output_format": {"type": "json_schema", "schema": REVIEW_SCHEMA}}),
        (ANTHROPIC, {"output_config": {"format": {"type": "json_schema", "schema": REVIEW_SCHEMA}}}),
        (
            GEMINI,
            {
                "generationConfig": {
                    "responseMimeType": "application/json",
                    "responseJsonSchema": REVIEW_SCHEMA,
                }
            },
        ),
        (
            GEMINI,
            {"generationConfig": {"responseMimeType": "application/json", "responseSchema": REVIEW_SCHEMA}},
        ),
    ],
)
def test_structured_output_over_http(post: Any, path: str, extra: dict[str, Any]) -> None:
    # A small max_tokens must not cut structured output short: it would no longer be JSON.
    body = request_body(path, "Review: great product, fast delivery", **extra)
    response = post(path, body)
    assert response.status == 200, response.raw
    validate(json.loads(answer_text(path, response.json())), REVIEW_SCHEMA)


@pytest.mark.parametrize(
    ("path", "extra"),
    [
        (CHAT, {"response_format": {"type": "json_object"}}),
        (RESPONSES, {"text": {"format": {"type": "json_object"}}}),
        (GEMINI, {"generationConfig": {"responseMimeType": "application/json"}}),
    ],
)
def test_json_object_mode(post: Any, path: str, extra: dict[str, Any]) -> None:
    answer = json.loads(answer_text(path, post(path, request_body(path, "Give me JSON", **extra)).json()))
    assert isinstance(answer, dict) and answer


def test_json_schema_without_a_schema_is_refused(post: Any) -> None:
    body = request_body(CHAT, "x", response_format={"type": "json_schema", "json_schema": {"name": "n"}})
    assert post(CHAT, body).status == 400
