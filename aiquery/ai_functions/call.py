"""An :class:`AIFunctionCall`: one AI Function's call, its literal arguments applied: what it asks and how it reads
answers.

A call is built at analysis time from the function's literal arguments (:mod:`.definitions` and
:mod:`.json_forms` build them, validating the arguments there) and shipped to the workers inside ai_query's call
plan. Per row it makes the prompt from the content and reads the answer. The structured output it asks for (an
enum for labels and sentiment, an object of string fields for extraction) goes through the same adapters as
ai_query's ``responseFormat``, so every API with structured output gets its own spelling; an answer that still
does not match is mapped by :mod:`.answer_types` where that is safe, else NULL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiquery.ai_functions.answer_types import asked_fields, extract_fields, first_object, match_label, named_labels
from aiquery.apis.base import ResponseFormat
from aiquery.apis.json_body import decode_json_body

__all__ = ["AIFunctionCall"]


@dataclass(frozen=True)
class AIFunctionCall:
    """One AI Function's call, its literal arguments applied.

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
            (:mod:`aiquery.ai_functions.aggregate`), and ``instruction`` is empty.
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
