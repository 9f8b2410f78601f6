"""What each task function asks a chat endpoint, with what structured output, and how its answer becomes a value.

A :class:`Task` is built at analysis time from the function's literal arguments (labels, ``max_words``, the target
language), validated there, and shipped to the workers like ai_query's call plan. Per row it makes the prompt from
the content and reads the answer. The structured output it asks for (an enum for labels and sentiment, an object
of string fields for extraction) goes through the same adapters as ai_query's ``responseFormat``, so every API
with structured output gets its own spelling; an answer that still does not match is mapped by
:mod:`.answers` where that is safe, else NULL.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiquery.apis.base import ResponseFormat
from aiquery.apis.json_body import decode_json_body
from aiquery.errors import ArgumentError
from aiquery.tasks.answers import SENTIMENTS, asked_fields, extract_fields, first_object, match_label, named_labels

__all__ = [
    "MASK",
    "Task",
    "aggregate",
    "classify",
    "classify_json",
    "extract",
    "extract_json",
    "filter_rows",
    "fix_grammar",
    "gen",
    "mask",
    "sentiment",
    "similarity",
    "summarize",
    "translate",
]

MASK = "[MASKED]"
MIN_LABELS, MAX_LABELS = 2, 20
"""``ai_classify``'s ARRAY form takes 2 to 20 labels (Databricks)."""
DEFAULT_MAX_WORDS = 50


@dataclass(frozen=True)
class Task:
    """One task function's call, its literal arguments applied.

    Attributes:
        function: the SQL name (the usage table's ``function_name``).
        instruction: what the model is told, before the content.
        response_format: the structured output to ask for, or None for plain text.
        labels: the labels an answer must be one of (classify, sentiment, filter).
        synonyms: other words that name a label (filter: "yes" names "true").
        fields: the fields an answer must have (extract).
        result_sql: the function's SQL type.
        pairs: the function takes two texts per row and compares their embeddings (similarity).
        variant: the JSON form of ai_classify or ai_extract: the value is ``{"response": ..., "error_message":
            ...}``, which the SQL function returns as VARIANT.
        multilabel: the JSON form of ai_classify may answer several labels.
        aggregate: ai_agg's instruction: the function reduces a group of rows to one answer
            (:mod:`aiquery.tasks.aggregate`), and ``instruction`` is empty.
    """

    function: str
    instruction: str
    response_format: ResponseFormat | None = None
    labels: tuple[str, ...] = ()
    synonyms: tuple[tuple[str, str], ...] = ()
    fields: tuple[str, ...] = ()
    result_sql: str = "STRING"
    pairs: bool = False
    variant: bool = False
    multilabel: bool = False
    aggregate: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def prompt(self, content: str) -> str:
        """The request's prompt for one row's content."""
        return f"{self.instruction}\n\n{content}"

    def response_format_json(self) -> str | None:
        """The structured output to ask for, as ai_query's ``responseFormat`` JSON (None: plain text)."""
        if self.response_format is None or self.response_format.schema is None:
            return None
        fmt = self.response_format
        schema = {"name": fmt.name, "schema": fmt.schema, "strict": True}
        return json.dumps({"type": "json_schema", "json_schema": schema})

    def value(self, answer: str) -> Any:
        """The function's value for an answer (None when it cannot be read safely)."""
        if self.variant:
            return self._variant_value(answer)
        if self.labels:
            named = dict(self.synonyms)
            label = match_label(_field(answer, "label"), (*self.labels, *named))
            return named.get(label, label) if label is not None else None
        if self.fields:
            return extract_fields(answer, self.fields)
        return answer.strip()

    def _variant_value(self, answer: str) -> dict[str, Any]:
        if self.labels:
            if self.multilabel:
                data = first_object(answer)
                listed = data.get("labels") if data is not None else None
                texts = [str(item) for item in listed] if isinstance(listed, list) else [answer]
                found = [label for text in texts for label in named_labels(text, self.labels)]
                chosen = list(dict.fromkeys(found))
            else:
                label = match_label(_field(answer, "label"), self.labels)
                chosen = [label] if label is not None else []
            if not chosen:
                return {"response": None, "error_message": f"the answer names none of the labels: {answer[:200]!r}"}
            return {"response": chosen, "error_message": None}
        data = first_object(answer)
        if data is None:
            return {"response": None, "error_message": f"the answer holds no JSON object: {answer[:200]!r}"}
        return {"response": asked_fields(data, self.fields), "error_message": None}


