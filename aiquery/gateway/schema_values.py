"""Deterministic JSON values that satisfy a JSON schema, for structured-output answers.

Handles the subset that structured-output APIs accept: ``type`` (a name or a list, lower- or Gemini's
upper-case), ``properties``/``required``, ``items``/``prefixItems`` with ``minItems``/``maxItems``/
``uniqueItems``, ``enum``, ``const``, ``anyOf``/``oneOf`` (the first non-null choice), ``allOf`` (merged),
local ``$ref`` (``#/$defs/...``, ``#/definitions/...``), string ``format``/``minLength``/``maxLength`` and
numeric bounds with ``multipleOf``. ``pattern`` is not honoured: no regex generator is worth its weight here.
Every choice comes from a hash of the prompt and the value's path, so equal prompts give equal JSON.
"""

from __future__ import annotations

import math
import re
import uuid
import zlib
from collections.abc import Mapping
from typing import Any

__all__ = ["value_for_schema"]

MAX_DEPTH = 12
"""Past this depth only required properties and minimum item counts are generated (recursive schemas)."""

_WORDS = re.compile(r"\w+")
_NUMERIC_SPAN = 100


def value_for_schema(schema: Mapping[str, Any], prompt: str) -> Any:
    """A JSON value valid against ``schema``, derived from ``prompt``.

    Args:
        schema: a JSON schema (the root, against which local ``$ref`` pointers resolve).
        prompt: the request's text; strings are made of its words.
    """
    words = _WORDS.findall(prompt[:4000]) or ["value"]
    return _Generator(schema, prompt, words).value(schema, "$", 0)


class _Generator:
    def __init__(self, root: Mapping[str, Any], prompt: str, words: list[str]) -> None:
        self._root = root
        self._salt = prompt
        self._words = words

    def _pick(self, path: str, modulo: int) -> int:
        return zlib.crc32(f"{self._salt}\x00{path}".encode()) % max(1, modulo)

    def value(self, schema: Any, path: str, depth: int) -> Any:
        schema = self._resolve(schema)
        if not isinstance(schema, Mapping):
            return self._string({}, path)  # `true` or a malformed schema: any value goes
        if "const" in schema:
            return schema["const"]
        if schema.get("enum"):
            options = list(schema["enum"])
            return options[self._pick(path, len(options))]
        for combinator in ("anyOf", "oneOf"):
            if schema.get(combinator):
                return self.value(_first_non_null(schema[combinator]), path, depth)
        if schema.get("allOf"):
            return self.value(self._merged(schema), path, depth)
        generate = _GENERATORS.get(_type_of(schema), _GENERATORS["string"])
        return generate(self, schema, path, depth)

    def _resolve(self, schema: Any) -> Any:
        seen = 0
        while isinstance(schema, Mapping) and isinstance(schema.get("$ref"), str) and seen < 32:
            target: Any = self._root
            for part in schema["$ref"].lstrip("#").strip("/").split("/"):
                if not part:
                    continue
                part = part.replace("~1", "/").replace("~0", "~")
                target = target.get(part) if isinstance(target, Mapping) else None
            if target is None:
                return {}
            schema, seen = target, seen + 1
        return schema

    def _merged(self, schema: Mapping[str, Any]) -> dict[str, Any]:
        merged: dict[str, Any] = {key: value for key, value in schema.items() if key != "allOf"}
        for part in schema["allOf"]:
            part = self._resolve(part)
            if not isinstance(part, Mapping):
                continue
            for key, value in part.items():
                if key == "properties":
                    merged["properties"] = {**merged.get("properties", {}), **value}
                elif key == "required":
                    merged["required"] = [*merged.get("required", []), *value]
                else:
                    merged.setdefault(key, value)
        return merged

    def _object(self, schema: Mapping[str, Any], path: str, depth: int) -> dict[str, Any]:
        properties: Mapping[str, Any] = schema.get("properties") or {}
        required = list(schema.get("required") or [])
        # Strict structured output requires every property, so all are generated unless recursion runs deep.
        names = (
            required if depth >= MAX_DEPTH else [*properties, *(name for name in required if name not in properties)]
        )
        return {
            name: self.value(properties.get(name, {"type": "string"}), f"{path}.{name}", depth + 1) for name in names
        }

    def _array(self, schema: Mapping[str, Any], path: str, depth: int) -> list[Any]:
        minimum = int(schema.get("minItems") or 0)
        maximum = int(schema.get("maxItems", max(minimum, 3)))
        count = minimum if depth >= MAX_DEPTH else min(max(1 + self._pick(path, 3), minimum), maximum)
        prefix = list(schema.get("prefixItems") or [])
        items = schema.get("items", {})
        values: list[Any] = []
        attempts = 0
        while len(values) < count and attempts < count * 4 + 4:
            index = len(values)
            item_schema = prefix[index] if index < len(prefix) else items
            value = self.value(item_schema, f"{path}[{index}.{attempts}]", depth + 1)
            attempts += 1
            if schema.get("uniqueItems") and value in values:
                continue
            values.append(value)
        return values

    def _string(self, schema: Mapping[str, Any], path: str, depth: int = 0) -> str:
        form = _STRING_FORMATS.get(str(schema.get("format", "")))
        if form is not None:
            return form(self._pick(path, 2**31))
        start = self._pick(path, len(self._words))
        text = " ".join(self._words[start : start + 4]) or self._words[0]
        minimum, maximum = int(schema.get("minLength") or 0), schema.get("maxLength")
        while len(text) < minimum:
            text += " " + text
        return text[: int(maximum)] if maximum is not None else text

    def _number(self, schema: Mapping[str, Any], path: str, depth: int) -> float:
        low, high = _bounds(schema)
        fraction = self._pick(path, 10_000) / 10_000
        value = round(low + (high - low) * fraction, 2)
        return _fit(value, schema, low, high)

    def _integer(self, schema: Mapping[str, Any], path: str, depth: int) -> int:
        low, high = _bounds(schema)
        low_int, high_int = math.ceil(low), math.floor(high)
        if high_int < low_int:
            return int(low_int)
        value = int(low_int + self._pick(path, high_int - low_int + 1))
        return int(_fit(value, schema, low_int, high_int))

    def _boolean(self, schema: Mapping[str, Any], path: str, depth: int) -> bool:
        return self._pick(path, 2) == 0

    def _null(self, schema: Mapping[str, Any], path: str, depth: int) -> None:
        return None


