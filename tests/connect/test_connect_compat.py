"""The Spark Connect path on the Spark under test (scripts/compat runs it on 4.2 from the installed wheel).

Spark 4.x: a ``pyspark-client`` process against ``aiquery connect-server``: SQL and the DataFrame API give the same
rows, named options reach the server as named arguments, the ledger and progress answer.

Spark 3.5 (tried by hand, 2026-12-07, pyspark 3.5.9): Maven Central has no ``spark-connect_2.12`` after 3.5.7, so
the server starts only with ``--conf spark.jars.packages=...spark-connect_2.12:3.5.7``; Spark 3.5's Connect
service does not check ``spark.connect.authenticate.token`` (a client without the token is served), and the 3.5
Python client sends a token only over TLS. With that JAR and no token, a ``pyspark[connect]==3.5.9`` client ran
this test's script: SQL and the DataFrame API agreed; a Column with ``modelParameters`` is refused
(``UNSUPPORTED_FEATURE.NAMED_ARGUMENTS``: 3.5's protocol has no named arguments), a column name goes as SQL text.
Without authentication that is no server to offer, so this test skips on 3.5 and says why.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pyspark
import pytest
from processes import EXPECTED_SPARK

pytestmark = [pytest.mark.spark, pytest.mark.slow, pytest.mark.compat]

SCRIPT = Path(__file__).with_name("compat_client_script.py")
SPARK_MAJOR = int(pyspark.__version__.split(".")[0])


@pytest.mark.skipif(
    EXPECTED_SPARK is None, reason="scripts/compat runs it from the installed wheel; the suite has test_thin_client"
)
@pytest.mark.skipif(
    SPARK_MAJOR < 4,
    reason="Spark 3.5's Connect service does not check the token (and no spark-connect_2.12 JAR after 3.5.7): "
    "aiquery connect-server is for Spark 4",
)
def test_the_connect_client_of_this_spark(connect_server: Any, thin_client_python: Path) -> None:
    done = subprocess.run(
        [str(thin_client_python), str(SCRIPT), connect_server.url],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["frame"] == found["sql"] and len(found["frame"]) == 3
    assert all(row["ai_query"]["result"] and row["s"] for row in found["frame"])
    assert found["column_with_named_option"] == "ran"
    assert isinstance(found["flushed"], int)
    assert found["progress"] and all(isinstance(n, int) for n in found["progress"])
