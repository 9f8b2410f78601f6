"""Every fault an endpoint produces, at once, at scale: all rows answered or explained, the ledger equal to what
the emulator served, and the wall time bounded against the same job without faults.

The endpoint answers after 500 ms (an LLM is never instant; at zero latency the job would measure the client's
CPU, not its reliability), 128 requests in flight per Python worker, two workers (a clean run of about
100 s: the tail of the unluckiest row's retries, 5-10 s whatever the job's length, stays a small part of it).
Faults, per request:
10 % 429 with Retry-After: 1, 5 % 500, 5 % 529, 2 % hung (held 30 s; the endpoint's timeout is 2 s, four times the
latency: with 1 s, an answer the emulator sent on time but that reached a busy machine's client late was a timeout
in the ledger and an answer in the emulator's log),
1 % dropped connection, 1 % malformed JSON. One row in a thousand carries a 400 that is never retried, so some
rows must come back explained rather than answered.

The suite runs 20,000 rows with a loose guard on the wall-time ratio (2.2): it catches a fault that holds the job (a
hung request past its timeout, a retry storm), not a slower tail. The 1.5 x bound is a speed goal, met at 50,000
rows by ``benchmarks/at_scale.py fault-matrix``, which runs this test with ``RELIABILITY_FAULT_MATRIX_ROWS=50000``
and ``RELIABILITY_FAULT_MATRIX_BOUND=1.5``. Measured numbers are printed (``pytest -s``) and recorded in
docs/reliability.md and benchmarks/README.md.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

import pytest
from reliability_helpers import (
    assert_attempts_are_consecutive,
    assert_ledger_matches_emulator,
    by_status,
    ledger_rows,
    served_by,
    status_counts,
)

import aiquery

pytestmark = [pytest.mark.spark, pytest.mark.slow, pytest.mark.alone]

ROWS = int(os.environ.get("RELIABILITY_FAULT_MATRIX_ROWS", "20000"))
LATENCY_MS = 500
FAULTS = {"429": 0.10, "500": 0.05, "529": 0.05, "hang": 0.02, "drop": 0.01, "malformed": 0.01}
CONFIG = """
[endpoints.matrix-chat]
api = "chat"
max_concurrency = 128
timeout = 2
"""
REJECTED_EVERY = 1000
RATIO_BOUND = float(os.environ.get("RELIABILITY_FAULT_MATRIX_BOUND", "2.2"))
# At 50,000 rows the ratio measures 1.31-1.33 against the benchmark's 1.5. On fewer rows the tail of the unluckiest
# rows' retries (10-15 s whatever the length) weighs more: 1.7-1.8 at 16,000 rows (a 33 s clean run) on a busy
# machine. A request held for its whole 30 s hang instead of the 2 s timeout would add about 0.7 at 20,000.


def run_tagged(spark: Any, tag: str) -> tuple[list[Any], float]:
    """Run the job with usage records tagged ``tag``; its rows and wall time."""
    spark.sparkContext.setLocalProperty("aiquery.query_tag", tag)
    try:
        started = time.perf_counter()
        rows = spark.sql("SELECT id, ai_query('matrix-chat', prompt, failOnError => false) AS r FROM matrix").collect()
        return rows, time.perf_counter() - started
    finally:
        spark.sparkContext.setLocalProperty("aiquery.query_tag", None)


def requests_per_5s(served: list[dict[str, Any]]) -> list[int]:
    """The emulator's requests in each 5 s of the run: where the time went (the tail is the last few)."""
    start = min(entry["time"] for entry in served)
    counts = [0] * (int((max(entry["time"] for entry in served) - start) // 5) + 1)
    for entry in served:
        counts[int((entry["time"] - start) // 5)] += 1
    return counts


def assert_every_row_answered_or_explained(rows: list[Any]) -> None:
    ids = sorted(row.id for row in rows)
    assert ids == list(range(ROWS)), "rows lost or duplicated"
    exhausted = []
    for row in rows:
        rejected = row.id % REJECTED_EVERY == 7
        if rejected:
            assert row.r.result is None and "HTTP 400" in row.r.errorMessage, row
        elif row.r.errorMessage is not None and "(after 11 attempts)" in row.r.errorMessage:
            # Eleven faults in a row (the first attempt and max_retries = 10) at a 24 % fault rate: 1.5e-7 per
            # row, so about one run in 130 of 50,000 rows has such a row (seen once on 2026-11-30). It is
            # explained, and the ledger check below sees all eleven attempts.
            assert row.r.result is None, row
            exhausted.append(row.id)
        else:
            assert row.r.result and row.r.errorMessage is None, row
    assert len(exhausted) <= 2, exhausted


def test_fault_matrix_every_row_answered_or_explained_ledger_exact_time_bounded(
    spark: Any, gateway: Any, register_with_ledger: Callable[..., str]
) -> None:
    table = register_with_ledger(gateway, CONFIG)
    spark.range(ROWS, numPartitions=2).selectExpr(
        "id",
        f"CASE WHEN id % {REJECTED_EVERY} = 7 THEN CONCAT('reject [[fault:400]] ', CAST(id AS STRING)) "
        "ELSE CONCAT('Summarize reliability row ', CAST(id AS STRING)) END AS prompt",
    ).createOrReplaceTempView("matrix")
    settings = {"latency_ms": LATENCY_MS, "hang_seconds": 30.0, "seed": 6}
    # Start both Python workers and their HTTP sessions first, so neither timed run pays for it.
    gateway.configure(**settings)
    spark.sql("SELECT ai_query('matrix-chat', CAST(id AS STRING)) FROM range(0, 1024, 1, 2)").collect()

    gateway.reset()
    gateway.configure(**settings)
    clean_rows, clean_s = run_tagged(spark, "matrix-clean")
    assert_every_row_answered_or_explained(clean_rows)

    gateway.reset()
    gateway.configure(**settings, fault_rates=FAULTS)
    faulty_rows, faulty_s = run_tagged(spark, "matrix-faults")
    assert_every_row_answered_or_explained(faulty_rows)

    aiquery.flush_usage(spark)
    rows = ledger_rows(spark, table, "query_tag = 'matrix-faults'")
    served = served_by(gateway, "matrix-chat")
    assert len(served) == len(rows)
    assert_ledger_matches_emulator(rows, served)
    assert status_counts(rows) == by_status(served)
    outcomes = {entry["outcome"] for entry in served}
    assert {"ok", "429", "500", "529", "hang", "drop", "malformed", "400"} == outcomes  # every fault happened
    attempts = assert_attempts_are_consecutive(rows)
    assert len(attempts) == ROWS  # one call per row, however many attempts
    # The emulator counts no tokens for a fault, so its totals are those of the answers the client read.
    assert sum(r.total_tokens or 0 for r in rows) == sum(e["input_tokens"] + e["output_tokens"] for e in served)

    ratio = faulty_s / clean_s
    print(
        "\nfault matrix:",
        json.dumps(
            {
                "rows": ROWS,
                "clean_s": round(clean_s, 1),
                "faulty_s": round(faulty_s, 1),
                "ratio": round(ratio, 2),
                "requests": len(served),
                "by_status": by_status(served),
                "max_attempts": max(len(a) for a in attempts.values()),
                "requests_per_5s": requests_per_5s(served),
            }
        ),
    )
    assert faulty_s <= RATIO_BOUND * clean_s, (faulty_s, clean_s)
