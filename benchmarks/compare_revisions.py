"""Benchmark: the same benchmarks on two source trees of aiquery, runs interleaved, medians and spreads side by side.

    .venv/bin/python benchmarks/compare_revisions.py --old /tmp/aiquery-old --new . [--runs 3]

Make the old tree with `git archive REV | tar -x -C /tmp/aiquery-old`. Each run starts the benchmark script of the
NEW tree in a fresh process with `PYTHONPATH` set to one tree, so the driver and Spark's Python workers import that
tree's `aiquery` (the scripts themselves stay the same, only the package under them changes). Runs alternate old,
new, old, new, ... so a machine that slows down during the comparison slows both sides alike. Measured:

- `spark_throughput.py fixed --rounds 1 --only "ai_query (Spark SQL)"`: rows/s of ai_query, 20,000 rows at 100 ms;
- `shared_budget.py --scenarios two`: span of the skewed 2,700/300 job against a 100 requests/s endpoint, with the
  budget configured and learned, as a multiple of the ideal 30 s.

A change is "within the runs' own spread" when each side's median lies inside the other side's min-max range.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TIMEOUT_S = 900


def run(tree: Path, arguments: list[str]) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [sys.executable, *arguments], env=environment, capture_output=True, text=True, timeout=TIMEOUT_S, check=True
    )


def throughput(tree: Path) -> dict[str, float]:
    done = run(tree, [str(HERE / "spark_throughput.py"), "fixed", "--rounds", "1", "--only", "ai_query (Spark SQL)"])
    line = [text for text in done.stderr.splitlines() if text.startswith('{"scenario"')][-1]
    return {"ai_query rows/s": json.loads(line)["medians"]["ai_query (Spark SQL)"]}


def shared_budget(tree: Path) -> dict[str, float]:
    done = run(tree, [str(HERE / "shared_budget.py"), "--scenarios", "two"])
    report = json.loads(done.stdout.strip().splitlines()[-1])
    names = {"limited": "budget configured x ideal", "learned": "budget learned x ideal"}
    return {names.get(row["endpoint"], row["endpoint"] + " x ideal"): row["ratio"] for row in report}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", type=Path, required=True, help="the source tree before the change")
    parser.add_argument("--new", type=Path, required=True, help="the source tree after the change")
    parser.add_argument("--runs", type=int, default=3, help="runs of each benchmark on each side")
    args = parser.parse_args()
    sides = {"old": args.old.resolve(), "new": args.new.resolve()}
    samples: dict[str, dict[str, list[float]]] = {"old": {}, "new": {}}
    for number in range(args.runs):
        for side, tree in sides.items():
            for measure in (throughput, shared_budget):
                for name, value in measure(tree).items():
                    samples[side].setdefault(name, []).append(value)
                    print(f"run {number + 1} {side}: {name} = {value:.3f}", flush=True)
    print("\n| measure | old runs | old median | new runs | new median | new / old | within spread |")
    print("|---|---|---|---|---|---|---|")
    for name in samples["old"]:
        old, new = samples["old"][name], samples["new"].get(name, [])
        if not new:
            continue
        old_median, new_median = statistics.median(old), statistics.median(new)
        inside = min(old) <= new_median <= max(old) and min(new) <= old_median <= max(new)
        print(
            f"| {name} | {', '.join(f'{v:.3f}' for v in old)} | {old_median:.3f} | "
            f"{', '.join(f'{v:.3f}' for v in new)} | {new_median:.3f} | {new_median / old_median:.3f} | "
            f"{'yes' if inside else 'no'} |"
        )


if __name__ == "__main__":
    main()
