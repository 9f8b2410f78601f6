"""notebooks/quickstart.ipynb runs top to bottom against the gateway emulator, in a kernel of this Python."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.spark, pytest.mark.slow]

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "quickstart.ipynb"
KERNEL = "aiquery-tests"


@pytest.fixture
def kernel_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernelspec for this interpreter, found first through JUPYTER_PATH, whatever else is installed."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return KERNEL


def outputs_text(cell: Any) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            parts.append(output.get("text", ""))
        elif "data" in output:
            parts.append(output["data"].get("text/plain", ""))
    return "".join(parts)


def test_quickstart_notebook_runs_cleanly(kernel_name: str, tmp_path: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    workdir = tmp_path / "run"
    workdir.mkdir()
    # The kernel starts in an empty folder: no conf/aiquery.toml of the checkout changes what it does.
    client = NotebookClient(
        notebook, timeout=600, kernel_name=kernel_name, resources={"metadata": {"path": str(workdir)}}
    )
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.get("execution_count") for cell in code), "every code cell ran"
    errors = [o for cell in code for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert errors == []
    text = "\n".join(outputs_text(cell) for cell in code)
    assert "(emulator)" in text  # the test environment has no DATABRICKS_HOST: the notebook used the emulator
    assert "array<float>" in text and "dimensions: 1024" in text
    usage_rows = int(text.split("usage rows:")[1].split()[0])
    # At least: 5 summaries, 9 checked rows, 5 genres and 1 vector shown (a LIMIT may send more), 40 moods written.
    assert usage_rows >= 5 + 9 + 5 + 1 + 40
    assert "HTTP 400" in text  # the failOnError => false row kept its error message
    assert all(column in text for column in ("sentiment", "sea_voyage", "gist", "genre"))  # the AI Functions ran
    dashboard = Path(text.split("dashboard:")[1].split()[0])
    assert dashboard.is_file() and dashboard.stat().st_size > 1000
    # The long query's cell showed a progress line, updated in place (one display, its last state kept).
    progress = next(cell for cell in code if "aiquery.progress(spark)" in cell.source)
    shown = [o for o in progress.outputs if o.get("output_type") == "display_data"]
    assert len(shown) == 1, progress.outputs
    line = shown[0]["data"]["text/plain"]
    assert line.startswith("ai_query execution ") and "rows " in line and "requests " in line, line
    assert "answered: 320" in outputs_text(progress) and "rows 320 answered" in outputs_text(progress)
