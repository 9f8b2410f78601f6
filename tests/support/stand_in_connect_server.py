"""A stand-in for ``aiquery connect-server`` until that command exists: a classic driver that registers aiquery,
puts its builders into Spark's built-in function registry (so every Connect session resolves them), adds the three
functions a client calls, and starts Spark's Connect service. Prints ``aiquery connect-server: serving URL``.

Usage: python stand_in_connect_server.py PORT TOKEN WAREHOUSE
"""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
import threading

import aiquery
from aiquery.spark import registry
from aiquery.spark.session import local_spark


class _ValueBuilder:
    """A ``scala.Function1`` giving a literal computed at analysis (enough for a stand-in)."""

    def __init__(self, jvm, compute, kind):
        self.jvm, self.compute, self.kind = jvm, compute, kind

    def apply(self, children):
        types = self.jvm.org.apache.spark.sql.types.DataTypes
        expressions = self.jvm.org.apache.spark.sql.catalyst.expressions
        literal = expressions.Literal.create(str(self.compute()), types.StringType)
        if self.kind != "long":
            return literal
        empty = self.jvm.scala.Option.empty()
        return expressions.Cast(literal, types.LongType, empty, expressions.EvalMode.LEGACY())

    class Java:
        implements = ["scala.Function1"]


def main() -> None:
    port, token, warehouse = sys.argv[1], sys.argv[2], sys.argv[3]
    spark = local_spark(
        "aiquery-connect-stand-in",
        warehouse_dir=warehouse,
        extra_conf={
            "spark.driver.host": "127.0.0.1",
            "spark.connect.grpc.binding.port": port,
            "spark.connect.grpc.binding.address": "127.0.0.1",
            "spark.connect.authenticate.token": token,
        },
    )
    aiquery.register(spark)
    jvm = spark.sparkContext._jvm
    builtin = jvm.org.apache.spark.sql.catalyst.analysis.FunctionRegistry.builtin()
    info, builder, _ = registry._sessions[id(spark)]
    builtin.createOrReplaceTempFunction("ai_query", builder, "python_udf")
    for task_builder in registry._task_builders[id(spark)]:
        builtin.createOrReplaceTempFunction(task_builder.name, task_builder, "python_udf")
    values = [
        _ValueBuilder(jvm, lambda: aiquery.__version__, "string"),
        _ValueBuilder(jvm, lambda: int(aiquery.flush_usage(spark)), "long"),
        _ValueBuilder(jvm, lambda: json.dumps([dataclasses.asdict(q) for q in aiquery.progress(spark)]), "string"),
    ]
    for name, value in zip(("aiquery_server_version", "aiquery_flush_usage", "aiquery_progress"), values):
        builtin.createOrReplaceTempFunction(name, value, "python_udf")
    jvm.org.apache.spark.sql.connect.service.SparkConnectService.start(spark.sparkContext._jsc.sc())
    print(f"aiquery connect-server: serving sc://localhost:{port}/;token={token}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    aiquery.flush_usage(spark)
    spark.stop()


if __name__ == "__main__":
    main()
