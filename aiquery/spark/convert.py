"""Convert a JSON answer into the Python value Spark expects for a ``returnType``.

Types are Spark's ``jsonValue()`` form: a string for atomic types (``"integer"``, ``"decimal(10,2)"``) and a
dict for arrays, maps and structs. Fields missing from the answer become NULL, as ``from_json`` does.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from typing import Any

from aiquery.apis.json_body import decode_json_body

__all__ = ["convert_answer"]

_INTEGERS = {"byte", "short", "integer", "long"}
_INTEGER_BITS = {"byte": 8, "short": 16, "integer": 32, "long": 64}
_FLOATS = {"float", "double"}


def convert_answer(text: str, type_json: Any) -> Any:
    """Parse ``text`` as JSON and convert it to ``type_json``.

    Raises:
        ValueError: the text is not JSON, or does not fit the type (the message names the path).
    """
    try:
        value = decode_json_body(text)
    except ValueError:
        raise ValueError(
            f"the answer is not JSON, so it cannot be parsed into the returnType: {text[:200]!r}"
        ) from None
    return _convert(value, type_json, "$")


def _convert(value: Any, type_json: Any, path: str) -> Any:
    if value is None:
        return None
    if isinstance(type_json, dict):
        kind = type_json["type"]
        if kind == "struct":
            if not isinstance(value, dict):
                raise ValueError(f"{path}: expected an object, found {_show(value)}")
            return {
                f["name"]: _convert(value.get(f["name"]), f["type"], f"{path}.{f['name']}") for f in type_json["fields"]
            }
        if kind == "array":
            if not isinstance(value, list):
                raise ValueError(f"{path}: expected an array, found {_show(value)}")
            return [_convert(item, type_json["elementType"], f"{path}[{i}]") for i, item in enumerate(value)]
        if kind == "map":
            if not isinstance(value, dict):
                raise ValueError(f"{path}: expected an object, found {_show(value)}")
            return {str(k): _convert(v, type_json["valueType"], f"{path}.{k}") for k, v in value.items()}
        raise ValueError(f"{path}: unsupported type {kind}")
    return _atomic(value, str(type_json), path)


def _atomic(value: Any, kind: str, path: str) -> Any:
    if kind == "string" or kind.startswith(("varchar", "char")):
        return value if isinstance(value, str) else json.dumps(value)
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        raise ValueError(f"{path}: expected true or false, found {_show(value)}")
    if kind in _INTEGERS:
        whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        if isinstance(value, bool) or not whole:
            raise ValueError(f"{path}: expected a whole number, found {_show(value)}")
        bound = 1 << (_INTEGER_BITS[kind] - 1)
        if not -bound <= value < bound:  # Arrow would refuse it, failing the whole batch
            raise ValueError(f"{path}: {_show(value)} is out of range for {kind.upper()}")
        return int(value)
    if kind in _FLOATS:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{path}: expected a number, found {_show(value)}")
        try:
            return float(value)
        except OverflowError:  # an integer of hundreds of digits
            raise ValueError(f"{path}: {_show(value)} is out of range for {kind.upper()}") from None
    if kind.startswith("decimal"):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError(f"{path}: expected a number, found {_show(value)}")
        try:
            return decimal.Decimal(str(value))
        except decimal.InvalidOperation:
            raise ValueError(f"{path}: expected a decimal number, found {_show(value)}") from None
    if kind == "date":
        return dt.date.fromisoformat(_text(value, path))
    if kind.startswith("timestamp"):
        return dt.datetime.fromisoformat(_text(value, path).replace("Z", "+00:00"))
    raise ValueError(f"{path}: unsupported type {kind}")


def _text(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{path}: expected an ISO-8601 string, found {_show(value)}")
    return value


def _show(value: Any) -> str:
    return json.dumps(value)[:80]
