"""The pandas UDF behind ai_query and the AI Functions: requests in from Arrow, values and errors back out.

:func:`make_udf` specialises one UDF per call plan: of the request; of the request and its file (``files =>``);
of two texts (``ai_similarity``); or of a group's texts (``ai_agg``). The rows go through the worker's engine
(:mod:`aiquery.spark.pipeline`); each answer becomes the plan's value here, and whatever one answer provokes is
that row's error.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, cast

from aiquery.ai_functions.aggregate import Aggregation
from aiquery.ai_functions.definitions import cosine
from aiquery.apis.images import FilePrompt
from aiquery.engine import Outcome
from aiquery.errors import CallError
from aiquery.spark.convert import convert_answer
from aiquery.spark.pipeline import run_batches
from aiquery.spark.plan import CallPlan
from aiquery.spark.worker_runtime import Row

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql.udf import UserDefinedFunction

__all__ = ["make_udf"]


def _values(plan: CallPlan, outcomes: list[Outcome]) -> tuple[list[Any], list[str | None]]:
    """Results and error messages for a chunk; raises the first error when failOnError is on."""
    return _collected(plan, (_value(plan, outcome) for outcome in outcomes))


def _value(plan: CallPlan, outcome: Outcome) -> tuple[Any, CallError | None]:
    """One row's value (its answer read by the AI Function's call, parsed into the returnType) or its error."""
    value, error = outcome.value, outcome.error
    if error is None and value is not None and plan.ai_function is not None:
        value = plan.ai_function.value(str(value))
        if isinstance(value, dict):
            value = json.dumps(value)
    if error is None and value is not None and plan.parse_json:
        try:
            value = convert_answer(str(value), plan.result_json)
        except Exception as exc:  # whatever one answer provokes is that row's error, never the query's
            value, error = None, CallError(str(exc), endpoint=plan.site.endpoint.name)
    return value, error


def _collected(plan: CallPlan, rows: Iterable[tuple[Any, CallError | None]]) -> tuple[list[Any], list[str | None]]:
    """The rows' values and error messages; with failOnError, the first error fails the query."""
    results: list[Any] = []
    errors: list[str | None] = []
    for value, error in rows:
        if error is not None and plan.fail_on_error:
            raise error
        results.append(value)
        errors.append(error.describe() if error is not None else None)
    return results, errors


def _answers(plan: CallPlan, prompts: list[str]) -> list[str]:
    """The answers to ``prompts``, sent together through the engine (ai_agg's layers); raises a failed one's error."""
    answers: list[str] = []
    for outcomes in run_batches(plan, iter([prompts])):
        for outcome in outcomes:
            if outcome.error is not None:
                raise outcome.error
            answers.append(str(outcome.value) if outcome.value is not None else "")
    return answers


def _pair_values(plan: CallPlan, batches: Iterator[tuple[Any, Any]]) -> Iterator[tuple[list[Any], list[Any]]]:
    """``ai_similarity``: both texts of each row embedded (one stream of requests), and each pair's cosine;
    (results, error messages) per chunk of rows. A row whose two texts are equal sends one and is 1.0."""
    pending: collections.deque[Outcome] = collections.deque()
    equal: collections.deque[bool] = collections.deque()

    def flattened() -> Iterator[list[str | None]]:
        for first, second in batches:
            texts: list[str | None] = []
            for pair in zip(_prompts(first), _prompts(second), strict=True):
                same = pair[0] == pair[1]
                equal.append(same)
                # A row with a NULL text is NULL: neither of its texts is sent.
                texts.extend((None, None) if None in pair else (pair[0], None) if same else pair)
            yield texts

    def paired() -> Iterator[tuple[Any, CallError | None]]:
        while len(pending) >= 2:
            yield _pair_value(pending.popleft(), pending.popleft(), same=equal.popleft())

    for outcomes in run_batches(plan, flattened()):
        pending.extend(outcomes)
        yield _collected(plan, paired())


def _pair_value(first: Outcome, second: Outcome, *, same: bool) -> tuple[float | None, CallError | None]:
    """A row's cosine from its two embeddings (``second`` unsent when the texts are ``same``), or its error."""
    error = first.error or (None if same else second.error)
    value = None
    if error is None and first.value is not None and same:
        value = 1.0
    elif error is None and first.value is not None and second.value is not None:
        value = cosine(cast(list[float], first.value), cast(list[float], second.value))
    return value, error


