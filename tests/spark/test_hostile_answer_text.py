"""An answer's text that is hostile to the parsers of returnType and the task functions is that row's error (or
NULL), never an exception that fails the query. Pure functions: no Spark session needed."""

from __future__ import annotations

import pytest

from aiquery.ai_functions.answer_types import extract_fields, first_object
from aiquery.spark.convert import convert_answer

DEEP = "[" * 200_000 + "]" * 200_000
DEEP_OBJECT = '{"a": ' * 100_000 + "1" + "}" * 100_000


@pytest.mark.parametrize(
    ("text", "type_json", "message"),
    [
        (DEEP, {"type": "array", "elementType": "integer", "containsNull": True}, "not JSON"),
        ("1" + "0" * 400, "double", "out of range for DOUBLE"),
        ("1" + "0" * 400, "long", "out of range for LONG"),
        ("9223372036854775808", "long", "out of range for LONG"),
        ("40000", "short", "out of range for SHORT"),
        ("1e400", "long", "expected a whole number"),
        ("NaN", "integer", "expected a whole number"),
    ],
)
def test_a_hostile_answer_for_a_return_type_is_a_value_error(text: str, type_json: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        convert_answer(text, type_json)


def test_numbers_in_range_still_convert() -> None:
    assert convert_answer("9223372036854775807", "long") == 2**63 - 1
    assert convert_answer("-128", "byte") == -128
    assert convert_answer("3.0", "integer") == 3
    assert convert_answer("1" + "0" * 300, "double") == 1e300


def test_a_deep_extraction_answer_holds_no_object_rather_than_raising() -> None:
    assert first_object("Here it is: " + DEEP_OBJECT) is None
    assert extract_fields(DEEP_OBJECT, ["a"]) is None
    assert first_object('Here: {"a": {"b": 1}} done') == {"a": {"b": 1}}
