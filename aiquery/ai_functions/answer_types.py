"""Turning a model's answer into an AI Function's value, as far as it can be done safely.

An endpoint with structured output answers with exactly a label, or exactly the asked JSON object. Without it (or
from a model that ignores it) answers come loose: a label in another case, quoted, followed by a full stop, or
wrapped in words ("The sentiment is Positive."). :func:`match_label` maps such an answer to a label when exactly one
label can be read in it, and to None (NULL, as Databricks returns for "cannot classify") otherwise.
:func:`extract_fields` reads the JSON object of an extraction answer, wherever it sits in the text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from aiquery.apis.json_body import json_depth_exceeds

__all__ = ["SENTIMENTS", "asked_fields", "extract_fields", "first_object", "match_label", "named_labels"]

SENTIMENTS = ("positive", "negative", "neutral", "mixed")
"""``ai_analyze_sentiment``'s labels."""

_EDGES = " \t\r\n\"'`*.,;:!?()[]{}<>"


def _normal(text: str) -> str:
    return " ".join(text.strip(_EDGES).casefold().split())


def match_label(answer: str | None, labels: Sequence[str]) -> str | None:
    """The label ``answer`` names, or None when it names none or more than one.

    Tried in order: the answer is the label (ignoring case, surrounding quotes, punctuation and spaces); then
    exactly one label appears in it as a whole word or phrase (a label inside another label counts only where
    the longer one does not).
    """
    if answer is None:
        return None
    wanted = _normal(answer)
    by_normal = {_normal(label): label for label in labels}
    if wanted in by_normal:
        return by_normal[wanted]
    named = named_labels(answer, labels)
    return named[0] if len(named) == 1 else None


def named_labels(answer: str, labels: Sequence[str]) -> list[str]:
    """Every label that appears in ``answer`` as a whole word or phrase, ignoring case, in ``labels``' order (a
    label inside a longer label's match counts as that longer label only: "urgent" in "not urgent")."""
    wanted = _normal(answer)
    found: list[tuple[int, int, str]] = []
    for label in labels:
        normal = _normal(label)
        if not normal:
            continue
        pattern = r"(?<![\w-])" + r"\s+".join(re.escape(part) for part in normal.split()) + r"(?![\w-])"
        for match in re.finditer(pattern, wanted):
            found.append((match.start(), match.end(), label))
    kept = {
        label
        for start, end, label in found
        if not any(s <= start and end <= e and (e - s) > (end - start) for s, e, _ in found)
    }
    return [label for label in labels if label in kept]


def extract_fields(answer: str | None, fields: Sequence[str]) -> dict[str, str | None] | None:
    """The asked ``fields`` from an extraction answer: a JSON object, alone or inside other text.

    Keys match ignoring case and spaces/underscores; a field the answer lacks, or whose value is JSON null, is
    None; other values become strings (a list of candidates gives its first, as Databricks returns one entity).
    None when no JSON object can be read at all.
    """
    if answer is None:
        return None
    data = first_object(answer)
    if data is None:
        return None
    result: dict[str, str | None] = {}
    for name, value in asked_fields(data, fields).items():
        if isinstance(value, list):
            value = value[0] if value else None
        if value is None:
            result[name] = None
        elif isinstance(value, str):
            result[name] = value
        else:
            result[name] = json.dumps(value, ensure_ascii=False)
    return result


def asked_fields(data: dict[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    """The asked ``fields`` of a JSON object, keys matched ignoring case and spaces/underscores/hyphens; a field
    the object lacks is None. Values as they are."""
    keyed = {_key(str(key)): value for key, value in data.items()}
    return {name: keyed.get(_key(name)) for name in fields}


def _key(name: str) -> str:
    return re.sub(r"[\s_-]+", "", name.casefold())


def first_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text`` (alone, or inside prose or a code fence), or None."""
    if json_depth_exceeds(text):
        return None  # the decoder would recurse past the interpreter's limit: no object anyone asked for
    decoder = json.JSONDecoder()
    index = text.find("{")
    while index != -1:
        try:
            value, _ = decoder.raw_decode(text, index)
        except ValueError:
            index = text.find("{", index + 1)
            continue
        if isinstance(value, dict):
            return value
        index = text.find("{", index + 1)
    return None
