"""A Spark Connect client of the Spark under test (``pyspark-client`` on 4.x, ``pyspark[connect]`` on 3.5) against
``aiquery connect-server``: SQL with named arguments, the DataFrame API with named options, the AI Functions, the
ledger and progress. Prints one JSON object of findings (tests/connect/test_connect_compat.py judges them).

Usage: python compat_client_script.py URL
"""

from __future__ import annotations

import json
import sys
from typing import Any

from pyspark.sql import SparkSession

import aiquery
from aiquery import functions as AF


def main() -> None:
    spark = SparkSession.builder.remote(sys.argv[1]).getOrCreate()
    found: dict[str, Any] = {"spark": spark.version}
    aiquery.register(spark)
    texts = spark.range(3).selectExpr("id", "'compat ' || id AS text")
    texts.createOrReplaceTempView("compat_texts")
    frame = texts.select(
        "id",
        AF.ai_query("connect-chat", "text", failOnError=False, modelParameters={"max_tokens": 16}),
        AF.ai_summarize("text", 5).alias("s"),
    ).orderBy("id")
    sql = spark.sql(
        "SELECT id, ai_query('connect-chat', text, failOnError => false, "
        "modelParameters => named_struct('max_tokens', 16)) "
        "AS ai_query, ai_summarize(text, 5) AS s FROM compat_texts ORDER BY id"
    )
    found["frame"] = [row.asDict(recursive=True) for row in frame.collect()]
    found["sql"] = [row.asDict(recursive=True) for row in sql.collect()]
    try:
        texts.select(AF.ai_query("connect-chat", texts.text, modelParameters={"max_tokens": 16})).collect()
        found["column_with_named_option"] = "ran"
    except Exception as error:  # Spark 3.5's Connect protocol has no named arguments: refused, and said why
        found["column_with_named_option"] = f"{type(error).__name__}: {error}"
    found["flushed"] = aiquery.flush_usage(spark)
    found["progress"] = [query.requests for query in aiquery.progress(spark)]
    print(json.dumps(found, default=str))


if __name__ == "__main__":
    main()
