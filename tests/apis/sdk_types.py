"""Check a request body against a provider SDK's own request type, strictly: every key known, every value of
its declared type, at every level (pydantic would ignore unknown keys of a TypedDict and validate iterables
lazily). Test-only: the SDKs are test dependencies, never aiquery's."""

from __future__ import annotations

import collections.abc
import types
import typing
from typing import Any, Literal, NotRequired, Required, Union

import typing_extensions

_SCALARS: dict[type, tuple[type, ...]] = {
    str: (str,),
    int: (int,),
    float: (int, float),
    bool: (bool,),
    object: (object,),
}


def check(expected: Any, value: Any, path: str = "$") -> None:
    """Raise AssertionError naming the first path where ``value`` does not fit the type ``expected``."""
    problem = _problem(expected, value, path)
    if problem is not None:
        raise AssertionError(problem)


def _problem(expected: Any, value: Any, path: str) -> str | None:
    origin = typing.get_origin(expected)
    if origin in (typing.Annotated, Required, NotRequired):
        return _problem(typing.get_args(expected)[0], value, path)
    if expected is Any or expected is object:
        return None
    if expected is None or expected is type(None):
        return None if value is None else f"{path}: expected null, found {value!r}"
    if origin in (Union, types.UnionType):
        problems = [_problem(option, value, path) for option in typing.get_args(expected)]
        if any(found is None for found in problems):
            return None
        # The option that got furthest into the value says most about what is wrong.
        return max((found for found in problems if found), key=lambda found: len(found.split(": ")[0]))
    if origin is Literal:
        allowed = typing.get_args(expected)
        return None if value in allowed else f"{path}: {value!r} is not one of {allowed}"
    if typing_extensions.is_typeddict(expected):
        return _typed_dict_problem(expected, value, path)
    if origin in (list, collections.abc.Iterable, collections.abc.Sequence):
        if not isinstance(value, list):
            return f"{path}: expected a list, found {type(value).__name__}"
        (item,) = typing.get_args(expected) or (Any,)
        for index, element in enumerate(value):
            found = _problem(item, element, f"{path}[{index}]")
            if found:
                return found
        return None
    if origin in (dict, collections.abc.Mapping):
        if not isinstance(value, dict):
            return f"{path}: expected an object, found {type(value).__name__}"
        arguments = typing.get_args(expected)
        if arguments:
            for key, element in value.items():
                found = _problem(arguments[1], element, f"{path}.{key}")
                if found:
                    return found
        return None
    if isinstance(expected, type) and expected in _SCALARS:
        if isinstance(value, bool) and expected is not bool:
            return f"{path}: expected {expected.__name__}, found a boolean"
        if not isinstance(value, _SCALARS[expected]):
            return f"{path}: expected {expected.__name__}, found {value!r}"
        return None
    if isinstance(expected, type) and hasattr(expected, "model_validate"):
        try:
            expected.model_validate(value)
        except Exception as error:  # pydantic's ValidationError: say where
            return f"{path}: {error}"
        return None
    return f"{path}: a JSON body cannot hold a {expected!r}"


def _typed_dict_problem(expected: Any, value: Any, path: str) -> str | None:
    if not isinstance(value, dict):
        return f"{path}: expected an object ({expected.__name__}), found {type(value).__name__}"
    hints = typing_extensions.get_type_hints(expected, include_extras=True)
    fields = {_wire_name(name, hint): hint for name, hint in hints.items()}
    unknown = sorted(set(value) - set(fields))
    if unknown:
        return f"{path}: {expected.__name__} has no key {unknown[0]!r}"
    required = {_wire_name(name, hint) for name, hint in hints.items() if _required(hint, expected.__total__)}
    missing = sorted(required - set(value))
    if missing:
        return f"{path}: {expected.__name__} needs the key {missing[0]!r}"
    for key, element in value.items():
        found = _problem(fields[key], element, f"{path}.{key}")
        if found:
            return found
    return None


def _required(hint: Any, total: bool) -> bool:
    while typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    origin = typing.get_origin(hint)
    return origin is Required or (total and origin is not NotRequired)


def _wire_name(name: str, hint: Any) -> str:
    """The key on the wire: a PropertyInfo alias in the hint's metadata, else the field's name."""
    while typing.get_origin(hint) in (Required, NotRequired):
        hint = typing.get_args(hint)[0]
    if typing.get_origin(hint) is typing.Annotated:
        for meta in hint.__metadata__:
            alias = getattr(meta, "alias", None)
            if isinstance(alias, str):
                return alias
    return name