def _field(answer: str, name: str) -> str:
    """``answer[name]`` when the answer is a JSON object holding it (structured output), else the answer itself."""
    try:
        data = decode_json_body(answer)
    except ValueError:  # not JSON, or nested past any real answer
        return answer
    if isinstance(data, dict) and isinstance(data.get(name), str):
        return str(data[name])
    return answer


def _enum_format(labels: Sequence[str]) -> ResponseFormat:
    schema = {
        "type": "object",
        "properties": {"label": {"type": "string", "enum": list(labels)}},
        "required": ["label"],
        "additionalProperties": False,
    }
    return ResponseFormat(kind="json_schema", name="label", schema=schema, strict=True)


def _require_labels(labels: Sequence[Any], function: str, error: str, example: str) -> None:
    if not labels or any(not isinstance(label, str) or not label.strip() for label in labels):
        raise ArgumentError(
            f"INVALID_PARAMETER_VALUE.{error}",
            f"{function}'s labels must be a non-empty ARRAY of non-empty strings, like {example}.",
            sqlstate="22023",
        )


def sentiment() -> Task:
    return Task(
        "ai_analyze_sentiment",
        "Classify the sentiment of the text below as exactly one of: positive, negative, neutral, mixed. "
        "Answer with that one word.",
        _enum_format(SENTIMENTS),
        labels=SENTIMENTS,
    )


def classify(labels: Sequence[Any]) -> Task:
    """``ai_classify(content, ARRAY(...))``.

    Raises:
        ArgumentError: fewer than 2 or more than 20 labels, or a label that is not a non-empty string.
    """
    if not MIN_LABELS <= len(labels) <= MAX_LABELS:
        raise ArgumentError(
            "INVALID_PARAMETER_VALUE.AI_CLASSIFY_LABELS",
            f"ai_classify takes {MIN_LABELS} to {MAX_LABELS} labels, not {len(labels)}.",
            sqlstate="22023",
        )
    if any(not isinstance(label, str) or not label.strip() for label in labels) or len(set(labels)) != len(labels):
        raise ArgumentError(
            "INVALID_PARAMETER_VALUE.AI_CLASSIFY_LABELS",
            "ai_classify's labels must be distinct, non-empty strings.",
            sqlstate="22023",
        )
    listed = ", ".join(json.dumps(label) for label in labels)
    return Task(
        "ai_classify",
        f"Classify the text below into exactly one of these labels: {listed}. Answer with the label only.",
        _enum_format(labels),
        labels=tuple(labels),
    )


def extract(labels: Sequence[Any]) -> Task:
    """``ai_extract(content, ARRAY(...))``: a STRUCT of one STRING field per label."""
    _require_labels(labels, "ai_extract", "AI_EXTRACT_LABELS", "ARRAY('person', 'company')")
    schema = {
        "type": "object",
        "properties": {label: {"type": ["string", "null"]} for label in labels},
        "required": list(labels),
        "additionalProperties": False,
    }
    names = ", ".join(json.dumps(label) for label in labels)
    return Task(
        "ai_extract",
        f"Extract from the text below one value for each of these entity types: {names}. Answer with a JSON "
        "object with exactly these keys; use null for an entity that is not in the text.",
        ResponseFormat(kind="json_schema", name="entities", schema=schema, strict=True),
        fields=tuple(labels),
        result_sql="STRUCT<" + ", ".join(f"`{label.replace('`', '``')}`: STRING" for label in labels) + ">",
    )


def summarize(max_words: Any = DEFAULT_MAX_WORDS) -> Task:
    """``ai_summarize(content[, max_words])``; 0 means no limit.

    Raises:
        ArgumentError: ``AI_FUNCTION_INVALID_MAX_WORDS`` (22032) for a negative or non-integral value.
    """
    if isinstance(max_words, bool) or not isinstance(max_words, int) or max_words < 0:
        raise ArgumentError(
            "AI_FUNCTION_INVALID_MAX_WORDS",
            f"The maximum number of words must be a non-negative integer, but got {max_words!r}.",
            sqlstate="22032",
        )
    limit = f" in at most {max_words} words" if max_words else ""
    return Task("ai_summarize", f"Summarize the text below{limit}. Answer with the summary only.")


