"""The Spark Connect path on the Spark under test (scripts/compat runs it on 4.2 from the installed wheel).

Spark 4.x: a ``pyspark-client`` process against ``aiquery connect-server``: SQL and the DataFrame API give the same
rows, named options reach the server as named arguments, the ledger and progress answer.

Spark 3.5: ``aiquery connect-server`` refuses to start (3.5's Connect service checks no token), so this test
skips there and says why. Tried by hand on 2026-12-07 (pyspark 3.5.9, the last published Connect JAR 3.5.7, no
token): a ``pyspark[connect]==3.5.9`` client ran this test's script; SQL and the DataFrame API agreed, a Column with
``modelParameters`` was refused (``UNSUPPORTED_FEATURE.NAMED_ARGUMENTS``: 3.5's protocol has no named arguments)
and a column name went as SQL text.
"""

from __future__ import annotations

import json
import subprocess
import sys
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
    reason="aiquery connect-server refuses Spark before 4.0: Spark 3.5's Connect service checks no token",
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


@pytest.mark.skipif(SPARK_MAJOR >= 4, reason="Spark 4 is served: test_the_connect_client_of_this_spark")
def test_connect_server_refuses_spark_before_4_and_says_why(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "aiquery.cli", "connect-server", "--port", "15999"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stdout + done.stderr[-3000:]
    assert f"needs Spark 4.0 or later, and this is Spark {pyspark.__version__}" in done.stderr
    assert "checks no token" in done.stderr and "Traceback" not in done.stderr
