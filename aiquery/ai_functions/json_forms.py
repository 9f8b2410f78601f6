"""The JSON forms of ``ai_classify`` and ``ai_extract``: labels or a schema as a JSON STRING, options as a MAP, and
a VARIANT ``{"response": ..., "error_message": ...}`` as the value (Spark 4.0 or later).

Databricks' limits apply: 2 to 500 labels of 1 to 100 characters; up to 256 extraction fields, nested up to 12
levels deep; instructions up to 20,000 characters.
"""

from __future__ import annotations

import json
from typing import Any

from aiquery.ai_functions.arguments import checked_options, invalid_argument, json_argument
from aiquery.ai_functions.call import AIFunctionCall
from aiquery.ai_functions.definitions import MIN_LABELS
from aiquery.apis.base import ResponseFormat
from aiquery.errors import ArgumentError

__all__ = ["classify_json", "extract_json"]

MAX_JSON_LABELS, MAX_LABEL_CHARS = 500, 100
"""The JSON form of ``ai_classify`` takes 2 to 500 labels of 1 to 100 characters (Databricks)."""
MAX_EXTRACT_FIELDS, MAX_EXTRACT_DEPTH = 256, 12
CLASSIFY_OPTIONS = ("instructions", "multilabel", "version")
EXTRACT_OPTIONS = ("instructions", "mode", "version")
FIELD_TYPES = {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean"}
_LABELS_EXAMPLE = '\'["urgent", "not urgent"]\''
_SCHEMA_EXAMPLE = '\'["person", "company"]\''


def classify_json(labels_json: Any, options: Any = None) -> AIFunctionCall:
    """``ai_classify(content, '["spam", "not spam"]' [, options])``: VARIANT ``{"response": [labels], ...}``.

    The labels are a JSON array, or a JSON object mapping each label to its description; the options
    ``instructions``, ``multilabel`` ('true' / 'false') and ``version``.

    Raises:
        ArgumentError: invalid JSON, fewer than 2 or more than 500 labels, a label of 0 or over 100 characters, an
            unknown option.
    """
    labels, descriptions = _json_labels(json_argument("ai_classify", "labels", labels_json, _LABELS_EXAMPLE))
    settings = checked_options("ai_classify", options, CLASSIFY_OPTIONS)
    multilabel = settings.get("multilabel", "false").strip().lower()
    if multilabel not in ("true", "false"):
        message = f"multilabel is 'true' or 'false', not {multilabel!r}"
        raise invalid_argument("AI_FUNCTION_OPTIONS", message, function="ai_classify")
    listed = "\n".join(
        f"- {json.dumps(label)}" + (f": {descriptions[label]}" if label in descriptions else "") for label in labels
    )
    how = "every label that applies (at least one)" if multilabel == "true" else "exactly one label"
    instruction = f"Classify the text below with {how} from this list:\n{listed}\nAnswer with the label(s) only."
    return AIFunctionCall(
        "ai_classify",
        _with_instructions(instruction, settings),
        _labels_format(labels, multilabel=multilabel == "true"),
        labels=tuple(labels),
        variant=True,
        multilabel=multilabel == "true",
    )


def _with_instructions(instruction: str, settings: dict[str, str]) -> str:
    """The instruction, followed by the caller's own ``instructions`` option when given."""
    if settings.get("instructions"):
        return f"{instruction}\nInstructions: {settings['instructions']}"
    return instruction


def _json_labels(parsed: Any) -> tuple[list[str], dict[str, str]]:
    """The labels of ``ai_classify``'s JSON argument and the descriptions given for them, checked."""
    descriptions: dict[str, str] = {}
    if isinstance(parsed, dict):
        descriptions = {str(label): str(text) for label, text in parsed.items() if text}
        labels = list(parsed)
    elif isinstance(parsed, list) and all(isinstance(label, str) for label in parsed):
        labels = list(parsed)
    else:
        message = f"labels must be a JSON array of strings or an object of label to description, like {_LABELS_EXAMPLE}"
        raise invalid_argument("AI_CLASSIFY_LABELS", message, function="ai_classify")
    if not MIN_LABELS <= len(labels) <= MAX_JSON_LABELS or len(set(labels)) != len(labels):
        message = (
            f"it takes {MIN_LABELS} to {MAX_JSON_LABELS} distinct "
            f"labels, not {len(labels)} ({len(set(labels))} distinct)"
        )
        raise invalid_argument("AI_CLASSIFY_LABELS", message, function="ai_classify")
    if any(not 1 <= len(label.strip()) <= MAX_LABEL_CHARS for label in labels):
        message = f"each label has 1 to {MAX_LABEL_CHARS} characters"
        raise invalid_argument("AI_CLASSIFY_LABELS", message, function="ai_classify")
    return labels, descriptions


def _labels_format(labels: list[str], *, multilabel: bool) -> ResponseFormat:
    """The structured output of the JSON form: one label, or a list of them."""
    enum = {"type": "string", "enum": labels}
    if multilabel:
        properties: dict[str, Any] = {"labels": {"type": "array", "items": enum}}
        name = "labels"
    else:
        properties, name = {"label": enum}, "label"
    schema = {"type": "object", "properties": properties, "required": [name], "additionalProperties": False}
    return ResponseFormat(kind="json_schema", name=name, schema=schema, strict=True)


def extract_json(schema_json: Any, options: Any = None) -> AIFunctionCall:
    """``ai_extract(content, '["person", "company"]' [, options])``: VARIANT ``{"response": {...}, ...}``.

    The schema is a JSON array of field names (each a string), or a JSON object mapping each field to
    ``{"type": ..., "description": ...}`` with types string, integer, number, boolean, enum (with ``"enum"``
    values), object (with ``"properties"``) and array (with ``"items"``); the options ``instructions``, ``mode``
    and ``version``.

    Raises:
        ArgumentError: invalid JSON, no field or more than 256, nesting deeper than 12, an unknown type or option.
    """
    parsed = json_argument("ai_extract", "schema", schema_json, _SCHEMA_EXAMPLE)
    if isinstance(parsed, list) and parsed and all(isinstance(name, str) and name.strip() for name in parsed):
        parsed = {name: {"type": "string"} for name in parsed}
    if not isinstance(parsed, dict) or not parsed:
        raise _invalid_schema(
            f"schema must be a JSON array of field names or an object "
            f'of field to {{"type": ..., "description": ...}}, like {_SCHEMA_EXAMPLE}'
        )
    counted = [0]
    properties = {str(name): _json_schema(str(name), spec, 1, counted) for name, spec in parsed.items()}
    settings = checked_options("ai_extract", options, EXTRACT_OPTIONS)
    schema = {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}
    described = "; ".join(
        f"{name}: {spec['description']}"
        for name, spec in parsed.items()
        if isinstance(spec, dict) and spec.get("description")
    )
    instruction = (
        f"Extract these fields from the text below: {', '.join(json.dumps(name) for name in properties)}. Answer "
        "with a JSON object with exactly these keys; use null for a field that is not in the text."
    )
    if described:
        instruction += f"\nFields: {described}"
    return AIFunctionCall(
        "ai_extract",
        _with_instructions(instruction, settings),
        ResponseFormat(kind="json_schema", name="extraction", schema=schema, strict=True),
        fields=tuple(properties),
        variant=True,
    )


def _json_schema(name: str, spec: Any, depth: int, counted: list[int]) -> dict[str, Any]:
    """The JSON Schema of one field of ``ai_extract``'s schema (nullable: a field may be missing from the text)."""
    counted[0] += 1
    if counted[0] > MAX_EXTRACT_FIELDS or depth > MAX_EXTRACT_DEPTH:
        raise _invalid_schema(
            f"a schema has at most {MAX_EXTRACT_FIELDS} fields and {MAX_EXTRACT_DEPTH} levels of nesting"
        )
    if isinstance(spec, str):
        spec = {"type": spec}
    if not isinstance(spec, dict):
        raise _invalid_schema(
            f'field {name!r} must be described by an object like {{"type": "string", "description": "..."}}'
        )
    kind = spec.get("type", "string")
    if kind in FIELD_TYPES:
        return {"type": [FIELD_TYPES[kind], "null"]}
    if kind == "enum" and isinstance(spec.get("enum"), list) and spec["enum"]:
        return {"type": ["string", "null"], "enum": [*map(str, spec["enum"]), None]}
    if kind == "object" and isinstance(spec.get("properties"), dict) and spec["properties"]:
        inner = {
            str(key): _json_schema(str(key), value, depth + 1, counted) for key, value in spec["properties"].items()
        }
        return {"type": ["object", "null"], "properties": inner, "required": list(inner), "additionalProperties": False}
    if kind == "array" and "items" in spec:
        return {"type": ["array", "null"], "items": _json_schema(f"{name}[]", spec["items"], depth + 1, counted)}
    raise _invalid_schema(
        f"field {name!r} has type {kind!r}; the types are "
        'string, integer, number, boolean, enum (with "enum": [...]), object (with "properties") '
        'and array (with "items")'
    )


def _invalid_schema(message: str) -> ArgumentError:
    return invalid_argument("AI_EXTRACT_SCHEMA", message, function="ai_extract")