def _require_text(value: Any, function: str, argument: str, error: str, example: str) -> str:
    """``value`` stripped, or ``INVALID_PARAMETER_VALUE.<error>`` (22023) when it is not a non-empty string."""
    if not isinstance(value, str) or not value.strip():
        message = f"{function}'s {argument} must be a non-empty STRING literal, like {example}."
        raise ArgumentError(f"INVALID_PARAMETER_VALUE.{error}", message, sqlstate="22023")
    return value.strip()


def translate(to_lang: str) -> Task:
    language = _require_text(to_lang, "ai_translate", "to_lang", "AI_TRANSLATE_LANGUAGE", "'es' or 'Spanish'")
    return Task("ai_translate", f"Translate the text below into {language}. Answer with the translation only.")


def fix_grammar() -> Task:
    return Task(
        "ai_fix_grammar",
        "Correct the grammar of the text below, changing nothing else. Answer with the corrected text only.",
    )


def mask(labels: Sequence[Any]) -> Task:
    _require_labels(labels, "ai_mask", "AI_MASK_LABELS", "ARRAY('person', 'email')")
    kinds = ", ".join(labels)
    return Task(
        "ai_mask",
        f"Repeat the text below, replacing every piece of information of these types with {MASK}: {kinds}. "
        "Answer with the masked text only.",
        extra={"labels": tuple(labels)},
    )


def gen() -> Task:
    return Task("ai_gen", "Answer the request below.")


def filter_rows(condition: Any) -> Task:
    """``ai_filter(content, condition)``: BOOLEAN, whether the condition holds for the content (aiquery's own,
    after Snowflake's AI_FILTER and BigQuery's AI.IF).

    Raises:
        ArgumentError: the condition is not a non-empty string.
    """
    condition = _require_text(condition, "ai_filter", "condition", "AI_FILTER_CONDITION", "'mentions a refund'")
    return Task(
        "ai_filter",
        f"Decide whether this condition holds for the text below: {condition}\n"
        "Answer true if it holds and false if it does not.",
        _enum_format(FILTER_LABELS),
        labels=FILTER_LABELS,
        synonyms=(("yes", "true"), ("no", "false")),
        result_sql="BOOLEAN",
    )


FILTER_LABELS = ("true", "false")


def similarity() -> Task:
    """``ai_similarity(expr1, expr2)``: FLOAT, the cosine of the two texts' embeddings (1.0 for equal texts)."""
    return Task("ai_similarity", "", result_sql="FLOAT", pairs=True)


def cosine(first: Sequence[float], second: Sequence[float]) -> float | None:
    """The cosine similarity of two vectors; None when either is all zeros or their lengths differ."""
    if len(first) != len(second):
        return None
    if list(first) == list(second):
        return 1.0 if any(first) else None  # exactly, not 0.9999999999999998
    dot = sum(a * b for a, b in zip(first, second, strict=True))
    norms = math.sqrt(sum(a * a for a in first)) * math.sqrt(sum(b * b for b in second))
    return max(-1.0, min(1.0, dot / norms)) if norms else None


