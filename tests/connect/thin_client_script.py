"""What a user of a JVM-less client does against ``aiquery connect-server``; run by tests/connect/test_thin_client.py
in the environment of ``pyspark-client`` and aiquery only. Prints one JSON object of findings; the test judges them.

Usage: python thin_client_script.py URL WRONG_TOKEN_URL SUFFIX
"""

from __future__ import annotations

import importlib.util
import json
import sys
import warnings
from typing import Any

from pyspark.sql import SparkSession

import aiquery
from aiquery import functions as AF
from aiquery.connect import client


def attempt(found: dict[str, Any], key: str, action: Any) -> None:
    """``action()``'s value under ``key``, or its error (class name and message) under ``key + '_error'``."""
    try:
        found[key] = action()
    except Exception as error:  # the test says which error it expects
        found[key + "_error"] = f"{type(error).__name__}: {error}"


def rows(frame: Any) -> list[dict[str, Any]]:
    return [row.asDict(recursive=True) for row in frame.collect()]


def sql_checks(spark: Any, found: dict[str, Any]) -> None:
    attempt(
        found, "plain", lambda: rows(spark.sql("SELECT ai_query('connect-chat', 'hello ' || id) AS a FROM range(3)"))
    )
    attempt(
        found,
        "named",
        lambda: rows(
            spark.sql(
                "SELECT ai_query(endpoint => 'connect-chat', request => 'named ' || id, "
                "modelParameters => named_struct('max_tokens', 16, 'temperature', 0.0), "
                "requestTags => named_struct('team', 'thin')) AS a FROM range(2)"
            )
        ),
    )
    attempt(
        found,
        "fail_on_error",
        lambda: rows(spark.sql("SELECT ai_query('connect-chat', 'bad [[fault:400]]', failOnError => false) AS a")),
    )
    attempt(
        found,
        "return_type",
        lambda: rows(
            spark.sql(
                "SELECT ai_query('connect-chat', 'review ' || id, "
                "returnType => 'STRUCT<product: STRING, rating: INT>', "
                "responseFormat => 'STRUCT<review: STRUCT<product: STRING, rating: INT>>') AS r FROM range(2)"
            )
        ),
    )
    attempt(
        found,
        "invalid_parameters",
        lambda: rows(
            spark.sql(
                "SELECT ai_query('connect-chat', 'x', modelParameters => named_struct('max_tokens', id)) FROM range(2)"
            )
        ),
    )
    attempt(
        found,
        "ai_functions_sql",
        lambda: rows(
            spark.sql(
                "SELECT ai_summarize('A long text about whales ' || id, 5) AS s, "
                "ai_classify('refund please ' || id, array('urgent', 'not urgent')) AS c FROM range(2)"
            )
        ),
    )


def dataframe_checks(spark: Any, found: dict[str, Any]) -> None:
    texts = spark.range(3).selectExpr("id", "'frame ' || id AS text")
    options = {"max_tokens": 16, "temperature": 0.0}
    attempt(
        found,
        "frame_api",
        lambda: rows(
            texts.select(
                "id",
                AF.ai_query(
                    "connect-chat", "text", failOnError=False, modelParameters=options, requestTags={"team": "thin"}
                ),
                AF.ai_summarize("text", 5).alias("s"),
                AF.ai_classify("text", ["urgent", "not urgent"]).alias("c"),
            ).orderBy("id")
        ),
    )
    texts.createOrReplaceTempView("frame_texts")
    attempt(
        found,
        "frame_sql",
        lambda: rows(
            spark.sql(
                "SELECT id, ai_query('connect-chat', text, failOnError => false, modelParameters => named_struct("
                "'max_tokens', 16, 'temperature', 0.0), requestTags => named_struct('team', 'thin')) AS ai_query, "
                "ai_summarize(text, 5) AS s, ai_classify(text, array('urgent', 'not urgent')) AS c "
                "FROM frame_texts ORDER BY id"
            )
        ),
    )


def session_checks(url: str, suffix: str, found: dict[str, Any]) -> None:
    """A capped session and an uncapped one side by side, each with its own user and query tag."""
    capped = SparkSession.builder.remote(f"{url};user_id=alice-{suffix}").create()
    free = SparkSession.builder.remote(f"{url};user_id=bob-{suffix}").create()
    capped.sql(f"SET aiquery.query_tag = capped-{suffix}")
    free.sql(f"SET aiquery.query_tag = free-{suffix}")
    capped.sql("SET aiquery.budget.max_tokens = 40")
    # failOnError => false: a refused row carries its error and the query runs to its end, so no request is cut
    # short in flight (a cancelled one is in the ledger as lost, while the emulator may have answered it).
    query = (
        "SELECT ai_query('connect-chat', 'budget row ' || id, failOnError => false, "
        f"requestTags => named_struct('run', '{suffix}')) AS a FROM range(30)"
    )
    attempt(found, "capped", lambda: [row.a.errorMessage for row in capped.sql(query).collect()])
    attempt(found, "uncapped", lambda: [row.a.errorMessage for row in free.sql(query).collect()])
    found["session_ids"] = {"capped": capped.session_id, "free": free.session_id}
    attempt(found, "progress", lambda: [p.query for p in aiquery.progress(free)])
    attempt(found, "flushed", lambda: aiquery.flush_usage(free))
    tagged = f"FROM ai_gateway.usage WHERE query_tag IN ('capped-{suffix}', 'free-{suffix}')"
    attempt(
        found,
        "ledger",
        lambda: rows(
            free.sql(
                "SELECT request_id, query_tag, requester, status_code, input_tokens, output_tokens, cache_hit " + tagged
            )
        ),
    )
    attempt(found, "ledger_sessions", lambda: rows(free.sql(f"SELECT DISTINCT query_tag, session_id {tagged}")))


def main() -> None:
    url, wrong_url, suffix = sys.argv[1:4]
    found: dict[str, Any] = {
        "py4j_installed": importlib.util.find_spec("py4j") is not None,
        "jvm_modules": sorted(m for m in sys.modules if m.startswith(("py4j", "pyspark.java_gateway"))),
    }
    spark = SparkSession.builder.remote(url).getOrCreate()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        attempt(found, "register", lambda: aiquery.register(spark))
    found["register_warnings"] = [str(w.message) for w in caught]
    # What register says of a server without aiquery: the same lookup, of a function no server has.
    attempt(found, "no_aiquery", lambda: client.server_version(spark, function="aiquery_not_a_function"))
    sql_checks(spark, found)
    dataframe_checks(spark, found)
    session_checks(url, suffix, found)
    wrong = SparkSession.builder.remote(wrong_url).create()
    attempt(
        found,
        "wrong_token",
        lambda: rows(
            wrong.sql(
                "SELECT ai_query('connect-chat', 'never sent', "
                "requestTags => named_struct('marker', 'wrong-token')) AS a"
            )
        ),
    )
    found["classic_modules_after"] = sorted(
        m for m in sys.modules if m.startswith(("py4j", "pyspark.java_gateway", "pyspark.sql.classic"))
    )
    print(json.dumps(found, default=str))


if __name__ == "__main__":
    main()
