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
from aiquery.errors import ArgumentError
from aiquery.tasks.answers import SENTIMENTS, extract_fields, match_label

__all__ = [
    "MASK",
    "Task",
    "classify",
    "extract",
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
    """

    function: str
    instruction: str
    response_format: ResponseFormat | None = None
    labels: tuple[str, ...] = ()
    synonyms: tuple[tuple[str, str], ...] = ()
    fields: tuple[str, ...] = ()
    result_sql: str = "STRING"
    pairs: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def prompt(self, content: str) -> str:
        """The request's prompt for one row's content."""
        return f"{self.instruction}\n\n{content}"

    def value(self, answer: str) -> Any:
        """The function's value for an answer (None when it cannot be read safely)."""
        if self.labels:
            named = dict(self.synonyms)
            label = match_label(_field(answer, "label"), (*self.labels, *named))
            return named.get(label, label) if label is not None else None
        if self.fields:
            return extract_fields(answer, self.fields)
        return answer.strip()


def _field(answer: str, name: str) -> str:
    """``answer[name]`` when the answer is a JSON object holding it (structured output), else the answer itself."""
    try:
        data = json.loads(answer)
    except ValueError:
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


def translate(to_lang: str) -> Task:
    if not isinstance(to_lang, str) or not to_lang.strip():
        raise ArgumentError(
            "INVALID_PARAMETER_VALUE.AI_TRANSLATE_LANGUAGE",
            "ai_translate's to_lang must be a language code or name, like 'es' or 'Spanish'.",
            sqlstate="22023",
        )
    return Task("ai_translate", f"Translate the text below into {to_lang.strip()}. Answer with the translation only.")


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
    if not isinstance(condition, str) or not condition.strip():
        raise ArgumentError(
            "INVALID_PARAMETER_VALUE.AI_FILTER_CONDITION",
            "ai_filter's condition must be a non-empty STRING literal, like 'mentions a refund'.",
            sqlstate="22023",
        )
    return Task(
        "ai_filter",
        f"Decide whether this condition holds for the text below: {condition.strip()}\n"
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
