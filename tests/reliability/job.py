"""Jobs the reliability tests run as Spark applications of their own (one SparkContext per process).

    python job.py cluster MASTER WAREHOUSE USAGE_DIR TABLE ROWS PARTITIONS
    python job.py secrets WAREHOUSE USAGE_DIR TABLE EVENT_LOG_DIR
    python job.py memory WAREHOUSE USAGE_DIR TABLE ROWS PROMPT_CHARS
    python job.py images WAREHOUSE USAGE_DIR TABLE ROWS IMAGE_BYTES

Endpoints come from AIQUERY_CONFIG, the host and token from DATABRICKS_HOST / DATABRICKS_TOKEN. Each job prints
one JSON line last.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from typing import Any


def session(app: str, master: str, warehouse: str, usage_dir: str, table: str, **conf: str) -> Any:
    """A Delta session with ai_query registered and a ledger that only explicit flushes ingest."""
    import aiquery
    from aiquery.config import UsageSettings, load_settings
    from aiquery.spark.session import local_spark

    extra = {"spark.executor.memory": "1g", **conf}
    spark = local_spark(app, master=master, warehouse_dir=warehouse, extra_conf=extra)
    usage = UsageSettings(
        table=table, dir=usage_dir, path=os.path.join(warehouse, "usage_table"), ingest_interval=3600.0
    )
    aiquery.register(spark, settings=dataclasses.replace(load_settings(), usage=usage))
    return spark


def outcome_counts(rows: list[Any]) -> dict[str, int]:
    return {
        "rows": len(rows),
        "distinct": len({r.id for r in rows}),
        "answered": sum(1 for r in rows if r.r.result is not None),
        "errors": sum(1 for r in rows if r.r.errorMessage is not None),
    }


def cluster(master: str, warehouse: str, usage_dir: str, table: str, rows: str, partitions: str) -> dict[str, Any]:
    import aiquery

    # Losing an executor fails its running task; other attempts must be allowed.
    spark = session("reliability-cluster", master, warehouse, usage_dir, table, **{"spark.task.maxFailures": "4"})
    frame = spark.range(int(rows), numPartitions=int(partitions)).selectExpr(
        "id",
        "ai_query('cluster-chat', CONCAT('Summarize cluster row ', CAST(id AS STRING)), failOnError => false) AS r",
    )
    result = outcome_counts(frame.collect())
    result["ingested"] = aiquery.flush_usage(spark)
    spark.stop()
    return result


LOG4J_INFO_TO_FILE = """
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
rootLogger.appenderRef.console.ref = console
appender.file.type = File
appender.file.name = file
appender.file.fileName = {path}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = %d{{HH:mm:ss}} %p %c{{1}}: %m%n%ex
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{{HH:mm:ss}} %p %c{{1}}: %m%n%ex
"""


def secrets(warehouse: str, usage_dir: str, table: str, event_log_dir: str) -> dict[str, Any]:
    import logging
    import traceback

    import aiquery

    # The driver's Python logging at DEBUG (aiquery's and py4j's records), on this process's stderr.
    logging.basicConfig(level=logging.DEBUG)
    logging.getLogger("py4j").setLevel(logging.INFO)
    # Everything the JVM logs at INFO and above goes to spark-driver.log next to the event log (PySpark filters its
    # console down to WARN whatever setLogLevel says, but not a file appender); WARN and above, Python worker
    # tracebacks included, also to this process's stderr.
    work = os.path.dirname(os.path.abspath(event_log_dir))
    log4j = os.path.join(work, "log4j2.properties")
    with open(log4j, "w") as handle:
        handle.write(LOG4J_INFO_TO_FILE.format(path=os.path.join(work, "spark-driver.log")))
    spark = session(
        "reliability-secrets",
        "local[2]",
        warehouse,
        usage_dir,
        table,
        **{
            "spark.eventLog.enabled": "true",
            "spark.eventLog.dir": event_log_dir,
            # Uncompressed event log and Parquet files, so that a byte search of every file left is not blind.
            "spark.eventLog.compress": "false",
            "spark.sql.parquet.compression.codec": "uncompressed",
            "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile=file:{log4j}",
        },
    )
    spark.range(4).selectExpr("CAST(id AS STRING) AS t").createOrReplaceTempView("t")
    report: dict[str, Any] = {"plans": [], "errors": [], "results": []}
    calls = {  # endpoint: prompt; each fails differently except the first
        "good-chat": "'Say ' || t",
        "failing-chat": "'Say [[fault:500]] ' || t",
        "wrong-token-chat": "'Say ' || t",
        "nowhere-chat": "'Say ' || t",
    }
    for endpoint, prompt in calls.items():
        query = f"SELECT ai_query('{endpoint}', {prompt}, failOnError => false) AS r FROM t"
        for mode in ("EXTENDED", "FORMATTED"):
            report["plans"].append(spark.sql(f"EXPLAIN {mode} {query}").collect()[0][0])
        report["results"] += [row.r.asDict() for row in spark.sql(query).collect()]
        try:  # the same call failing the query: the error travels from a worker to the driver
            spark.sql(f"SELECT ai_query('{endpoint}', {prompt}) FROM t").collect()
        except Exception as error:
            report["errors"].append("".join(traceback.format_exception(error)))
    report["ingested"] = aiquery.flush_usage(spark)
    report["usage"] = [json.dumps(row.asDict(recursive=True), default=str) for row in spark.table(table).collect()]
    # The coordinator's per-application secret travelled in every plan: the test searches for it too. It goes
    # to a file beside the work folder, so that the search of stdout and of the work folder stays blind to it.
    from aiquery.spark.coordination import running_coordinator

    coordinator = running_coordinator(spark)
    assert coordinator is not None
    with open(os.path.join(os.path.dirname(work), "coordinator-secret"), "w") as handle:
        handle.write(coordinator.secret.reveal())
    spark.stop()
    return report


def memory(warehouse: str, usage_dir: str, table: str, rows: str, prompt_chars: str) -> dict[str, Any]:
    spark = session("reliability-memory", "local[2]", warehouse, usage_dir, table)
    padding = ("lorem ipsum dolor sit amet " * (int(prompt_chars) // 27 + 1))[: int(prompt_chars)]
    # The answers stay on the executors (only their total length comes back), so the driver holds no rows.
    return _measured(
        spark,
        f"""SELECT sum(length(r.result)) AS chars, count(r.errorMessage) AS errors
            FROM (SELECT ai_query('memory-chat',
                                  CONCAT(CAST(id AS STRING), ' [[tokens:2000]] ', '{padding}'),
                                  failOnError => false) AS r
                  FROM range(0, {rows}, 1, 2))""",
    )


def images(warehouse: str, usage_dir: str, table: str, rows: str, image_bytes: str) -> dict[str, Any]:
    """``rows`` requests with an image of ``image_bytes`` each (``files =>``), made on the executors."""
    spark = session("reliability-images", "local[2]", warehouse, usage_dir, table)
    # A PNG signature, then bytes that differ per row: every row is a request of its own.
    repeats = int(image_bytes) // 8
    image = f"concat(unhex('89504E470D0A1A0A'), CAST(repeat(lpad(CAST(id AS STRING), 8, '0'), {repeats}) AS BINARY))"
    return _measured(
        spark,
        f"""SELECT sum(length(r.result)) AS chars, count(r.errorMessage) AS errors
            FROM (SELECT ai_query('memory-chat', CONCAT('Describe picture ', CAST(id AS STRING)),
                                  files => {image}, failOnError => false) AS r
                  FROM range(0, {rows}, 1, 2))""",
    )


def _measured(spark: Any, query: str) -> dict[str, Any]:
    """Run ``query`` (one row: chars, errors), print the result, wait for the test to read the workers' memory."""
    import aiquery

    started = time.perf_counter()
    total = spark.sql(query).first()
    elapsed = time.perf_counter() - started
    result = {"chars": total.chars, "errors": total.errors, "seconds": elapsed, "pid": os.getpid()}
    # Stay alive (workers too) until the test has read the workers' peak memory.
    print(json.dumps(result), flush=True)
    sys.stdin.readline()
    result["ingested"] = aiquery.flush_usage(spark)
    spark.stop()
    return result


JOBS = {"cluster": cluster, "secrets": secrets, "memory": memory, "images": images}

if __name__ == "__main__":
    print(json.dumps(JOBS[sys.argv[1]](*sys.argv[2:])), flush=True)
