"""The Spark versions aiquery supports, the Delta Lake JAR for each, and what differs between them.

aiquery installs beside the Spark a platform already runs, so it names no pyspark and no delta-spark in its
dependencies; Delta Lake comes as JARs that Spark fetches from Maven Central, and the coordinate depends on the
Spark line (3.5, 4.0 ...) and the Scala version that Spark was built with. A session is configured before its
JVM starts, so :func:`installed_spark` reads both versions from the Spark installation's own JARs; only
:func:`session_spark` asks a running JVM.

Supported: Spark 3.5.3 to 4.2.x (:data:`DELTA_JARS` has the Delta chosen for each line, the newest on Maven
Central, and why). Spark 4.3 is refused: Maven Central has no Delta for it, and the 4.2 JAR fails there
(``NoSuchMethodError`` on ``LogicalRDD.<init>`` at the first read; measured with pyspark 4.3.0 on 2026-11-30).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiquery.errors import ArgumentError, ConfigError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = [
    "DELTA_JARS",
    "NEWEST_SPARK_LINE",
    "OLDEST_SPARK",
    "VARIANT",
    "DeltaJar",
    "SparkBuild",
    "SparkFeature",
    "check_spark_version",
    "delta_jar",
    "delta_package",
    "installed_spark",
    "mentions_variant",
    "parse_spark_version",
    "progress_input_rows",
    "require_spark",
    "session_spark",
]

SparkVersion = tuple[int, int, int]


@dataclass(frozen=True)
class DeltaJar:
    """Delta Lake's JAR for one Spark line."""

    version: str
    """The Delta release."""
    artifact: str
    """The Maven artifact, ``{scala}`` standing for the Scala binary version (``2.12``, ``2.13``)."""
    scala: tuple[str, ...]
    """The Scala versions Maven Central has that artifact for."""

    def coordinate(self, scala: str) -> str:
        """``group:artifact:version`` for a Spark built with ``scala``."""
        return f"io.delta:{self.artifact.format(scala=scala)}:{self.version}"


# Each verified on this machine (2026-11-30) by writing, appending to, MERGE-ing into and reading a Delta table:
# 3.5 on 3.5.3 and 3.5.9, 4.0 on 4.0.0 and 4.0.5, 4.1 on 4.1.4, 4.2 on 4.2.0 and 4.2.1.
DELTA_JARS: dict[tuple[int, int], DeltaJar] = {
    # Delta 3.3 is the last release for Spark 3.5, published for both of its Scala builds.
    (3, 5): DeltaJar("3.3.3", "delta-spark_{scala}", ("2.12", "2.13")),
    # From Delta 4.1 on, the artifact names the Spark line it was compiled against; those JARs are not
    # interchangeable between lines (Catalyst's internal constructors change).
    (4, 0): DeltaJar("4.4.0", "delta-spark_4.0_{scala}", ("2.13",)),
    (4, 1): DeltaJar("4.4.0", "delta-spark_4.1_{scala}", ("2.13",)),
    # delta-spark 4.4.1 exists on PyPI, but Maven Central has no 4.4.1 JAR for any Spark.
    (4, 2): DeltaJar("4.4.0", "delta-spark_4.2_{scala}", ("2.13",)),
}
OLDEST_SPARK: SparkVersion = (3, 5, 3)
"""Delta 3.3, the newest Delta for Spark 3.5, needs 3.5.3; named function arguments exist since 3.5.0."""
NEWEST_SPARK_LINE = max(DELTA_JARS)
SUPPORTED = f"Apache Spark {'.'.join(map(str, OLDEST_SPARK))} to {NEWEST_SPARK_LINE[0]}.{NEWEST_SPARK_LINE[1]}.x"