MAX_JSON_LABELS, MAX_LABEL_CHARS = 500, 100
"""The JSON form of ``ai_classify`` takes 2 to 500 labels of 1 to 100 characters (Databricks)."""
MAX_INSTRUCTIONS_CHARS = 20_000
MAX_EXTRACT_FIELDS, MAX_EXTRACT_DEPTH = 256, 12
CLASSIFY_OPTIONS = ("instructions", "multilabel", "version")
EXTRACT_OPTIONS = ("instructions", "mode", "version")
SUPPORTED_VERSIONS = ("2.0", "2.1")
FIELD_TYPES = {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean"}


def _invalid(function: str, what: str, message: str) -> ArgumentError:
    return ArgumentError(f"INVALID_PARAMETER_VALUE.{what}", f"{function}: {message}", sqlstate="22023")


def _options(function: str, options: Any, allowed: Sequence[str]) -> dict[str, str]:
    """``options`` (a MAP<STRING, STRING> literal, as a dict) checked: known keys, instructions' length, version."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise _invalid(
            function,
            "AI_FUNCTION_OPTIONS",
            "options must be a MAP<STRING, STRING> literal, like map('instructions', 'Answer for a support team')",
        )
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise _invalid(
            function,
            "AI_FUNCTION_OPTIONS",
            f"option {unknown[0]!r} is not supported by aiquery; the options are {', '.join(allowed)}",
        )
    values = {key: str(value) for key, value in options.items() if value is not None}
    if len(values.get("instructions", "")) > MAX_INSTRUCTIONS_CHARS:
        raise _invalid(
            function, "AI_FUNCTION_OPTIONS", f"instructions take at most {MAX_INSTRUCTIONS_CHARS} characters"
        )
    if "version" in values and values["version"] not in SUPPORTED_VERSIONS:
        raise _invalid(
            function,
            "AI_FUNCTION_OPTIONS",
            f"version {values['version']!r}; supported: {', '.join(SUPPORTED_VERSIONS)}",
        )
    return values


def _json_argument(function: str, name: str, text: Any, example: str) -> Any:
    if not isinstance(text, str):
        raise _invalid(
            function,
            f"{function.upper()}_{name.upper()}",
            f"{name} must be a STRING literal holding JSON, like {example}",
        )
    try:
        return json.loads(text)
    except ValueError:
        raise _invalid(
            function,
            f"{function.upper()}_{name.upper()}",
            f"{name} is not valid JSON: {text[:200]!r}; expected something like {example}",
        ) from None


def classify_json(labels_json: Any, options: Any = None) -> Task:
    """``ai_classify(content, '["spam", "not spam"]' [, options])``: VARIANT ``{"response": [labels], ...}``.

    The labels are a JSON array, or a JSON object mapping each label to its description; the options
    ``instructions``, ``multilabel`` ('true' / 'false') and ``version``.

    Raises:
        ArgumentError: invalid JSON, fewer than 2 or more than 500 labels, a label of 0 or over 100 characters, an
            unknown option.
    """
    example = '\'["urgent", "not urgent"]\''
    parsed = _json_argument("ai_classify", "labels", labels_json, example)
    descriptions: dict[str, str] = {}
    if isinstance(parsed, dict):
        descriptions = {str(label): str(text) for label, text in parsed.items() if text}
        labels = list(parsed)
    elif isinstance(parsed, list) and all(isinstance(label, str) for label in parsed):
        labels = list(parsed)
    else:
        raise _invalid(
            "ai_classify",
            "AI_CLASSIFY_LABELS",
            f"labels must be a JSON array of strings or an object of label to description, like {example}",
        )
    if not MIN_LABELS <= len(labels) <= MAX_JSON_LABELS or len(set(labels)) != len(labels):
        raise _invalid(
            "ai_classify",
            "AI_CLASSIFY_LABELS",
            f"it takes {MIN_LABELS} to {MAX_JSON_LABELS} distinct "
            f"labels, not {len(labels)} ({len(set(labels))} distinct)",
        )
    if any(not 1 <= len(label.strip()) <= MAX_LABEL_CHARS for label in labels):
        raise _invalid("ai_classify", "AI_CLASSIFY_LABELS", f"each label has 1 to {MAX_LABEL_CHARS} characters")
    settings = _options("ai_classify", options, CLASSIFY_OPTIONS)
    multilabel = settings.get("multilabel", "false").strip().lower()
    if multilabel not in ("true", "false"):
        raise _invalid("ai_classify", "AI_FUNCTION_OPTIONS", f"multilabel is 'true' or 'false', not {multilabel!r}")
    listed = "\n".join(
        f"- {json.dumps(label)}" + (f": {descriptions[label]}" if label in descriptions else "") for label in labels
    )
    how = "every label that applies (at least one)" if multilabel == "true" else "exactly one label"
    instruction = f"Classify the text below with {how} from this list:\n{listed}\nAnswer with the label(s) only."
    if settings.get("instructions"):
        instruction += f"\nInstructions: {settings['instructions']}"
    enum = {"type": "string", "enum": labels}
    if multilabel == "true":
        properties: dict[str, Any] = {"labels": {"type": "array", "items": enum}}
        name = "labels"
    else:
        properties, name = {"label": enum}, "label"
    schema = {"type": "object", "properties": properties, "required": [name], "additionalProperties": False}
    return Task(
        "ai_classify",
        instruction,
        ResponseFormat(kind="json_schema", name=name, schema=schema, strict=True),
        labels=tuple(labels),
        variant=True,
        multilabel=multilabel == "true",
    )


def extract_json(schema_json: Any, options: Any = None) -> Task:
    """``ai_extract(content, '["person", "company"]' [, options])``: VARIANT ``{"response": {...}, ...}``.

    The schema is a JSON array of field names (each a string), or a JSON object mapping each field to
    ``{"type": ..., "description": ...}`` with types string, integer, number, boolean, enum (with ``"enum"``
    values), object (with ``"properties"``) and array (with ``"items"``); the options ``instructions``, ``mode``
    and ``version``.

    Raises:
        ArgumentError: invalid JSON, no field or more than 256, nesting deeper than 12, an unknown type or option.
    """
    example = '\'["person", "company"]\''
    parsed = _json_argument("ai_extract", "schema", schema_json, example)
    if isinstance(parsed, list) and parsed and all(isinstance(name, str) and name.strip() for name in parsed):
        parsed = {name: {"type": "string"} for name in parsed}
    if not isinstance(parsed, dict) or not parsed:
        raise _invalid(
            "ai_extract",
            "AI_EXTRACT_SCHEMA",
            f"schema must be a JSON array of field names or an object "
            f'of field to {{"type": ..., "description": ...}}, like {example}',
        )
    counted = [0]
    properties = {str(name): _json_schema(str(name), spec, 1, counted) for name, spec in parsed.items()}
    settings = _options("ai_extract", options, EXTRACT_OPTIONS)
    schema = {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}
    described = "; ".join(
        f"{name}: {spec['description']}"
        for name, spec in parsed.items()
        if isinstance(spec, dict) and spec.get("description")
    )
    instruction = (
        f"Extract these fields from the text below: {', '.join(json.dumps(name) for name in properties)}. Answer "
        "with a JSON object with exactly these keys; use null for a field that is not in the text."
    )
    if described:
        instruction += f"\nFields: {described}"
    if settings.get("instructions"):
        instruction += f"\nInstructions: {settings['instructions']}"
    return Task(
        "ai_extract",
        instruction,
        ResponseFormat(kind="json_schema", name="extraction", schema=schema, strict=True),
        fields=tuple(properties),
        variant=True,
    )


def _json_schema(name: str, spec: Any, depth: int, counted: list[int]) -> dict[str, Any]:
    """The JSON Schema of one field of ``ai_extract``'s schema (nullable: a field may be missing from the text)."""
    counted[0] += 1
    if counted[0] > MAX_EXTRACT_FIELDS or depth > MAX_EXTRACT_DEPTH:
        raise _invalid(
            "ai_extract",
            "AI_EXTRACT_SCHEMA",
            f"a schema has at most {MAX_EXTRACT_FIELDS} fields and {MAX_EXTRACT_DEPTH} levels of nesting",
        )
    if isinstance(spec, str):
        spec = {"type": spec}
    if not isinstance(spec, dict):
        raise _invalid(
            "ai_extract",
            "AI_EXTRACT_SCHEMA",
            f'field {name!r} must be described by an object like {{"type": "string", "description": "..."}}',
        )
    kind = spec.get("type", "string")
    if kind in FIELD_TYPES:
        return {"type": [FIELD_TYPES[kind], "null"]}
    if kind == "enum" and isinstance(spec.get("enum"), list) and spec["enum"]:
        return {"type": ["string", "null"], "enum": [*map(str, spec["enum"]), None]}
    if kind == "object" and isinstance(spec.get("properties"), dict) and spec["properties"]:
        inner = {
            str(key): _json_schema(str(key), value, depth + 1, counted) for key, value in spec["properties"].items()
        }
        return {"type": ["object", "null"], "properties": inner, "required": list(inner), "additionalProperties": False}
    if kind == "array" and "items" in spec:
        return {"type": ["array", "null"], "items": _json_schema(f"{name}[]", spec["items"], depth + 1, counted)}
    raise _invalid(
        "ai_extract",
        "AI_EXTRACT_SCHEMA",
        f"field {name!r} has type {kind!r}; the types are "
        'string, integer, number, boolean, enum (with "enum": [...]), object (with "properties") '
        'and array (with "items")',
    )


def aggregate(instruction: Any) -> Task:
    """``ai_agg(content, instruction)``: STRING, one answer for all of a group's rows (aiquery's own, after
    Snowflake's AI_AGG and BigQuery's AI.AGG); the instruction must be a non-empty string."""
    instruction = _require_text(
        instruction, "ai_agg", "instruction", "AI_AGG_INSTRUCTION", "'Summarize the complaints'"
    )
    return Task("ai_agg", "", aggregate=instruction)
