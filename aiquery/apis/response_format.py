"""``responseFormat``: parsing the user's JSON or DDL string into a :class:`ResponseFormat`.

Two forms, as in Databricks:

- a JSON string in OpenAI's ``response_format`` shape: ``{"type": "text"}``, ``{"type": "json_object"}`` or
  ``{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}``;
- a DDL string, ``STRUCT<review: STRUCT<product: STRING, rating: INT>>``: a STRUCT with exactly one field,
  whose name becomes the schema's name and whose type becomes the JSON Schema the answer must follow.

Parsing DDL needs Spark's own parser, which this layer does not import: :func:`parse_response_format`
returns a :class:`DDLResponseFormat` for text that is not JSON; the Spark layer parses it
(``DataType.fromDDL``) and hands the type's ``jsonValue()`` to :func:`response_format_from_spark_type`.

Schema choices for DDL (Databricks does not document its own):

- struct fields are all ``required`` and objects close with ``additionalProperties: false``, which OpenAI's
  strict mode and Anthropic's structured outputs require; types are not made nullable, so the model is pushed
  to fill every field;
- a MAP becomes an object with ``additionalProperties`` set to the value schema. Strict decoders (OpenAI,
  Anthropic) reject such schemas, so a format containing a MAP is marked ``strict=False``;
- when the single field is not itself a STRUCT (``STRUCT<tags: ARRAY<STRING>>``) the answer is the object
  ``{"tags": [...]}``, because every structured-output API wants an object at the top;
- a field's ``COMMENT`` becomes the property's ``description``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from aiquery.apis.base import ResponseFormat
from aiquery.errors import ArgumentError

__all__ = [
    "JSON_OBJECT_INSTRUCTION",
    "SUPPORTED_RESPONSE_FORMAT_TYPES",
    "DDLResponseFormat",
    "openai_format",
    "parse_response_format",
    "reject_response_format",
    "response_format_from_spark_type",
]

SUPPORTED_RESPONSE_FORMAT_TYPES = ("text", "json_object", "json_schema")
SQLSTATE = "0A000"
FUNCTION = "ai_query"

JSON_OBJECT_INSTRUCTION = "Respond with a single JSON object and nothing else."
"""System text sent with ``json_object``: OpenAI rejects JSON mode unless the word "JSON" appears in the
messages, and Anthropic has no JSON mode at all, so the instruction is what asks for JSON there."""

_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]")
_MAX_NAME = 64  # OpenAI's limit on json_schema.name


@dataclass(frozen=True, slots=True)
class DDLResponseFormat:
    """A ``responseFormat`` given as DDL text, for the Spark layer to parse.

    Spark's parsed type, as ``jsonValue()``, then goes to :func:`response_format_from_spark_type`.
    """

    ddl: str


def parse_response_format(text: str) -> ResponseFormat | DDLResponseFormat:
    """Parse a ``responseFormat`` string.

    Returns:
        A :class:`ResponseFormat` for the JSON forms, or :class:`DDLResponseFormat` for text that is not JSON.

    Raises:
        ArgumentError: ``AI_FUNCTION_UNSUPPORTED_RESPONSE_FORMAT.JSON_STRING`` for JSON that is invalid,
            not an object, of an unsupported ``type``, or a ``json_schema`` without a schema object;
            ``.DDL_STRING`` for an empty string.
    """
    stripped = text.strip()
    if not stripped:
        _ddl_error(text, "The response format is empty.")
    try:
        value = json.loads(stripped)
    except ValueError as exc:
        if stripped.startswith(("{", "[", '"')):
            _json_error("unknown", text, f"The response format is not valid JSON: {exc}.")
        return DDLResponseFormat(ddl=stripped)
    if not isinstance(value, dict):
        _json_error("unknown", text, 'The response format must be a JSON object with a "type".')
    kind = value.get("type")
    if kind == "text":
        return ResponseFormat(kind="text")
    if kind == "json_object":
        return ResponseFormat(kind="json_object")
    if kind == "json_schema":
        return _json_schema(value, text)
    _json_error(kind if isinstance(kind, str) else json.dumps(kind), text)


def _json_schema(value: Mapping[str, Any], text: str) -> ResponseFormat:
    spec = value.get("json_schema")
    if not isinstance(spec, Mapping) or not isinstance(spec.get("schema"), Mapping):
        _json_error(
            "json_schema",
            text,
            'A "json_schema" response format needs "json_schema": {"name": ..., "schema": {...}}.',
        )
    name = spec.get("name", "response")
    strict = spec.get("strict", False)  # OpenAI's default when "strict" is left out
    if not isinstance(name, str) or not name or not isinstance(strict, bool):
        _json_error("json_schema", text, '"name" must be a non-empty string and "strict" a boolean.')
    return ResponseFormat(kind="json_schema", name=name, schema=dict(spec["schema"]), strict=strict)


def _json_error(kind: str, text: str, reason: str = "") -> NoReturn:
    supported = ", ".join(SUPPORTED_RESPONSE_FORMAT_TYPES)
    message = (
        f'AI function: "{FUNCTION}" does not support the type "{kind}" of the following response format: '
        f'"{text}". Supported types of the response format are: {supported}.'
    )
    raise ArgumentError(
        "AI_FUNCTION_UNSUPPORTED_RESPONSE_FORMAT.JSON_STRING",
        f"{message} {reason}".strip(),
        sqlstate=SQLSTATE,
    )


def _ddl_error(ddl: str, reason: str) -> NoReturn:
    raise ArgumentError(
        "AI_FUNCTION_UNSUPPORTED_RESPONSE_FORMAT.DDL_STRING",
        f'AI function: "{FUNCTION}" does not support the following response format: "{ddl}". {reason}',
        sqlstate=SQLSTATE,
    )


def reject_response_format(api: str) -> NoReturn:
    """Raise the error for a ``responseFormat`` on an endpoint whose API answers with vectors (embeddings).

    Raises:
        ArgumentError: always, ``AI_FUNCTION_UNSUPPORTED_RESPONSE_FORMAT`` (SQLSTATE 0A000).
    """
    raise ArgumentError(
        "AI_FUNCTION_UNSUPPORTED_RESPONSE_FORMAT",
        f'AI function: "{FUNCTION}" does not support a response format for an endpoint of the "{api}" API; '
        "responseFormat applies to chat models only.",
        sqlstate=SQLSTATE,
    )


def response_format_from_spark_type(type_json: Mapping[str, Any] | str, ddl: str) -> ResponseFormat:
    """The response format for a parsed DDL ``responseFormat``.

    Args:
        type_json: the Spark type's ``jsonValue()``: a dict for complex types, a string such as ``"string"``
            for simple ones.
        ddl: the user's DDL text, quoted in error messages.

    Raises:
        ArgumentError: ``AI_FUNCTION_UNSUPPORTED_RESPONSE_FORMAT.DDL_STRING`` when the type is not a STRUCT
            with exactly one field, or holds a type JSON cannot express (BINARY, INTERVAL, VARIANT …).
    """
    if not isinstance(type_json, Mapping) or type_json.get("type") != "struct":
        _ddl_error(ddl, f"The response format must be a STRUCT with exactly one field, not {_type_name(type_json)}.")
    fields = type_json.get("fields")
    if not isinstance(fields, list) or len(fields) != 1:
        count = len(fields) if isinstance(fields, list) else 0
        _ddl_error(ddl, f"The response format must be a STRUCT with exactly one field, but it has {count}.")
    field = fields[0]
    converter = _SchemaBuilder(ddl)
    inner = field.get("type")
    if isinstance(inner, Mapping) and inner.get("type") == "struct":
        schema = converter.convert(inner, str(field["name"]))
    else:
        schema = converter.convert({"type": "struct", "fields": [field]}, "")
    name = _NAME_CHARS.sub("_", str(field["name"]))[:_MAX_NAME] or "response"
    return ResponseFormat(kind="json_schema", name=name, schema=schema, strict=not converter.has_map)


def _type_name(type_json: Any) -> str:
    if isinstance(type_json, Mapping):
        return str(type_json.get("type", "an unknown type")).upper()
    return str(type_json).upper()


_SIMPLE: Mapping[str, Mapping[str, str]] = {
    "string": {"type": "string"},
    "boolean": {"type": "boolean"},
    "byte": {"type": "integer"},
    "short": {"type": "integer"},
    "integer": {"type": "integer"},
    "long": {"type": "integer"},
    "float": {"type": "number"},
    "double": {"type": "number"},
    "date": {"type": "string", "format": "date"},
    "timestamp": {"type": "string", "format": "date-time"},
    "timestamp_ntz": {"type": "string", "format": "date-time"},
}
# Spark spells parameterised simple types inside the JSON string: "decimal(10,2)", "varchar(20)", "char(3)".
_DECIMAL = re.compile(r"^decimal(\(\s*\d+\s*,\s*\d+\s*\))?$")
_CHAR = re.compile(r"^(var)?char\(\s*\d+\s*\)$")
_PARAMETERISED: tuple[tuple[re.Pattern[str], Mapping[str, str]], ...] = (
    (_DECIMAL, {"type": "number"}),
    (_CHAR, {"type": "string"}),
)


class _SchemaBuilder:
    """Spark type JSON to JSON Schema, remembering whether a MAP was seen (it rules out strict decoding)."""

    def __init__(self, ddl: str) -> None:
        self.ddl = ddl
        self.has_map = False

    def convert(self, spark_type: Any, where: str) -> dict[str, Any]:
        if isinstance(spark_type, str):
            return self._simple(spark_type, where)
        if not isinstance(spark_type, Mapping):
            self._unsupported(str(spark_type), where)
        kind = spark_type.get("type")
        if kind == "struct":
            return self._struct(spark_type, where)
        if kind == "array":
            return {"type": "array", "items": self.convert(spark_type.get("elementType"), f"{where}[]")}
        if kind == "map":
            return self._map(spark_type, where)
        self._unsupported(str(kind), where)

    def _simple(self, name: str, where: str) -> dict[str, Any]:
        schema = _SIMPLE.get(name)
        if schema is None:
            schema = next((s for pattern, s in _PARAMETERISED if pattern.match(name)), None)
        if schema is None:
            self._unsupported(name, where)
        return dict(schema)

    def _struct(self, spark_type: Mapping[str, Any], where: str) -> dict[str, Any]:
        properties: dict[str, Any] = {}
        for field in spark_type.get("fields") or []:
            name = str(field["name"])
            schema = self.convert(field.get("type"), f"{where}.{name}" if where else name)
            comment = (field.get("metadata") or {}).get("comment")
            if isinstance(comment, str) and comment:
                schema["description"] = comment
            properties[name] = schema
        return {
            "type": "object",
            "properties": properties,
            "required": list(properties),
            "additionalProperties": False,
        }

    def _map(self, spark_type: Mapping[str, Any], where: str) -> dict[str, Any]:
        key_type = spark_type.get("keyType")
        if not (key_type == "string" or (isinstance(key_type, str) and _CHAR.match(key_type))):
            _ddl_error(self.ddl, f'The MAP at "{where}" must have STRING keys: JSON object keys are strings.')
        self.has_map = True
        return {
            "type": "object",
            "additionalProperties": self.convert(spark_type.get("valueType"), f"{where}{{}}"),
        }

    def _unsupported(self, type_name: str, where: str) -> NoReturn:
        _ddl_error(self.ddl, f'The type {type_name.upper()} of "{where}" cannot be expressed in JSON.')


def openai_format(response_format: ResponseFormat | None, *, nested: bool) -> dict[str, Any] | None:
    """OpenAI's structured-output object, or None for plain text: chat's ``response_format`` nests the schema
    under ``json_schema`` (``nested``), the Responses API's ``text.format`` holds it flat."""
    if response_format is None or response_format.kind == "text":
        return None
    if response_format.kind == "json_object":
        return {"type": "json_object"}
    schema = {
        "name": response_format.name,
        "schema": dict(response_format.schema or {}),
        "strict": response_format.strict,
    }
    return {"type": "json_schema", "json_schema": schema} if nested else {"type": "json_schema", **schema}
