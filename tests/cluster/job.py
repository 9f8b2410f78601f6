"""A job run by cluster tests in its own process (a SparkContext per process): prints one JSON line."""

from __future__ import annotations

import json
import sys


def main() -> None:
    master, rows, partitions = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    from pyspark.sql import SparkSession

    import aiquery
    from aiquery.config import UsageSettings, load_settings

    spark = (
        SparkSession.builder.master(master)
        .appName("aiquery-cluster-test")
        .config("spark.ui.enabled", "false")
        .config("spark.executor.memory", "1g")
        .config("spark.pyspark.python", sys.executable)
        .getOrCreate()
    )
    settings = load_settings()
    if len(sys.argv) <= 4 or sys.argv[4] != "usage":
        import dataclasses

        settings = dataclasses.replace(settings, usage=UsageSettings(enabled=False))
    aiquery.register(spark, settings=settings)
    spark.range(rows).repartition(partitions).selectExpr("CAST(id AS STRING) AS t").createOrReplaceTempView("t")
    result = spark.sql("SELECT t, ai_query('cluster-chat', 'Summarize ' || t, failOnError => false) AS r FROM t")
    collected = result.collect()
    executors = spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size() - 1
    print(
        json.dumps(
            {
                "rows": len(collected),
                "answered": sum(1 for r in collected if r.r.result),
                "errors": sum(1 for r in collected if r.r.errorMessage),
                "distinct": len({r.t for r in collected}),
                "executors": executors,
            }
        )
    )
    spark.stop()


if __name__ == "__main__":
    main()
