"""Numbers in configuration: NaN, infinities and negative zero are refused wherever they appear.

TOML writes them literally (``x = nan``, ``x = inf``, ``x = -0.0``) and Python's ``float()`` reads them from
strings (``"nan"``, ``"inf"``). None of them is a usable price, budget, size or timeout: a NaN cost never reaches
a cap (every comparison with NaN is false), an infinite price makes every request refused or every sum infinite,
and ``-0.0`` passes ``>= 0`` checks yet prints as a negative amount. One walk over a whole configuration document
finds them all, before any of its values is used.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from aiquery.errors import ConfigError

__all__ = ["is_plain_number", "number_problem", "refuse_unusable_numbers"]

EXPECTED = "a finite number (NaN, infinities and -0.0 are not amounts: write 0 for nothing)"


def number_problem(value: Any) -> str | None:
    """What makes a float unusable as an amount (``"NaN"``, ``"an infinity"``, ``"negative zero"``), else None.

    Only floats can be any of these; every other value gets None (its type is checked where it is read).
    """
    if not isinstance(value, float):
        return None
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "an infinity"
    if value == 0.0 and math.copysign(1.0, value) < 0:
        return "negative zero"
    return None


def is_plain_number(value: Any) -> bool:
    """An int or a float that is finite and not ``-0.0`` (never a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and number_problem(value) is None


def refuse_unusable_numbers(document: Mapping[str, Any], source: str, *, table: str = "") -> None:
    """Refuse the first NaN, infinity or ``-0.0`` anywhere in ``document``, naming its key and ``source``.

    Args:
        document: a parsed configuration file, or one table of it (then ``table`` names it, like
            ``endpoints.my-model``).
        source: the file it came from (or the call that gave it), for the message.
        table: the table ``document`` is, '' for a whole file.

    Raises:
        ConfigError: e.g. ``conf/aiquery.toml: [endpoints.e] price.input_per_million = nan is invalid; ...``.
    """
    found = _first_unusable(document, ())
    if found is None:
        return
    path, value = found
    if table:
        header, rest = table, path
    else:
        # [endpoints.<name>] tables are two levels deep, every other table one.
        depth = 2 if path[0] == "endpoints" and len(path) > 2 else 1
        header = ".".join(path[:depth]) if len(path) > depth else ""
        rest = path[depth:] if header else path
    key = ".".join(rest)
    where = f"[{header}] {key}" if header else key
    raise ConfigError(f"{source}: {where} = {value!r} is invalid; expected {EXPECTED}")


def _first_unusable(value: Any, path: tuple[str, ...]) -> tuple[tuple[str, ...], float] | None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            found = _first_unusable(item, (*path, str(key)))
            if found is not None:
                return found
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _first_unusable(item, (*path[:-1], f"{path[-1] if path else ''}[{index}]"))
            if found is not None:
                return found
    elif number_problem(value) is not None:
        return path, value
    return None
