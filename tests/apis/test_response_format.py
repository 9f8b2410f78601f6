"""responseFormat: the JSON forms, DDL detection, and DDL (as Spark type JSON) to JSON Schema."""

from __future__ import annotations

from typing import Any

import pytest

from aiquery.apis import (
    APIRequest,
    DDLResponseFormat,
    ResponseFormat,
    get_adapter,
    parse_response_format,
    prepare_call_options,
    response_format_from_spark_type,
)
from aiquery.errors import ArgumentError

JSON_STRING = "AI_FUNCTION_UNSUPPORTED_RESPONSE_FORMAT.JSON_STRING"
DDL_STRING = "AI_FUNCTION_UNSUPPORTED_RESPONSE_FORMAT.DDL_STRING"
REVIEW_SCHEMA = {"type": "object", "properties": {"stars": {"type": "integer"}}, "required": ["stars"]}


def _field(name: str, spark_type: Any, comment: str | None = None) -> dict[str, Any]:
    metadata = {"comment": comment} if comment else {}
    return {"name": name, "type": spark_type, "nullable": True, "metadata": metadata}


def _struct(*fields: dict[str, Any]) -> dict[str, Any]:
    return {"type": "struct", "fields": list(fields)}


# ---- JSON forms --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"type":"text"}', ResponseFormat(kind="text")),
        ('  {"type": "json_object"}\n', ResponseFormat(kind="json_object")),
        (
            '{"type":"json_schema","json_schema":{"name":"review","schema":'
            '{"type":"object","properties":{"stars":{"type":"integer"}},"required":["stars"]},"strict":true}}',
            ResponseFormat(kind="json_schema", name="review", schema=REVIEW_SCHEMA, strict=True),
        ),
        (
            '{"type":"json_schema","json_schema":{"schema":{"type":"object","properties":{"stars":'
            '{"type":"integer"}},"required":["stars"]}}}',
            ResponseFormat(kind="json_schema", name="response", schema=REVIEW_SCHEMA, strict=False),
        ),
    ],
)
def test_json_forms(text: str, expected: ResponseFormat) -> None:
    assert parse_response_format(text) == expected


def test_unsupported_type_uses_databricks_wording() -> None:
    text = '{"type":"xml"}'
    with pytest.raises(ArgumentError) as raised:
        parse_response_format(text)

    assert raised.value.error_class == JSON_STRING
    assert raised.value.sqlstate == "0A000"
    assert raised.value.detail == (
        'AI function: "ai_query" does not support the type "xml" of the following response format: '
        '"{"type":"xml"}". Supported types of the response format are: text, json_object, json_schema.'
    )


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"type": "text"', "not valid JSON"),
        ("[1, 2]", 'must be a JSON object with a "type"'),
        ('"json_object"', 'must be a JSON object with a "type"'),
        ("42", 'must be a JSON object with a "type"'),
        ('{"kind": "text"}', 'the type "null"'),
        ('{"type": 5}', 'the type "5"'),
        ('{"type": "json_schema"}', 'needs "json_schema": {"name": ..., "schema": {...}}'),
        ('{"type": "json_schema", "json_schema": {"name": "x"}}', 'needs "json_schema"'),
        ('{"type": "json_schema", "json_schema": {"schema": {}, "strict": "yes"}}', '"strict" a boolean'),
        ('{"type": "json_schema", "json_schema": {"schema": {}, "name": ""}}', '"name" must be a non-empty'),
    ],
)
def test_bad_json_forms(text: str, reason: str) -> None:
    with pytest.raises(ArgumentError) as raised:
        parse_response_format(text)

    assert raised.value.error_class == JSON_STRING
    assert reason in raised.value.detail


@pytest.mark.parametrize(
    "text",
    ["STRUCT<review: STRUCT<product: STRING, rating: INT>>", "review STRUCT<stars: INT>", "string"],
)
def test_text_that_is_not_json_is_ddl(text: str) -> None:
    assert parse_response_format(f" {text} ") == DDLResponseFormat(ddl=text)


def test_empty_response_format() -> None:
    with pytest.raises(ArgumentError) as raised:
        parse_response_format("   ")
    assert raised.value.error_class == DDL_STRING
    assert "empty" in raised.value.detail


# ---- DDL, as Spark's DataType.jsonValue() ------------------------------------------------------------------

REVIEW_TYPE = _struct(
    _field(
        "review",
        _struct(
            _field("product", "string"),
            _field("rating", "integer", comment="1 to 5 stars"),
            _field("price", "decimal(10,2)"),
            _field("tags", {"type": "array", "elementType": "string", "containsNull": True}),
            _field("reviewed_on", "date"),
            _field("seen_at", "timestamp"),
            _field("verified", "boolean"),
            _field("score", "double"),
            _field("votes", "long"),
            _field("code", "varchar(3)"),
            _field(
                "author",
                _struct(_field("name", "string"), _field("age", "short")),
            ),
        ),
    )
)

