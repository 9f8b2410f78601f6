"""Supported Spark versions, the Delta Lake JAR picked for each, and features that need a newer Spark."""

from __future__ import annotations

import dataclasses
import types
from typing import Any

import pytest

import aiquery
from aiquery.config import UsageSettings, load_settings
from aiquery.errors import ArgumentError, ConfigError
from aiquery.spark.session import delta_configs, ensure_delta
from aiquery.spark.versions import (
    SparkBuild,
    check_spark_version,
    delta_package,
    installed_spark,
    parse_spark_version,
    session_spark,
)

pytestmark = pytest.mark.compat


# The newest Delta on Maven Central for each Spark line (looked up 2026-11-30), each verified by writing, appending
# to, MERGE-ing into and reading a Delta table on that Spark. The pip package delta-spark is at 4.4.1, but Maven
# Central has no 4.4.1 JAR, so Spark 4.0 to 4.2 get 4.4.0; Spark 3.5's last Delta is 3.3.3.
@pytest.mark.parametrize(
    ("spark_version", "scala", "coordinate"),
    [
        ("3.5.3", "2.12", "io.delta:delta-spark_2.12:3.3.3"),
        ("3.5.9", "2.12", "io.delta:delta-spark_2.12:3.3.3"),
        ("3.5.6-amzn-1", "2.13", "io.delta:delta-spark_2.13:3.3.3"),
        ("4.0.0", "2.13", "io.delta:delta-spark_4.0_2.13:4.4.0"),
        ("4.1.4", "2.13", "io.delta:delta-spark_4.1_2.13:4.4.0"),
        ("4.2.0", "2.13", "io.delta:delta-spark_4.2_2.13:4.4.0"),
        ("4.2.1", "2.13", "io.delta:delta-spark_4.2_2.13:4.4.0"),
    ],
)
def test_delta_coordinate_for_each_supported_spark(spark_version: str, scala: str, coordinate: str) -> None:
    assert delta_package(SparkBuild(spark=spark_version, scala=scala)) == coordinate


@pytest.mark.parametrize(
    ("version", "reason"),
    [
        ("2.4.8", "named function arguments arrived in Spark 3.5"),
        ("3.4.4", "named function arguments arrived in Spark 3.5"),
        ("3.5.2", "Delta Lake 3.3 (the usage table's format) needs Spark 3.5.3 or later"),
        ("4.3.0", "Maven Central has no Delta Lake release"),
        ("5.0.0", "Maven Central has no Delta Lake release"),
    ],
)
def test_spark_outside_the_range_is_refused_with_the_reason(version: str, reason: str) -> None:
    with pytest.raises(ConfigError) as raised:
        check_spark_version(version)
    message = str(raised.value)
    assert message.startswith(f"aiquery supports Apache Spark 3.5.3 to 4.2.x; this is Spark {version}")
    assert reason in message


def test_vendor_suffixes_are_read_as_the_version_they_extend() -> None:
    assert parse_spark_version("3.5.6-amzn-1") == (3, 5, 6)
    assert parse_spark_version("4.2.0-SNAPSHOT") == (4, 2, 0)
    assert parse_spark_version("4.1") == (4, 1, 0)
    with pytest.raises(ConfigError, match="cannot read a Spark version from 'spark'"):
        parse_spark_version("spark")


def test_a_scala_build_delta_is_not_published_for_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"published for Scala 2\.13, but this Spark was built with Scala 2\.12"):
        delta_package(SparkBuild(spark="4.2.1", scala="2.12"))


def test_register_refuses_an_unsupported_spark_before_using_the_session() -> None:
    # Only `version` is read before the check fails: a stand-in for the session of an old Spark is enough.
    old_session: Any = types.SimpleNamespace(version="3.4.1")
    with pytest.raises(ConfigError, match=r"this is Spark 3\.4\.1"):
        aiquery.register(old_session)


@pytest.mark.spark
def test_the_session_runs_the_installed_spark_with_the_delta_matched_to_it(spark: Any) -> None:
    build = session_spark(spark)
    assert build == installed_spark()
    assert build.scala == ("2.12" if parse_spark_version(build.spark) < (4, 0, 0) else "2.13")
    assert spark.conf.get("spark.jars.packages") == delta_package(build) == delta_configs()["spark.jars.packages"]
    ensure_delta(spark)  # the extension is configured and Delta's classes load from that JAR


@pytest.mark.spark
def test_variant_fails_at_analysis_time_naming_the_spark_it_needs(spark: Any, gateway: Any) -> None:
    from aiquery.functions import ai_query

    settings = load_settings({"DATABRICKS_HOST": gateway.url, "DATABRICKS_TOKEN": gateway.token})
    aiquery.register(spark, settings=dataclasses.replace(settings, usage=UsageSettings(enabled=False)))
    if parse_spark_version(spark.version) < (4, 0, 0):
        expected = (
            r"\[UNSUPPORTED_FEATURE\.SPARK_VERSION\] the VARIANT type needs Spark 4\.0 or later; this session runs "
            rf"Spark {spark.version} \(asked for by the type 'VARIANT'\)\."
        )
    else:  # Spark has the type, but a pandas UDF cannot return it
        expected = r"\[UNSUPPORTED_FEATURE\.AI_QUERY_VARIANT\] ai_query cannot return VARIANT yet"
    with pytest.raises(Exception, match=expected):
        spark.sql("SELECT ai_query('my-chat', 'x', returnType => 'VARIANT') AS v")
    with pytest.raises(ArgumentError, match=r"UNSUPPORTED_FEATURE\.(SPARK_VERSION|AI_QUERY_VARIANT)"):
        ai_query("my-chat", "x", returnType="ARRAY<VARIANT>")
    # A field that is only named "variant" is no VARIANT, on any Spark.
    rows = spark.sql("""
        SELECT ai_query('my-chat', 'x', returnType => 'STRUCT<variant: STRING>',
                        responseFormat => 'STRUCT<answer: STRUCT<variant: STRING>>') AS v""").collect()
    assert isinstance(rows[0].v.variant, str)
    assert gateway.stats()["requests"] == 1
