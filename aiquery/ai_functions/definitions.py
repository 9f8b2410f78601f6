"""What each AI Function asks a chat or embeddings endpoint, built from its literal arguments.

One function per SQL function, each returning the :class:`~aiquery.ai_functions.call.AIFunctionCall` for a call, its
arguments checked (:mod:`.arguments`); the JSON forms of ``ai_classify`` and ``ai_extract``, which return
VARIANT, are in :mod:`.json_forms`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from aiquery.ai_functions.answer_types import SENTIMENTS
from aiquery.ai_functions.arguments import invalid_argument, require_labels, require_text
from aiquery.ai_functions.call import AIFunctionCall
from aiquery.apis.base import ResponseFormat
from aiquery.errors import ArgumentError

__all__ = [
    "MASK",
    "aggregate",
    "classify",
    "cosine",
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
FILTER_LABELS = ("true", "false")


def _enum_format(labels: Sequence[str]) -> ResponseFormat:
    schema = {
        "type": "object",
        "properties": {"label": {"type": "string", "enum": list(labels)}},
        "required": ["label"],
        "additionalProperties": False,
    }
    return ResponseFormat(kind="json_schema", name="label", schema=schema, strict=True)


def sentiment() -> AIFunctionCall:
    return AIFunctionCall(
        "ai_analyze_sentiment",
        "Classify the sentiment of the text below as exactly one of: positive, negative, neutral, mixed. "
        "Answer with that one word.",
        _enum_format(SENTIMENTS),
        labels=SENTIMENTS,
    )


def classify(labels: Sequence[Any]) -> AIFunctionCall:
    """``ai_classify(content, ARRAY(...))``.

    Raises:
        ArgumentError: fewer than 2 or more than 20 labels, or a label that is not a non-empty string.
    """
    if not MIN_LABELS <= len(labels) <= MAX_LABELS:
        message = f"ai_classify takes {MIN_LABELS} to {MAX_LABELS} labels, not {len(labels)}."
        raise invalid_argument("AI_CLASSIFY_LABELS", message)
    if any(not isinstance(label, str) or not label.strip() for label in labels) or len(set(labels)) != len(labels):
        raise invalid_argument("AI_CLASSIFY_LABELS", "ai_classify's labels must be distinct, non-empty strings.")
    listed = ", ".join(json.dumps(label) for label in labels)
    return AIFunctionCall(
        "ai_classify",
        f"Classify the text below into exactly one of these labels: {listed}. Answer with the label only.",
        _enum_format(labels),
        labels=tuple(labels),
    )


def extract(labels: Sequence[Any]) -> AIFunctionCall:
    """``ai_extract(content, ARRAY(...))``: a STRUCT of one STRING field per label."""
    require_labels(labels, "ai_extract", "AI_EXTRACT_LABELS", "ARRAY('person', 'company')")
    schema = {
        "type": "object",
        "properties": {label: {"type": ["string", "null"]} for label in labels},
        "required": list(labels),
        "additionalProperties": False,
    }
    names = ", ".join(json.dumps(label) for label in labels)
    return AIFunctionCall(
        "ai_extract",
        f"Extract from the text below one value for each of these entity types: {names}. Answer with a JSON "
        "object with exactly these keys; use null for an entity that is not in the text.",
        ResponseFormat(kind="json_schema", name="entities", schema=schema, strict=True),
        fields=tuple(labels),
        result_sql="STRUCT<" + ", ".join(f"`{label.replace('`', '``')}`: STRING" for label in labels) + ">",
    )


def summarize(max_words: Any = DEFAULT_MAX_WORDS) -> AIFunctionCall:
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
    return AIFunctionCall("ai_summarize", f"Summarize the text below{limit}. Answer with the summary only.")


def translate(to_lang: str) -> AIFunctionCall:
    language = require_text(to_lang, "ai_translate", "to_lang", "AI_TRANSLATE_LANGUAGE", "'es' or 'Spanish'")
    return AIFunctionCall(
        "ai_translate", f"Translate the text below into {language}. Answer with the translation only."
    )


def fix_grammar() -> AIFunctionCall:
    return AIFunctionCall(
        "ai_fix_grammar",
        "Correct the grammar of the text below, changing nothing else. Answer with the corrected text only.",
    )


def mask(labels: Sequence[Any]) -> AIFunctionCall:
    require_labels(labels, "ai_mask", "AI_MASK_LABELS", "ARRAY('person', 'email')")
    kinds = ", ".join(labels)
    return AIFunctionCall(
        "ai_mask",
        f"Repeat the text below, replacing every piece of information of these types with {MASK}: {kinds}. "
        "Answer with the masked text only.",
    )


def gen() -> AIFunctionCall:
    return AIFunctionCall("ai_gen", "Answer the request below.")


def filter_rows(condition: Any) -> AIFunctionCall:
    """``ai_filter(content, condition)``: BOOLEAN, whether the condition holds for the content (aiquery's own,
    after Snowflake's AI_FILTER and BigQuery's AI.IF).

    Raises:
        ArgumentError: the condition is not a non-empty string.
    """
    condition = require_text(condition, "ai_filter", "condition", "AI_FILTER_CONDITION", "'mentions a refund'")
    return AIFunctionCall(
        "ai_filter",
        f"Decide whether this condition holds for the text below: {condition}\n"
        "Answer true if it holds and false if it does not.",
        _enum_format(FILTER_LABELS),
        labels=FILTER_LABELS,
        synonyms=(("yes", "true"), ("no", "false")),
        result_sql="BOOLEAN",
    )


def similarity() -> AIFunctionCall:
    """``ai_similarity(expr1, expr2)``: FLOAT, the cosine of the two texts' embeddings (1.0 for equal texts)."""
    return AIFunctionCall("ai_similarity", "", result_sql="FLOAT", pairs=True)


def cosine(first: Sequence[float], second: Sequence[float]) -> float | None:
    """The cosine similarity of two vectors; None when either is all zeros or their lengths differ."""
    if len(first) != len(second):
        return None
    if list(first) == list(second):
        return 1.0 if any(first) else None  # exactly, not 0.9999999999999998
    dot = sum(a * b for a, b in zip(first, second, strict=True))
    norms = math.sqrt(sum(a * a for a in first)) * math.sqrt(sum(b * b for b in second))
    return max(-1.0, min(1.0, dot / norms)) if norms else None


def aggregate(instruction: Any) -> AIFunctionCall:
    """``ai_agg(content, instruction)``: STRING, one answer for all of a group's rows (aiquery's own, after
    Snowflake's AI_AGG and BigQuery's AI.AGG); the instruction must be a non-empty string."""
    instruction = require_text(
        instruction, "ai_agg", "instruction", "AI_AGG_INSTRUCTION", "'Summarize the complaints'"
    )
    return AIFunctionCall("ai_agg", "", aggregate=instruction)