def make_udf(plan: CallPlan) -> UserDefinedFunction:
    """A nondeterministic pandas UDF specialised for ``plan``: of the request; of the request and its file
    (``files =>``); of two texts (``ai_similarity``); or of a group's texts (``ai_agg``)."""
    import pandas as pd
    from pyspark.sql.pandas.functions import pandas_udf

    if plan.ai_function is not None and plan.ai_function.aggregate:
        aggregation = Aggregation(plan.ai_function.aggregate, plan.site.endpoint.context_tokens)

        def ai_agg(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
            for batch in batches:
                # An estimate run: the requests do not scale with rows (jobs.estimate). A batch collect pass: the
                # layers' requests depend on answers of the layer below, which no batch has yet (batch mode runs
                # ai_agg live).
                if plan.sample is not None or plan.batch_collect is not None:
                    yield pd.Series([None] * len(batch), dtype=object)
                    continue
                groups = [_prompts(pd.Series(list(texts))) for texts in batch.tolist()]
                answers = aggregation.run_many(groups, lambda prompts: _answers(plan, prompts))
                yield pd.Series(answers, dtype=object)

        ai_agg.__annotations__ = {"batches": Iterator[pd.Series], "return": Iterator[pd.Series]}
        return _nondeterministic(pandas_udf(ai_agg, returnType=plan.udf_type))  # type: ignore[call-overload]

    def shaped(results: list[Any], errors: list[str | None]) -> Any:
        if plan.wrapped:
            return pd.DataFrame({"result": results, "errorMessage": errors})
        return pd.Series(results, dtype=object)

    if plan.ai_function is not None and plan.ai_function.pairs:

        def ai_query(batches: Iterator[Any]) -> Iterator[Any]:
            for results, errors in _pair_values(plan, batches):
                yield shaped(results, errors)

    else:
        rows_of: Callable[[Any], Sequence[Row]] = (lambda batch: _file_prompts(*batch)) if plan.files else _prompts

        def ai_query(batches: Iterator[Any]) -> Iterator[Any]:
            for outcomes in run_batches(plan, (rows_of(batch) for batch in batches)):
                yield shaped(*_values(plan, outcomes))

    two_columns = plan.files or (plan.ai_function is not None and plan.ai_function.pairs)
    inputs: Any = tuple[pd.Series, pd.Series] if two_columns else pd.Series
    output: Any = pd.DataFrame if plan.wrapped else pd.Series
    # pandas_udf reads the hints to pick the iterator form; with postponed annotations they are strings that
    # name this function's locals, which it cannot resolve, so give it the real types.
    ai_query.__annotations__ = {"batches": Iterator[inputs], "return": Iterator[output]}
    # The overloads cannot see the iterator form through the hints set at runtime above.
    return _nondeterministic(pandas_udf(ai_query, returnType=plan.udf_type))  # type: ignore[call-overload]


def _nondeterministic(wrapped: Any) -> UserDefinedFunction:
    """The UDF, nondeterministic, so Spark never evaluates it twice for one row (for example once per struct field
    read)."""
    udf: UserDefinedFunction = wrapped.asNondeterministic()._unwrapped
    return udf


def _prompts(batch: pd.Series) -> list[str | None]:
    # Requests arrive as BINARY (see AIQueryBuilder._expression): Arrow's own decoding of a STRING column fails
    # the whole task on one invalid UTF-8 value. surrogateescape keeps each bad byte as a lone surrogate, which
    # the engine reports on that row alone, without sending it.
    return [value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else None for value in batch.tolist()]


def _file_prompts(texts: pd.Series, files: pd.Series) -> list[Row]:
    """Each row's request with its file (``files =>``): NULL text is NULL; a NULL file sends the text alone."""
    rows: list[Row] = []
    for text, data in zip(_prompts(texts), files.tolist(), strict=True):
        if text is None or data is None:
            rows.append(text)
        else:
            rows.append(FilePrompt(text, bytes(data)))
    return rows
