"""Which Spark needs the Connect server's JARs fetched (no JVM here)."""

from __future__ import annotations

from aiquery.connect.server import connect_package


def test_spark_3_5_fetches_the_connect_server_and_spark_4_has_it() -> None:
    assert connect_package("3.5.9", "2.12") == "org.apache.spark:spark-connect_2.12:3.5.9"
    assert connect_package("4.0.0", "2.13") is None
    assert connect_package("4.2.1", "2.13") is None