_GENERATORS = {
    "object": _Generator._object,
    "array": _Generator._array,
    "string": _Generator._string,
    "number": _Generator._number,
    "integer": _Generator._integer,
    "boolean": _Generator._boolean,
    "null": _Generator._null,
}

_STRING_FORMATS = {
    "date": lambda n: f"20{10 + n % 20:02d}-{1 + n % 12:02d}-{1 + n % 28:02d}",
    "date-time": lambda n: f"20{10 + n % 20:02d}-{1 + n % 12:02d}-{1 + n % 28:02d}T{n % 24:02d}:{n % 60:02d}:00Z",
    "time": lambda n: f"{n % 24:02d}:{n % 60:02d}:00",
    "email": lambda n: f"user{n % 10_000}@example.com",
    "uri": lambda n: f"https://example.com/item/{n % 10_000}",
    "url": lambda n: f"https://example.com/item/{n % 10_000}",
    "uuid": lambda n: str(uuid.UUID(int=n * 0x9E3779B97F4A7C15 % 2**128)),
    "ipv4": lambda n: f"10.{n % 256}.{n // 256 % 256}.{n // 65536 % 256}",
    "hostname": lambda n: f"host{n % 10_000}.example.com",
}


def _type_of(schema: Mapping[str, Any]) -> str:
    declared = schema.get("type")
    if isinstance(declared, list):
        names = [str(name).lower() for name in declared if str(name).lower() != "null"]
        declared = names[0] if names else "null"
    if isinstance(declared, str):
        return declared.lower()  # Gemini's OpenAPI-style schemas spell types in upper case
    if "properties" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    return "string"


def _first_non_null(options: list[Any]) -> Any:
    for option in options:
        if not (isinstance(option, Mapping) and str(option.get("type", "")).lower() == "null"):
            return option
    return options[0]


def _bounds(schema: Mapping[str, Any]) -> tuple[float, float]:
    low: float = -math.inf
    high: float = math.inf
    if isinstance(schema.get("minimum"), (int, float)):
        low = schema["minimum"]
    if isinstance(schema.get("maximum"), (int, float)):
        high = schema["maximum"]
    exclusive_low, exclusive_high = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    step = 1 if _type_of(schema) == "integer" else 0.01
    # Draft 2019+ gives the bound itself; draft 4 gives a boolean that qualifies minimum/maximum.
    if exclusive_low is True:
        low += step
    elif isinstance(exclusive_low, (int, float)):
        low = max(low, exclusive_low + step)
    if exclusive_high is True:
        high -= step
    elif isinstance(exclusive_high, (int, float)):
        high = min(high, exclusive_high - step)
    if math.isinf(low) and math.isinf(high):
        return 0.0, float(_NUMERIC_SPAN)
    if math.isinf(low):
        return high - _NUMERIC_SPAN, high
    if math.isinf(high):
        return low, low + _NUMERIC_SPAN
    return low, high


def _fit(value: float, schema: Mapping[str, Any], low: float, high: float) -> float:
    step = schema.get("multipleOf")
    if isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0:
        return min(max(value, low), high)
    first, last = math.ceil(low / step), math.floor(high / step)
    result = min(max(round(value / step), first), max(first, last)) * step
    return int(result) if float(step).is_integer() else round(result, 10)
