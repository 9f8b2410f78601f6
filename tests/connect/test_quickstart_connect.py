"""notebooks/quickstart_connect.ipynb runs top to bottom in the JVM-less client environment, against the test
server (``AIQUERY_CONNECT_URL``): its code cells in order, as one script, as a kernel would run them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.spark, pytest.mark.slow]

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "quickstart_connect.ipynb"


def test_the_connect_quickstart_runs_in_a_thin_client(
    connect_server: Any, thin_client_python: Path, tmp_path: Path
) -> None:
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    code = ["".join(cell["source"]) for cell in cells if cell["cell_type"] == "code"]
    script = tmp_path / "quickstart_connect.py"
    script.write_text("\n\n".join(code) + "\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "AIQUERY_CONNECT_URL": connect_server.url}
    env["AIQUERY_CONNECT_ENDPOINT"] = "connect-chat"  # the test server's endpoint (tests/connect/conftest.py)
    done = subprocess.run(
        [str(thin_client_python), str(script)], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "over Spark Connect" in out and "(started here)" not in out
    assert "result: None | error: " in out and "HTTP 400" in out, out  # failOnError => false kept the error
    assert "urgent" in out  # the AI Function's labels
    assert "capped: True" in out
    assert int(out.split("usage rows:")[1].split()[0]) >= 6 + 1 + 6 + 6
    assert "quickstart" in out.split("usage rows:")[1]  # the requester the URL declared
    assert connect_server.token not in out + done.stderr
