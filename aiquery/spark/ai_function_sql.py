"""The AI Functions in Spark SQL: one builder per function, registered beside ai_query's.

Each builder validates the function's literal arguments at analysis time (see :mod:`aiquery.ai_functions`)
and returns ai_query's UDF for a call plan that carries the function's call
(:class:`~aiquery.ai_functions.call.AIFunctionCall`): the UDF puts its instruction before each row's content and
reads the answer back. The endpoint is the one ``[functions]`` names for the function (by default
Databricks' foundation models). ``ai_similarity`` sends both texts to the embedding endpoint and returns the cosine.

``ai_classify`` and ``ai_extract`` with a JSON STRING instead of an ARRAY return VARIANT (Spark 4.0 or later): the
UDF returns the JSON text and ``parse_json`` makes it a VARIANT. ``ai_agg`` is a scalar UDF over ``collect_list`` of
the group's texts (:mod:`aiquery.ai_functions.aggregate` reduces them). ``files =>`` (images) belongs to ai_query alone
(:mod:`aiquery.apis.images`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from aiquery.ai_functions import definitions, json_forms
from aiquery.ai_functions.call import AIFunctionCall
from aiquery.apis import get_adapter
from aiquery.errors import ArgumentError
from aiquery.spark.builder import AIQueryBuilder, require_string
from aiquery.spark.call_context import SparkContextInfo
from aiquery.spark.versions import VARIANT, require_spark

__all__ = ["AI_FUNCTIONS", "AIFunctionBuilder"]

JSON_FORMS: dict[str, Callable[..., AIFunctionCall]] = {
    "ai_classify": json_forms.classify_json,
    "ai_extract": json_forms.extract_json,
}
"""The functions whose second argument may be a JSON STRING instead of an ARRAY: they then return VARIANT."""

AI_FUNCTIONS: dict[str, tuple[tuple[str, ...], int, Callable[..., AIFunctionCall]]] = {
    # name: (parameters, how many are required, the call for the literal arguments)
    "ai_agg": (("content", "instruction"), 2, definitions.aggregate),
    "ai_analyze_sentiment": (("content",), 1, definitions.sentiment),
    "ai_classify": (("content", "labels", "options"), 2, definitions.classify),
    "ai_extract": (("content", "labels", "options"), 2, definitions.extract),
    "ai_filter": (("content", "condition"), 2, definitions.filter_rows),
    "ai_fix_grammar": (("content",), 1, definitions.fix_grammar),
    "ai_gen": (("prompt",), 1, definitions.gen),
    "ai_mask": (("content", "labels"), 2, definitions.mask),
    "ai_similarity": (("expr1", "expr2"), 2, definitions.similarity),
    "ai_summarize": (("content", "max_words"), 1, definitions.summarize),
    "ai_translate": (("content", "to_lang"), 2, definitions.translate),
}


class AIFunctionBuilder(AIQueryBuilder):
    """``scala.Function1[Seq[Expression], Expression]`` building one call of the AI Function ``name``."""

    def __init__(self, info: SparkContextInfo, name: str) -> None:
        super().__init__(info)
        self.name = name

    def _build(self, expressions: list[Any]) -> Any:
        parameters, required, make = AI_FUNCTIONS[self.name]
        if not required <= len(expressions) <= len(parameters):
            count = str(required) if required == len(parameters) else f"{required} or {len(parameters)}"
            raise ArgumentError(
                "WRONG_NUM_ARGS.WITHOUT_SUGGESTION",
                f"{self.name} takes {count} argument(s) ({', '.join(parameters)}), not {len(expressions)}.",
                sqlstate="42605",
            )
        if self.name == "ai_similarity":
            for name, expression in zip(parameters, expressions, strict=True):
                require_string(expression, name, self.name)
            call = definitions.similarity()
            plan = self._plan(call, return_type=None, response_format=None)
            return self._expression(dataclasses.replace(plan, ai_function=call, result_sql="FLOAT"), *expressions)
        content, *literals = expressions
        require_string(content, parameters[0], self.name)
        values = [
            self._literal_argument(name, expression) for name, expression in zip(parameters[1:], literals, strict=False)
        ]
        json_form = self.name in JSON_FORMS and _is_string(literals[0])
        if json_form:
            require_spark(
                VARIANT, self.info.spark.version, used_by=f"{self.name} with a JSON STRING (it returns VARIANT)"
            )
            make = JSON_FORMS[self.name]
        elif len(values) > 1:
            raise ArgumentError(
                "WRONG_NUM_ARGS.WITHOUT_SUGGESTION",
                f"{self.name} takes options only with its labels as a JSON STRING (the form that returns VARIANT); "
                "with an ARRAY of labels it takes 2 arguments.",
                sqlstate="42605",
            )
        call = make(*values)
        response_format = call.response_format_json()
        return_type = call.result_sql if call.result_sql != "STRING" else None
        plan = self._plan(call, return_type=return_type, response_format=response_format)
        planned = dataclasses.replace(plan, ai_function=call)
        expression = self._expression(planned, content, collect=bool(call.aggregate))
        return self._parse_json(expression) if json_form else expression

    def _parse_json(self, expression: Any) -> Any:
        """``parse_json(expression)``: the VARIANT of the JSON text the UDF returns (``ParseJson(child,
        failOnError)``, the constructor of Spark 4.0 to 4.2)."""
        variant = self._jvm.org.apache.spark.sql.catalyst.expressions.variant
        return variant.ParseJson(expression, True)

    def _plan(self, call: AIFunctionCall, *, return_type: str | None, response_format: str | None) -> Any:
        """The call plan on the endpoint ``[functions]`` names for this function, checked to be of the right kind."""
        endpoint = self.info.settings.functions.endpoint_for(self.name)
        kind = get_adapter(self.info.settings.endpoint(endpoint).api).output
        wanted = "vector" if call.pairs else "text"
        if kind != wanted:
            role = "embedding_endpoint" if call.pairs else "chat_endpoint"
            raise ArgumentError(
                "AI_FUNCTION_INVALID_ENDPOINT",
                f"{self.name} needs {'an embeddings' if call.pairs else 'a text-generation'} endpoint, but "
                f"'{endpoint}' is {'an embeddings' if kind == 'vector' else 'a text-generation'} endpoint. Name "
                f'another in the configuration file\'s [functions] table ({role} = "...", or {self.name} = '
                f'"..." for this function alone).',
            )
        return self.info.plan(
            endpoint=endpoint, response_format=response_format, return_type=return_type, function=self.name
        )

    def _literal_argument(self, name: str, expression: Any) -> Any:
        if not expression.foldable():
            raise ArgumentError(
                "DATATYPE_MISMATCH.NON_FOLDABLE_INPUT",
                f"the `{name}` argument of {self.name} must be a constant (a literal), but got {expression.sql()}.",
            )
        if _is_string(expression):
            return self._literal(name, expression)
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


def _is_string(expression: Any) -> bool:
    type_name = str(expression.dataType().typeName())
    return type_name == "string" or type_name.startswith(("varchar", "char"))
