"""A job in its own Spark application (tests need a fresh driver per case): prints one JSON line.

    python ledger_job.py MODE MASTER WAREHOUSE USAGE_DIR TABLE ROWS

MODE ``run``: run ai_query over ROWS rows (failOnError => false), flush usage, print counts.
MODE ``run-no-flush``: run the query, then die at once (os._exit) before any ingestion.
MODE ``flush``: start a new session on the same warehouse and usage folder and only flush.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys


def main() -> None:
    mode, master, warehouse, usage_dir, table, rows = sys.argv[1:7]
    import aiquery
    from aiquery.config import UsageSettings, load_settings
    from aiquery.spark.session import local_spark

    spark = local_spark("aiquery-ledger-test", master=master, warehouse_dir=warehouse)
    settings = load_settings()
    settings = dataclasses.replace(
        settings,
        # A background ingestion an hour away: in these tests, only explicit flushes ingest.
        usage=UsageSettings(
            table=table, dir=usage_dir, path=os.path.join(warehouse, "usage_table"), ingest_interval=3600.0
        ),
    )
    aiquery.register(spark, settings=settings)
    result: dict[str, object] = {}
    if mode in ("run", "run-no-flush"):
        frame = spark.range(int(rows), numPartitions=2).selectExpr(
            "ai_query('ledger-chat', CONCAT('Summarize ledger row ', CAST(id AS STRING)), failOnError => false) AS r"
        )
        collected = frame.collect()
        result["rows"] = len(collected)
        result["answered"] = sum(1 for r in collected if r.r.result is not None)
        result["errors"] = sum(1 for r in collected if r.r.errorMessage is not None)
        if mode == "run-no-flush":
            print(json.dumps(result), flush=True)
            os._exit(0)  # the driver dies: no flush, no background ingestion, no clean shutdown
    result["ingested"] = aiquery.flush_usage(spark)
    print(json.dumps(result), flush=True)
    spark.stop()


if __name__ == "__main__":
    main()
