"""Benchmark: the reliability tests at the scale of their goals, where the suite runs them smaller.

    .venv/bin/python benchmarks/at_scale.py fault-matrix   # 50,000 rows, faulty/clean wall-time bound 1.5
    .venv/bin/python benchmarks/at_scale.py memory         # peak RSS per Python worker at 20,000 and 200,000 rows

The suite keeps these tests as loose guards on fewer rows (20,000 for the fault matrix, with a 2.2 bound;
50,000 for memory) so that CI stays short; the goals themselves are met here. Each run is the test itself
(same job, same checks) with its scale set through the environment variables it reads, so the benchmark cannot
drift from what the test asserts. Prints the test's measured line and a summary; the exit status is pytest's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
RUNS = {
    "fault-matrix": [
        ("tests/reliability/test_fault_matrix.py", {"RELIABILITY_FAULT_MATRIX_ROWS": "50000",
                                                    "RELIABILITY_FAULT_MATRIX_BOUND": "1.5"}),
    ],
    "memory": [
        ("tests/reliability/test_memory.py::test_python_workers_peak_memory_is_bounded",
         {"RELIABILITY_MEMORY_ROWS": str(rows)})
        for rows in (20_000, 200_000)
    ],
}  # fmt: skip
MEASURED_PREFIXES = ("fault matrix:", "memory:")


def run(test: str, env: dict[str, str]) -> tuple[int, list[dict[str, object]]]:
    """Run one test with ``env`` added; (pytest's status, the JSON lines it printed)."""
    command = [sys.executable, "-m", "pytest", test, "-s", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"]
    # The suite's conftest makes its JVMs compile with C1 only (cheaper for short tests); a benchmark measures the
    # JVM as users run it, so it sets the variable (yours, or empty: conftest only fills it in when unset).
    env = {**os.environ, "JAVA_TOOL_OPTIONS": os.environ.get("JAVA_TOOL_OPTIONS", ""), **env}
    done = subprocess.run(command, cwd=REPOSITORY, env=env, capture_output=True, text=True)
    measured = [
        json.loads(line.split(":", 1)[1]) for line in done.stdout.splitlines() if line.startswith(MEASURED_PREFIXES)
    ]
    if done.returncode != 0:
        print(done.stdout[-6000:], done.stderr[-3000:], sep="\n")
    return done.returncode, measured


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", choices=sorted(RUNS))
    args = parser.parse_args()
    status = 0
    for test, env in RUNS[args.which]:
        code, measured = run(test, env)
        status = status or code
        settings = " ".join(f"{name}={value}" for name, value in env.items())
        print(f"{settings}: pytest exit {code}")
        for line in measured:
            print("  " + json.dumps(line))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
