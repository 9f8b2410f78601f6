"""The task AI Functions in Spark SQL: one builder per function, registered beside ai_query's.

Work in progress (issue 14 part 1): the ARRAY forms only, the chat endpoint fixed to :data:`CHAT_ENDPOINT`
(``[functions]`` in the TOML file comes next), no ai_similarity yet. Each builder validates the function's literal
arguments at analysis time (see :mod:`aiquery.tasks.definitions`) and returns ai_query's UDF for a call plan that
carries the task: the UDF puts the task's instruction before each row's content and reads the answer back.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from aiquery.errors import ArgumentError
from aiquery.spark.builder import AIQueryBuilder, SparkContextInfo, require_string
from aiquery.tasks import definitions as tasks

__all__ = ["CHAT_ENDPOINT", "TASK_FUNCTIONS", "TaskBuilder"]

CHAT_ENDPOINT = "databricks-meta-llama-3-3-70b-instruct"
"""The chat endpoint the task functions use (a Databricks foundation-model endpoint)."""

TASK_FUNCTIONS: dict[str, tuple[tuple[str, ...], int, Callable[..., tasks.Task]]] = {
    # name: (parameters, how many are required, the task for the literal arguments)
    "ai_analyze_sentiment": (("content",), 1, tasks.sentiment),
    "ai_classify": (("content", "labels"), 2, tasks.classify),
    "ai_extract": (("content", "labels"), 2, tasks.extract),
    "ai_fix_grammar": (("content",), 1, tasks.fix_grammar),
    "ai_gen": (("prompt",), 1, tasks.gen),
    "ai_mask": (("content", "labels"), 2, tasks.mask),
    "ai_summarize": (("content", "max_words"), 1, tasks.summarize),
    "ai_translate": (("content", "to_lang"), 2, tasks.translate),
}


class TaskBuilder(AIQueryBuilder):
    """``scala.Function1[Seq[Expression], Expression]`` building one call of the task function ``name``."""

    def __init__(self, info: SparkContextInfo, name: str) -> None:
        super().__init__(info)
        self.name = name

    def _build(self, expressions: list[Any]) -> Any:
        parameters, required, make = TASK_FUNCTIONS[self.name]
        if not required <= len(expressions) <= len(parameters):
            count = str(required) if required == len(parameters) else f"{required} or {len(parameters)}"
            raise ArgumentError(
                "WRONG_NUM_ARGS.WITHOUT_SUGGESTION",
                f"{self.name} takes {count} argument(s) ({', '.join(parameters)}), not {len(expressions)}.",
                sqlstate="42605",
            )
        content, *literals = expressions
        require_string(content, parameters[0], self.name)
        values = [
            self._task_literal(name, expression) for name, expression in zip(parameters[1:], literals, strict=False)
        ]
        task = make(*values)
        response_format = None
        if task.response_format is not None and task.response_format.schema is not None:
            response_format = json.dumps(
                {
                    "type": "json_schema",
                    "json_schema": {
                        "name": task.response_format.name,
                        "schema": task.response_format.schema,
                        "strict": True,
                    },
                }
            )
        plan = self.info.plan(
            endpoint=CHAT_ENDPOINT,
            response_format=response_format,
            return_type=task.result_sql if task.result_sql != "STRING" else None,
            function=self.name,
        )
        return self._expression(dataclasses.replace(plan, task=task), content)

    def _task_literal(self, name: str, expression: Any) -> Any:
        if not expression.foldable():
            raise ArgumentError(
                "DATATYPE_MISMATCH.NON_FOLDABLE_INPUT",
                f"the `{name}` argument of {self.name} must be a constant (a literal), but got {expression.sql()}.",
            )
        if str(expression.dataType().typeName()) == "array":
            value = expression.eval(None)
            if value is None:
                return []
            if str(expression.dataType().elementType().typeName()) != "string":
                raise ArgumentError(
                    "DATATYPE_MISMATCH.UNEXPECTED_INPUT_TYPE",
                    f"the `{name}` argument of {self.name} must be an ARRAY<STRING> literal, like "
                    "ARRAY('urgent', 'not urgent').",
                )
            return [
                None if value.isNullAt(i) else str(value.getUTF8String(i).toString())
                for i in range(value.numElements())
            ]
        return self._literal(name, expression)
