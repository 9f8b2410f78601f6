"""The task functions' literal checks, prompts and answer reading (pure Python, without Spark)."""

from __future__ import annotations

import json

import pytest

from aiquery.ai_functions import definitions as tasks
from aiquery.ai_functions import json_forms
from aiquery.errors import ArgumentError


def test_classify_checks_its_labels_and_reads_structured_or_loose_answers() -> None:
    with pytest.raises(ArgumentError, match="2 to 20 labels, not 1"):
        tasks.classify(["only"])
    with pytest.raises(ArgumentError, match="2 to 20 labels, not 21"):
        tasks.classify([f"l{i}" for i in range(21)])
    task = tasks.classify(["urgent", "not urgent"])
    assert task.response_format is not None and task.response_format.schema is not None
    assert task.response_format.schema["properties"]["label"]["enum"] == ["urgent", "not urgent"]
    assert task.value(json.dumps({"label": "not urgent"})) == "not urgent"
    assert task.value("Not urgent.") == "not urgent"
    assert task.value("no idea") is None
    assert '"urgent", "not urgent"' in task.prompt("My password leaked")


def test_summarize_validates_max_words() -> None:
    assert "at most 50 words" in tasks.summarize().prompt("x")
    assert "at most" not in tasks.summarize(0).prompt("x")
    for bad in (-1, 2.5, True, "10"):
        with pytest.raises(ArgumentError) as raised:
            tasks.summarize(bad)
        assert raised.value.error_class == "AI_FUNCTION_INVALID_MAX_WORDS" and raised.value.sqlstate == "22032"


def test_extract_asks_for_its_fields_and_returns_them() -> None:
    task = tasks.extract(["person", "location"])
    assert task.result_sql == "STRUCT<`person`: STRING, `location`: STRING>"
    assert task.value('{"person": "John Doe", "location": null}') == {"person": "John Doe", "location": None}
    assert task.value("nothing") is None


def test_sentiment_and_the_plain_text_tasks() -> None:
    assert tasks.sentiment().value('{"label": "positive"}') == "positive"
    assert tasks.sentiment().value("It is Mixed") == "mixed"
    assert tasks.translate("es").value(" Hola ") == "Hola"
    assert tasks.mask(["person", "email"]).prompt("John").count(tasks.MASK) == 1
    with pytest.raises(ArgumentError):
        tasks.translate(" ")


def test_filter_answers_true_false_or_null() -> None:
    task = tasks.filter_rows("mentions a refund")
    assert task.result_sql == "BOOLEAN" and "mentions a refund" in task.prompt("text")
    assert [task.value(answer) for answer in ("true", '{"label": "false"}', "Yes.", "NO", "perhaps", "yes or no")] == [
        "true",
        "false",
        "true",
        "false",
        None,
        None,
    ]
    with pytest.raises(ArgumentError) as raised:
        tasks.filter_rows("  ")
    assert raised.value.error_class == "INVALID_PARAMETER_VALUE.AI_FILTER_CONDITION"


def test_cosine_of_embeddings() -> None:
    assert tasks.cosine([0.1, 0.2, 0.3], [0.1, 0.2, 0.3]) == 1.0
    assert tasks.cosine([1.0, 0.0], [0.0, 2.0]) == 0.0
    assert tasks.cosine([1.0, 1.0], [-1.0, -1.0]) == pytest.approx(-1.0)
    assert tasks.cosine([0.0, 0.0], [0.0, 0.0]) is None  # no direction: no similarity
    assert tasks.cosine([1.0], [1.0, 0.0]) is None  # vectors of different models
    assert tasks.similarity().pairs and tasks.similarity().result_sql == "FLOAT"


def test_the_json_form_of_classify_answers_a_variant_shape() -> None:
    single = json_forms.classify_json('{"urgent": "needs action today", "later": ""}')
    assert single.variant and "needs action today" in single.instruction
    assert single.value("URGENT!") == {"response": ["urgent"], "error_message": None}
    assert single.value("no idea")["response"] is None
    multi = json_forms.classify_json(
        '["spam", "phishing", "ham"]', {"multilabel": "true", "instructions": "Be strict."}
    )
    assert multi.response_format is not None and multi.response_format.schema is not None
    assert multi.response_format.schema["properties"]["labels"]["type"] == "array"
    assert multi.value('{"labels": ["Phishing", "spam"]}') == {"response": ["phishing", "spam"], "error_message": None}
    assert multi.value("It is spam, and phishing too.")["response"] == ["spam", "phishing"]
    for labels in ('["a"]', '["a", "a"]', "[1, 2]", "nope", '["' + "x" * 101 + '", "b"]'):
        with pytest.raises(ArgumentError):
            json_forms.classify_json(labels)
    with pytest.raises(ArgumentError, match="version"):
        json_forms.classify_json('["a", "b"]', {"version": "9"})


def test_the_json_form_of_extract_builds_a_schema_and_keeps_json_types() -> None:
    task = json_forms.extract_json(
        '{"person": {"type": "string", "description": "a full name"}, "age": "integer",'
        ' "address": {"type": "object", "properties": {"city": "string"}},'
        ' "tags": {"type": "array", "items": "string"}}'
    )
    assert task.response_format is not None and task.response_format.schema is not None
    properties = task.response_format.schema["properties"]
    assert properties["age"] == {"type": ["integer", "null"]}
    assert properties["address"]["properties"] == {"city": {"type": ["string", "null"]}}
    assert "a full name" in task.instruction
    answer = 'Found: {"Person": "Ann Lee", "age": 41, "address": {"city": "Oslo"}, "tags": ["a"]}'
    assert task.value(answer)["response"] == {
        "person": "Ann Lee",
        "age": 41,
        "address": {"city": "Oslo"},
        "tags": ["a"],
    }
    assert json_forms.extract_json('["person"]').value("none")["error_message"].startswith("the answer holds no JSON")
    too_deep: str = '"string"'
    for _ in range(13):
        too_deep = '{"type": "object", "properties": {"x": ' + too_deep + "}}"
    for schema in ("[]", '{"a": "date"}', '{"a": {"type": "enum"}}', '{"x": ' + too_deep + "}"):
        with pytest.raises(ArgumentError):
            json_forms.extract_json(schema)
