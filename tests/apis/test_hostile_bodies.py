"""Untrusted bodies decode without unbounded recursion, and numbers no answer can hold are the row's error."""

from __future__ import annotations

import json
from typing import Any

import pytest

from aiquery.apis import APIRequest, MalformedResponse, get_adapter
from aiquery.apis.decoding import MAX_TOKEN_COUNT, token_count
from aiquery.apis.error_body import parse_error_body
from aiquery.apis.json_body import MAX_JSON_DEPTH, JSONTooDeep, decode_json_body, json_depth_exceeds

REQUEST = APIRequest(prompt="Hello there!", model="m")


@pytest.mark.parametrize("as_text", [False, True])
def test_a_body_nested_200000_deep_is_refused_not_a_recursion_error(as_text: bool) -> None:
    body: Any = b'{"choices": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    body = body.decode() if as_text else body
    with pytest.raises(JSONTooDeep, match=f"more than {MAX_JSON_DEPTH} deep"):
        decode_json_body(body)


def test_the_depth_bound_is_exact_and_counts_objects_and_arrays() -> None:
    at_bound = '{"a": ' * 256 + "[" * 256 + "1" + "]" * 256 + "}" * 256
    assert decode_json_body(at_bound) is not None
    with pytest.raises(JSONTooDeep):
        decode_json_body("[" + at_bound + "]")


def test_brackets_inside_strings_nest_nothing() -> None:
    text = json.dumps({"content": "[" * 10_000 + '\\"{' * 1000 + "]", "other": ['"[', "\\"] * 400})
    assert not json_depth_exceeds(text) and not json_depth_exceeds(text.encode())
    assert decode_json_body(text)["content"].startswith("[[[")


def test_many_shallow_brackets_are_fine() -> None:
    body = b"[" + b"[1, {}]," * 200_000 + b"[]]"
    assert len(decode_json_body(body)) == 200_001


def test_not_json_stays_a_value_error_that_is_not_malformed_response() -> None:
    with pytest.raises(ValueError) as raised:
        decode_json_body(b"<html>busy</html>")
    assert not isinstance(raised.value, MalformedResponse)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1e400", "embedding value out of float range at data[0].embedding[2]"),
        ("-1e400", "embedding value out of float range at data[0].embedding[2]"),
        ("1" + "0" * 400, "embedding value out of float range at data[0].embedding[2]"),
        ("1e39", "embedding value out of float range at data[0].embedding[2]"),  # past SQL FLOAT
        ("NaN", "embedding value not a number at data[0].embedding[2]"),
        ("Infinity", "embedding value out of float range at data[0].embedding[2]"),
    ],
)
def test_embedding_values_no_float_can_hold_are_malformed(value: str, message: str) -> None:
    body = decode_json_body('{"data": [{"embedding": [0.5, -0.25, ' + value + "]}]}")
    with pytest.raises(MalformedResponse) as raised:
        get_adapter("embeddings").parse_response(body, REQUEST)
    assert str(raised.value) == message


def test_ordinary_embedding_values_pass_unchanged() -> None:
    body = decode_json_body('{"data": [{"embedding": [0.5, -1, 3.4e38, 1e-300]}]}')
    assert get_adapter("embeddings").parse_response(body, REQUEST).value == [0.5, -1.0, 3.4e38, 1e-300]


@pytest.mark.parametrize("count", [10**400, MAX_TOKEN_COUNT + 1, 1e300, float("inf"), -1])
def test_token_counts_past_any_real_count_are_unknown(count: Any) -> None:
    assert token_count({"n": count}, "n") is None


def test_a_deep_error_body_is_read_as_text() -> None:
    body = '{"error": ' + "[" * 100_000 + "]" * 100_000 + "}"
    verdict = parse_error_body(500, body)
    assert verdict.message.startswith('{"error": [[[')
