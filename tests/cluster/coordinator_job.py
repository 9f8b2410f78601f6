"""A Spark application for the coordinator's cluster tests (one SparkContext per process).

    python coordinator_job.py MASTER WAREHOUSE USAGE_DIR ROWS PARTITIONS [DROP_AFTER DROP_SECONDS]

Runs ai_query over ROWS rows with failOnError => false. With DROP_AFTER, a driver thread stops the coordinator's
listener once the emulator has served that many requests, and starts it again DROP_SECONDS later. Then it flushes
the usage ledger and prints one JSON line.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import threading
import time


def main() -> None:
    master, warehouse, usage_dir, rows, partitions = sys.argv[1:6]
    drop_after = int(sys.argv[6]) if len(sys.argv) > 6 else None
    drop_seconds = float(sys.argv[7]) if len(sys.argv) > 7 else 0.0
    import aiquery
    from aiquery.config import UsageSettings, load_settings
    from aiquery.gateway.handle import GatewayHandle
    from aiquery.spark.coordination import running_coordinator
    from aiquery.spark.session import local_spark

    spark = local_spark(
        "coordinator-cluster",
        master=master,
        warehouse_dir=warehouse,
        extra_conf={"spark.executor.memory": "1g", "spark.task.maxFailures": "4", "spark.driver.host": "127.0.0.1"},
    )
    usage = UsageSettings(
        table="ai_gateway.usage_cluster",
        dir=usage_dir,
        path=os.path.join(warehouse, "usage_table"),
        ingest_interval=3600.0,
    )
    aiquery.register(spark, settings=dataclasses.replace(load_settings(), usage=usage))
    coordinator = running_coordinator(spark)
    assert coordinator is not None
    dropped: dict[str, float] = {}
    if drop_after is not None:
        gateway = GatewayHandle(os.environ["DATABRICKS_HOST"], os.environ["DATABRICKS_TOKEN"])

        def drop() -> None:
            while gateway.stats()["requests"] < drop_after:
                time.sleep(0.05)
            dropped["at_requests"] = gateway.stats()["requests"]
            coordinator.stop_listening()
            time.sleep(drop_seconds)
            dropped["requests_while_down"] = gateway.stats()["requests"] - dropped["at_requests"]
            coordinator.resume_listening()

        threading.Thread(target=drop, daemon=True).start()
    frame = spark.range(int(rows), numPartitions=int(partitions)).selectExpr(
        "id",
        "ai_query('cluster-chat', CONCAT('Summarize cluster row ', CAST(id AS STRING)), failOnError => false) AS r",
    )
    collected = frame.collect()
    while drop_after is not None and "requests_while_down" not in dropped:
        time.sleep(0.1)
    result = {
        "rows": len(collected),
        "distinct": len({r.id for r in collected}),
        "answered": sum(1 for r in collected if r.r.result is not None),
        "errors": sum(1 for r in collected if r.r.errorMessage is not None),
        "ingested": aiquery.flush_usage(spark),
        "coordinator_port": coordinator.port,
        **dropped,
    }
    spark.stop()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
