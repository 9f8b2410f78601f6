"""Hostile answers through Spark: every kind the emulator's hostile mode serves is that row's error, nothing more.

200 good rows and two rows of each hostile kind, each through a chat and an embeddings endpoint with
``failOnError => false``: the query completes, each hostile row carries its error and each good row its answer,
the ledger holds every request the emulator served (same request id, status and tokens), and no Python
worker's peak memory passes 512 MiB, though a gzip bomb inflates to 2 GiB and other bodies never end.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from ledgers import own_ledger_settings
from processes import peak_rss_kib, python_workers

import aiquery
from aiquery.gateway.settings import HOSTILE_KINDS

pytestmark = pytest.mark.spark

GOOD_ROWS = 200
ROWS_PER_KIND = 2
PEAK_RSS_BOUND_MIB = 512
ENDPOINT = {"timeout": 5.0, "max_retries": 1, "max_concurrency": 16}
EXPECTED = {
    "deep_json": ["deep"],
    "huge_numbers": ["range"],
    "gzip_bomb": ["max_response_bytes"],
    "endless": ["max_response_bytes"],
    "oversized": ["max_response_bytes"],
    "trickle": ["within 5 s"],
    "html": ["not valid JSON"],
    "not_json": ["not valid JSON"],
}
"""Words each kind's error says (the cause a user needs to act on)."""


def _prompts() -> list[tuple[int, str, str]]:
    """(id, prompt, kind) with the hostile rows spread over the partitions."""
    kinds = [kind for kind in HOSTILE_KINDS for _ in range(ROWS_PER_KIND)]
    total = GOOD_ROWS + len(kinds)
    step = total // len(kinds)
    rows, hostile = [], iter(kinds)
    for number in range(total):
        kind = next(hostile, "ok") if number % step == step // 2 else "ok"
        directive = "" if kind == "ok" else f" [[fault:{kind}]]"
        rows.append((number, f"Describe catalogue item {number}{directive}", kind))
    assert sum(kind != "ok" for _, _, kind in rows) == len(kinds)
    return rows


def _reset_peak_rss(pids: list[int]) -> None:
    # Workers live across the session's queries: start their peak (VmHWM) from their current size.
    for pid in pids:
        Path(f"/proc/{pid}/clear_refs").write_text("5")


def test_hostile_answers_are_row_errors(spark: Any, gateway: Any, tmp_path: Path) -> None:
    settings = own_ledger_settings(gateway, tmp_path, "hostile")
    settings = settings.with_endpoint("hostile-chat", api="chat", **ENDPOINT)
    settings = settings.with_endpoint("hostile-embed", api="embeddings", **ENDPOINT)
    aiquery.register(spark, settings=settings)
    _reset_peak_rss(python_workers(os.getpid()))
    rows = _prompts()
    kind_of = {number: kind for number, _, kind in rows}
    started = time.monotonic()
    # The session's default parallelism (local[2]): two partitions, each with hostile rows.
    frame = spark.createDataFrame([(number, prompt) for number, prompt, _ in rows], "id long, prompt string")
    assert frame.rdd.getNumPartitions() == 2
    answers = frame.selectExpr(
        "id",
        "ai_query('hostile-chat', prompt, failOnError => false) AS chat",
        "ai_query('hostile-embed', prompt, failOnError => false) AS embed",
    ).collect()
    seconds = time.monotonic() - started
    peaks_mib = {pid: peak_rss_kib(pid) // 1024 for pid in python_workers(os.getpid())}

    assert len(answers) == len(rows)
    for answer in answers:
        kind = kind_of[answer.id]
        for column in (answer.chat, answer.embed):
            if kind == "ok" or (kind == "huge_numbers" and column is answer.chat):
                # A chat answer whose only huge numbers are its token counts is still an answer (counts unknown).
                assert column.errorMessage is None and column.result, (answer.id, column)
            else:
                assert column.result is None and column.errorMessage, (kind, column)
                assert column.errorMessage.startswith("endpoint 'hostile-"), column.errorMessage
                assert "Traceback" not in column.errorMessage and len(column.errorMessage) < 2000, column
                assert any(word in column.errorMessage for word in EXPECTED[kind]), (kind, column.errorMessage)
    assert all(len(answer.embed.result) > 10 for answer in answers if kind_of[answer.id] == "ok")

    aiquery.flush_usage(spark)
    ledger = spark.sql(
        f"SELECT request_id, status_code, input_tokens, output_tokens, tokens_estimated FROM {settings.usage.table}"
    ).collect()
    served = gateway.requests()
    _assert_ledger_is_the_emulator_log(ledger, served)
    outcomes = {entry["outcome"] for entry in served}
    assert outcomes == {"ok", *HOSTILE_KINDS}, outcomes
    print("\nhostile:", json.dumps({"rows": len(rows), "seconds": round(seconds, 1), "peak_rss_mib": peaks_mib}))
    assert peaks_mib and max(peaks_mib.values()) < PEAK_RSS_BOUND_MIB, peaks_mib
    spark.sql(f"DROP TABLE {settings.usage.table}")


def _assert_ledger_is_the_emulator_log(ledger: list[Any], served: list[dict[str, Any]]) -> None:
    by_id = {entry["client_request_id"]: entry for entry in served}
    ids = [row.request_id for row in ledger]
    assert len(ids) == len(set(ids)), "a request_id appears twice in the ledger"
    assert set(ids) == set(by_id), "the ledger and the emulator disagree on which requests were made"
    answered = 0
    for row in ledger:
        entry = by_id[row.request_id]
        if entry["outcome"] == "ok":
            # Read, with the emulator's counts; or (on a loaded machine) given up on before the answer came.
            read = (200, entry["input_tokens"], entry["output_tokens"])
            assert (row.status_code, row.input_tokens, row.output_tokens) in (read, (None, None, None)), (row, entry)
            answered += row.status_code == 200
        else:
            # No count read from the body: none, or estimated and flagged as such (never a huge or invented one).
            # A body that never finished arriving may have no status either.
            assert row.status_code in (200, None), (row, entry)
            if not row.tokens_estimated:
                assert (row.input_tokens or 0, row.output_tokens or 0) == (0, 0), (row, entry)
            else:
                assert row.input_tokens < 100 and row.output_tokens < 100, (row, entry)
    assert answered == 2 * GOOD_ROWS  # each good row read once per endpoint
