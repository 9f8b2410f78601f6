"""Which Spark can serve Connect clients safely (no JVM here)."""

from __future__ import annotations

import pytest

from aiquery.connect.server import require_connect_spark
from aiquery.errors import ConfigError


def test_spark_3_5_is_refused_naming_why_and_spark_4_is_served() -> None:
    with pytest.raises(ConfigError, match=r"Spark 4\.0 or later.*3\.5\.9.*checks no token"):
        require_connect_spark("3.5.9")
    require_connect_spark("4.0.0")
    require_connect_spark("4.2.1")