_VERSION = re.compile(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?")
_SPARK_CORE_JAR = re.compile(r"^spark-core_(\d+\.\d+)-(\d+\.\d+\.\d+\S*)\.jar$")


@dataclass(frozen=True)
class SparkBuild:
    """A Spark version and the Scala binary version it was built with."""

    spark: str
    """As Spark reports it, e.g. ``3.5.6-amzn-1`` on EMR."""
    scala: str
    """The Scala binary version: ``2.12`` or ``2.13``."""


def parse_spark_version(text: str) -> SparkVersion:
    """(major, minor, patch) of a Spark version string; vendor suffixes (``-amzn-1``, ``-SNAPSHOT``) are ignored.

    Raises:
        ConfigError: the text does not start with ``major.minor``.
    """
    match = _VERSION.match(text)
    if match is None:
        raise ConfigError(f"cannot read a Spark version from {text!r}; aiquery supports {SUPPORTED}.")
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def check_spark_version(version: str) -> None:
    """Fail unless aiquery supports Spark ``version``.

    Raises:
        ConfigError: the version is outside the supported range; the message says which versions are supported
            and why this one is not.
    """
    parsed = parse_spark_version(version)
    if parsed < OLDEST_SPARK:
        if parsed[:2] == OLDEST_SPARK[:2]:
            why = "Delta Lake 3.3 (the usage table's format) needs Spark 3.5.3 or later"
        else:
            why = "it predates what aiquery needs (named function arguments arrived in Spark 3.5)"
        raise ConfigError(f"aiquery supports {SUPPORTED}; this is Spark {version}: {why}. Upgrade Spark.")
    if parsed[:2] not in DELTA_JARS:
        raise ConfigError(
            f"aiquery supports {SUPPORTED}; this is Spark {version}, which aiquery has not been tested with and "
            "for which Maven Central has no Delta Lake release (the usage table's format). "
            f"Use Spark {NEWEST_SPARK_LINE[0]}.{NEWEST_SPARK_LINE[1]} or older."
        )


def delta_jar(version: str) -> DeltaJar:
    """The Delta release for Spark ``version``.

    Raises:
        ConfigError: aiquery does not support that Spark.
    """
    check_spark_version(version)
    return DELTA_JARS[parse_spark_version(version)[:2]]


def delta_package(build: SparkBuild | None = None) -> str:
    """The Delta Lake Maven coordinate for a Spark build, for ``spark.jars.packages`` or ``--packages``.

    Args:
        build: the Spark to match; None for the one installed here (:func:`installed_spark`).

    Raises:
        ConfigError: aiquery does not support that Spark, or Delta is not published for its Scala version.
    """
    build = build or installed_spark()
    jar = delta_jar(build.spark)
    if build.scala not in jar.scala:
        raise ConfigError(
            f"Delta Lake {jar.version} for Spark {build.spark} is published for Scala {', '.join(jar.scala)}, "
            f"but this Spark was built with Scala {build.scala}."
        )
    return jar.coordinate(build.scala)


def installed_spark() -> SparkBuild:
    """The Spark that a session started from this Python would run, found before any JVM starts.

    Spark's launcher uses ``SPARK_HOME`` or, for a pip install, the pyspark package folder; its ``jars`` folder
    holds ``spark-core_<scala>-<spark>.jar``. Without that JAR (an unusual layout) the pyspark package's version
    and that line's default Scala (2.12 for 3.x, 2.13 for 4.x) are used.

    Raises:
        ConfigError: pyspark is not installed.
    """
    try:
        import pyspark
        from pyspark.find_spark_home import _find_spark_home
    except ImportError:
        raise ConfigError(
            "pyspark is not installed: on a laptop, install it with `pip install 'aiquery[spark]'`; on a cluster, "
            "run with the cluster's own Spark (spark-submit or its Python, which finds SPARK_HOME)."
        ) from None
    # pyspark's own finder, so the folder is the one the launcher will use (it prints and exits when none is found).
    try:
        home = Path(_find_spark_home())
    except SystemExit:
        home = Path(pyspark.__file__).parent
    for jar in sorted((home / "jars").glob("spark-core_*.jar")):
        match = _SPARK_CORE_JAR.match(jar.name)
        if match:
            return SparkBuild(spark=match.group(2), scala=match.group(1))
    version = str(pyspark.__version__)
    return SparkBuild(spark=version, scala="2.12" if parse_spark_version(version)[0] < 4 else "2.13")


def session_spark(spark: SparkSession) -> SparkBuild:
    """The Spark and Scala versions of a running classic session (asked of its JVM)."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    scala = str(jvm.scala.util.Properties.versionNumberString())
    return SparkBuild(spark=str(spark.version), scala=".".join(scala.split(".")[:2]))


@dataclass(frozen=True)
class SparkFeature:
    """Something aiquery offers only from some Spark version on."""

    description: str
    minimum: tuple[int, int]


VARIANT = SparkFeature("the VARIANT type", (4, 0))
_VARIANT_WORD = re.compile(r"\bvariant\b", re.IGNORECASE)


def require_spark(feature: SparkFeature, version: str, *, used_by: str) -> None:
    """Fail at analysis time when ``feature`` needs a newer Spark than ``version``.

    Args:
        feature: what is asked for, e.g. :data:`VARIANT`.
        version: the running Spark's version.
        used_by: what asked for it, for the message, e.g. ``"the type 'ARRAY<VARIANT>'"``.

    Raises:
        ArgumentError: ``UNSUPPORTED_FEATURE.SPARK_VERSION`` (SQLSTATE 0A000), naming the version needed.
    """
    if parse_spark_version(version)[:2] < feature.minimum:
        needed = ".".join(map(str, feature.minimum))
        raise ArgumentError(
            "UNSUPPORTED_FEATURE.SPARK_VERSION",
            f"{feature.description} needs Spark {needed} or later; this session runs Spark {version} "
            f"(asked for by {used_by}).",
            sqlstate="0A000",
        )


def progress_input_rows(progress: Any) -> int:
    """The rows a streaming query's progress report counts: an object on Spark 4, a dict on Spark 3.5."""
    if isinstance(progress, dict):
        return int(progress["numInputRows"])
    return int(progress.numInputRows)


def mentions_variant(ddl: str) -> bool:
    """Whether a DDL type string has the word VARIANT (``ARRAY<VARIANT>`` too, or a field so named)."""
    return _VARIANT_WORD.search(ddl) is not None


if __name__ == "__main__":
    # `python -m aiquery.spark.versions` prints the Delta coordinate for this Python's Spark, for --packages.
    try:
        print(delta_package())
    except ConfigError as error:
        raise SystemExit(f"python -m aiquery.spark.versions: {error}") from None
