"""A client without a JVM (``pyspark-client`` and aiquery, no extras) against ``aiquery connect-server``.

One client process runs tests/connect/thin_client_script.py (SQL, the DataFrame API, two sessions, a wrong token);
each test here judges one part of what it found, against the emulator's own log where requests are counted.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.spark, pytest.mark.slow]

SCRIPT = Path(__file__).with_name("thin_client_script.py")
CLIENT_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def client_run(connect_server: Any, thin_client_python: Path, gateway_session: Any) -> Iterator[dict[str, Any]]:
    gateway_session.reset()
    suffix = secrets.token_hex(4)
    wrong = connect_server.url.replace(connect_server.token, "not-" + connect_server.token)
    done = subprocess.run(
        [str(thin_client_python), str(SCRIPT), connect_server.url, wrong, suffix],
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT_S,
        env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home())},  # no PYTHONPATH: only the thin environment
    )
    assert done.returncode == 0, done.stderr[-4000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    found["suffix"] = suffix
    found["served"] = gateway_session.requests()
    yield found


def test_the_client_has_no_jvm_and_register_checks_the_server(client_run: dict[str, Any]) -> None:
    assert client_run["py4j_installed"] is False
    assert client_run["classic_modules_after"] == []
    assert "register_error" not in client_run
    assert client_run["register_warnings"] == []  # same aiquery version on both sides
    assert client_run["no_aiquery_error"].startswith("ConfigError: ")
    assert "`aiquery connect-server`" in client_run["no_aiquery_error"]


def test_sql_ai_query_with_named_arguments(client_run: dict[str, Any]) -> None:
    assert [bool(row["a"]) for row in client_run["plain"]] == [True] * 3
    assert [bool(row["a"]) for row in client_run["named"]] == [True] * 2
    [failed] = client_run["fail_on_error"]
    assert failed["a"]["result"] is None and "400" in failed["a"]["errorMessage"]
    reviews = [row["r"] for row in client_run["return_type"]]
    assert all(isinstance(r["product"], str) and isinstance(r["rating"], int) for r in reviews)


def test_an_analysis_error_class_reaches_the_client(client_run: dict[str, Any]) -> None:
    assert "invalid_parameters" not in client_run
    assert "AI_FUNCTION_INVALID_MODEL_PARAMETERS" in client_run["invalid_parameters_error"]


def test_ai_functions_and_the_dataframe_api_give_what_sql_gives(client_run: dict[str, Any]) -> None:
    assert all(row["s"] and row["c"] in ("urgent", "not urgent", None) for row in client_run["ai_functions_sql"])
    assert "frame_api_error" not in client_run, client_run.get("frame_api_error")
    assert client_run["frame_api"] == client_run["frame_sql"]
    assert all(row["ai_query"]["result"] for row in client_run["frame_api"])


def test_a_session_cap_leaves_another_session_uncapped(client_run: dict[str, Any]) -> None:
    assert "capped_error" not in client_run and "uncapped_error" not in client_run
    refused = [error for error in client_run["capped"] if error is not None]
    assert refused and all("[AI_QUERY_BUDGET_EXCEEDED]" in error for error in refused)
    assert len(refused) < 30  # rows answered before the cap was reached
    assert client_run["uncapped"] == [None] * 30


def test_the_ledger_has_each_session_s_tag_user_and_id(client_run: dict[str, Any]) -> None:
    suffix, sessions = client_run["suffix"], client_run["session_ids"]
    assert "ledger_error" not in client_run, client_run.get("ledger_error")
    expected = {
        f"capped-{suffix}": (f"alice-{suffix}", sessions["capped"]),
        f"free-{suffix}": (f"bob-{suffix}", sessions["free"]),
    }
    assert {(row["query_tag"], row["requester"]) for row in client_run["ledger"]} == {
        (tag, user) for tag, (user, _) in expected.items()
    }
    assert "ledger_sessions_error" not in client_run, client_run.get("ledger_sessions_error")
    assert {(row["query_tag"], row["session_id"]) for row in client_run["ledger_sessions"]} == {
        (tag, session) for tag, (_, session) in expected.items()
    }
    assert sum(row["query_tag"] == f"free-{suffix}" for row in client_run["ledger"]) == 30
    # aiquery.progress(spark) through aiquery_progress(): the server's queries, by each session's tag.
    assert {f"capped-{suffix}", f"free-{suffix}"} <= set(client_run["progress"])
    assert isinstance(client_run["flushed"], int)


def test_the_ledger_read_back_equals_the_emulator_s_log(client_run: dict[str, Any]) -> None:
    # Both ways, over the two sessions' requests (tagged with this run): none missing from either side.
    suffix = client_run["suffix"]
    served = {
        entry["client_request_id"]: entry
        for entry in client_run["served"]
        if (entry.get("request_tags") or {}).get("run") == suffix
    }
    sent = [row for row in client_run["ledger"] if not row["cache_hit"]]
    assert sent and {row["request_id"] for row in sent} == set(served)
    for row in sent:
        entry = served[row["request_id"]]
        assert row["status_code"] == entry["status"]
        assert (row["input_tokens"], row["output_tokens"]) == (entry["input_tokens"], entry["output_tokens"])


def test_a_wrong_token_is_refused_and_nothing_is_sent(client_run: dict[str, Any]) -> None:
    error = client_run.get("wrong_token_error", "")
    assert "wrong_token" not in client_run
    assert "UNAUTHENTICATED" in error or "authentication" in error.lower(), error
    assert not any("wrong-token" in json.dumps(entry.get("request_tags")) for entry in client_run["served"])
