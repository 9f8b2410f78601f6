"""Loose answers mapped to labels and fields, or to NULL when they cannot be mapped safely."""

from __future__ import annotations

import pytest

from aiquery.ai_functions.answer_types import SENTIMENTS, extract_fields, match_label

LABELS = ("urgent", "not urgent")


@pytest.mark.parametrize(
    ("answer", "label"),
    [
        ("urgent", "urgent"),
        ("Urgent.", "urgent"),
        ('"NOT URGENT"', "not urgent"),
        ("The ticket is not urgent.", "not urgent"),
        ("**Urgent** - the password leaked", "urgent"),
        ("Label: not  urgent", "not urgent"),
        ("either urgent or not urgent", None),
        ("urgently needed", None),
        ("I cannot tell", None),
        ("", None),
        (None, None),
    ],
)
def test_a_label_is_read_only_when_exactly_one_can_be(answer: str | None, label: str | None) -> None:
    assert match_label(answer, LABELS) == label


def test_sentiment_answers() -> None:
    assert match_label("Positive", SENTIMENTS) == "positive"
    assert match_label("The sentiment here is mixed", SENTIMENTS) == "mixed"
    assert match_label("positive and negative", SENTIMENTS) is None


def test_fields_are_read_from_a_json_object_anywhere_in_the_answer() -> None:
    answer = 'Here you go: {"Person": "John Doe", "location": ["New York", "Boston"], "age": 41} Done.'
    assert extract_fields(answer, ["person", "location", "organization", "age"]) == {
        "person": "John Doe",
        "location": "New York",
        "organization": None,
        "age": "41",
    }
    assert extract_fields("no json {here", ["person"]) is None
    assert extract_fields('{"first name": "Ada"}', ["first_name"]) == {"first_name": "Ada"}