REVIEW_JSON_SCHEMA = {
    "type": "object",
    "properties": {
        "product": {"type": "string"},
        "rating": {"type": "integer", "description": "1 to 5 stars"},
        "price": {"type": "number"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "reviewed_on": {"type": "string", "format": "date"},
        "seen_at": {"type": "string", "format": "date-time"},
        "verified": {"type": "boolean"},
        "score": {"type": "number"},
        "votes": {"type": "integer"},
        "code": {"type": "string"},
        "author": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
            "required": ["name", "age"],
            "additionalProperties": False,
        },
    },
    "required": [
        "product",
        "rating",
        "price",
        "tags",
        "reviewed_on",
        "seen_at",
        "verified",
        "score",
        "votes",
        "code",
        "author",
    ],
    "additionalProperties": False,
}


def test_one_field_struct_becomes_a_named_strict_schema() -> None:
    fmt = response_format_from_spark_type(REVIEW_TYPE, "STRUCT<review: STRUCT<...>>")

    assert fmt == ResponseFormat(kind="json_schema", name="review", schema=REVIEW_JSON_SCHEMA, strict=True)


def test_a_field_that_is_not_a_struct_is_wrapped_in_an_object() -> None:
    array = {"type": "array", "elementType": "string", "containsNull": True}

    fmt = response_format_from_spark_type(_struct(_field("tags", array)), "STRUCT<tags: ARRAY<STRING>>")

    assert fmt.name == "tags"
    assert fmt.strict is True
    assert fmt.schema == {
        "type": "object",
        "properties": {"tags": {"type": "array", "items": {"type": "string"}}},
        "required": ["tags"],
        "additionalProperties": False,
    }


def test_a_map_becomes_an_open_object_and_turns_strict_off() -> None:
    counts = {"type": "map", "keyType": "string", "valueType": "integer", "valueContainsNull": True}

    fmt = response_format_from_spark_type(_struct(_field("counts", counts)), "STRUCT<counts: MAP<STRING, INT>>")

    assert fmt.strict is False
    assert fmt.schema == {
        "type": "object",
        "properties": {"counts": {"type": "object", "additionalProperties": {"type": "integer"}}},
        "required": ["counts"],
        "additionalProperties": False,
    }


def test_schema_name_keeps_to_openai_characters() -> None:
    fmt = response_format_from_spark_type(_struct(_field("my review!", _struct())), "STRUCT<`my review!`: ...>")
    assert fmt.name == "my_review_"


@pytest.mark.parametrize(
    ("type_json", "reason"),
    [
        (_struct(_field("a", "string"), _field("b", "integer")), "exactly one field, but it has 2"),
        (_struct(), "exactly one field, but it has 0"),
        ("string", "must be a STRUCT with exactly one field, not STRING"),
        ({"type": "array", "elementType": "string", "containsNull": True}, "not ARRAY"),
        (_struct(_field("doc", _struct(_field("blob", "binary")))), 'The type BINARY of "doc.blob"'),
        (_struct(_field("doc", _struct(_field("v", "variant")))), 'The type VARIANT of "doc.v"'),
        (
            _struct(_field("m", {"type": "map", "keyType": "integer", "valueType": "string"})),
            'The MAP at "m" must have STRING keys',
        ),
    ],
)
def test_unsupported_ddl(type_json: Any, reason: str) -> None:
    with pytest.raises(ArgumentError) as raised:
        response_format_from_spark_type(type_json, "THE DDL")

    assert raised.value.error_class == DDL_STRING
    assert raised.value.sqlstate == "0A000"
    assert raised.value.detail.startswith(
        'AI function: "ai_query" does not support the following response format: "THE DDL". '
    )
    assert reason in raised.value.detail


# ---- embeddings take no response format --------------------------------------------------------------------


def test_embeddings_reject_a_response_format() -> None:
    with pytest.raises(ArgumentError) as raised:
        prepare_call_options("embeddings", None, ResponseFormat(kind="text"), endpoint="my-embed")
    assert raised.value.error_class == "AI_FUNCTION_UNSUPPORTED_RESPONSE_FORMAT"
    assert raised.value.sqlstate == "0A000"
    assert '"embeddings" API' in raised.value.detail

    request = APIRequest(prompt="p", model="m", response_format=ResponseFormat(kind="json_object"))
    with pytest.raises(ArgumentError):
        get_adapter("embeddings").build_body(request)


def test_chat_endpoints_accept_a_response_format() -> None:
    params = prepare_call_options("chat", {"max_tokens": 8}, ResponseFormat(kind="json_object"))
    assert params == {"max_tokens": 8}
