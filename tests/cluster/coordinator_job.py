"""A Spark application for the coordinator's cluster test (one SparkContext per process).

    python coordinator_job.py MASTER WAREHOUSE USAGE_DIR ROWS PARTITIONS CAP

Three queries of ROWS rows each, with failOnError => false, each on an endpoint (so a model in the emulator's log)
of its own:

- ``plain-chat``: nothing special;
- ``dropped-chat``: once the emulator has served ROWS / 4 of its requests, a driver thread stops the
  coordinator's listener (workers lose their connection and fall back) and starts it again 4 s later;
- ``capped-chat`` (priced): under a spending cap of ``CAP`` USD (``SET aiquery.budget.max_cost``), then again
  with the cap removed;
- ``killed-chat``: the job prints ``KILL`` and the test kills one executor mid-query (spark.task.maxFailures
  lets the lost task run again elsewhere).

Then it flushes the usage ledger and prints one JSON line.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import threading
import time
from typing import Any

DROP_SECONDS = 4.0


def main() -> None:
    master, warehouse, usage_dir, rows, partitions, cap = sys.argv[1:7]
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
    gateway = GatewayHandle(os.environ["DATABRICKS_HOST"], os.environ["DATABRICKS_TOKEN"])
    result: dict[str, Any] = {"coordinator_port": coordinator.port}

    def query(endpoint: str) -> dict[str, Any]:
        frame = spark.range(int(rows), numPartitions=int(partitions)).selectExpr(
            "id", f"ai_query('{endpoint}', CONCAT('Summarize row ', CAST(id AS STRING)), failOnError => false) AS r"
        )
        collected = frame.collect()
        return {
            "rows": len(collected),
            "distinct": len({r.id for r in collected}),
            "answered": sum(1 for r in collected if r.r.result is not None),
            "errors": sum(1 for r in collected if r.r.errorMessage is not None),
            "cap_errors": sum(1 for r in collected if "[AI_QUERY_BUDGET_EXCEEDED]" in (r.r.errorMessage or "")),
        }

    def served(model: str) -> int:
        return sum(1 for entry in gateway.requests() if entry["model"] == model)

    result["plain"] = query("plain-chat")

    dropped: dict[str, Any] = {}

    def drop() -> None:
        while served("dropped-chat") < int(rows) // 4:
            time.sleep(0.05)
        dropped["at_requests"] = served("dropped-chat")
        coordinator.stop_listening()
        time.sleep(DROP_SECONDS)
        dropped["requests_while_down"] = served("dropped-chat") - dropped["at_requests"]
        coordinator.resume_listening()

    dropper = threading.Thread(target=drop, daemon=True)
    dropper.start()
    result["dropped"] = query("dropped-chat")
    dropper.join(60)
    result["dropped"].update(dropped)

    spark.conf.set("aiquery.budget.max_cost", cap)
    result["capped"] = query("capped-chat")
    result["capped"]["served"] = served("capped-chat")
    spark.conf.unset("aiquery.budget.max_cost")
    result["uncapped"] = query("capped-chat")

    print("KILL", flush=True)  # the test kills an executor while this query runs
    result["killed"] = query("killed-chat")

    started = time.monotonic()
    result["ingested"] = aiquery.flush_usage(spark)
    result["flush_seconds"] = round(time.monotonic() - started, 1)
    spark.stop()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
