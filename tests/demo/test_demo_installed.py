"""``aiquery demo`` from an installed wheel, in the compatibility suite's environments (scripts/compat).

The main suite runs the demo from a fresh clone (test_demo_clone.py); this runs the ``aiquery`` command the wheel
installed, on the Spark of that environment, so the wheel alone (with its data files and the dashboard's SQL) is
shown to be enough. A few rows keep it short.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from processes import EXPECTED_SPARK

pytestmark = [
    pytest.mark.spark,
    pytest.mark.slow,
    pytest.mark.compat,
    pytest.mark.skipif(
        EXPECTED_SPARK is None, reason="needs an environment built from the wheel (scripts/compat sets one up)"
    ),
]

ROWS = 24


def test_demo_of_the_installed_wheel(spark: Any, tmp_path: Path) -> None:
    command = Path(sys.executable).with_name("aiquery")
    env = {name: value for name, value in os.environ.items() if not name.startswith(("PYSPARK_", "SPARK_"))}
    done = subprocess.run(
        [str(command), "demo", "--rows", str(ROWS), "--output", str(tmp_path / "demo")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Demo finished" in done.stdout and "Traceback" not in done.stdout + done.stderr
    manifest = json.loads((tmp_path / "demo" / "outputs.json").read_text())
    assert {table["name"]: table["rows"] for table in manifest["tables"]} == {
        "demo.summaries": ROWS,
        "demo.genres": ROWS,
        "demo.embeddings": ROWS,
        "demo.triage": ROWS,
    }
    for table in manifest["tables"]:
        assert spark.read.format("delta").load(table["location"]).count() == ROWS
    usage = spark.read.format("delta").load(manifest["usage_table"]["location"])
    assert usage.where(f"query_tag = '{manifest['query_tag']}' AND status_code = 200").count() == 5 * ROWS
    page = Path(manifest["dashboard"]).read_text(encoding="utf-8")
    assert page.lstrip().lower().startswith("<!doctype html") and "demo-summarizer" in page
