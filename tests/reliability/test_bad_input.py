"""Bad input, one case at a time: each gives a clear error or a NULL as ai_query defines, sends nothing it should
not, and leaves nothing half-written in Delta.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from reliability_helpers import assert_ledger_matches_emulator, by_status, ledger_rows, served_by

import aiquery
from aiquery.config import load_settings
from aiquery.errors import ConfigError

pytestmark = pytest.mark.spark


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


CONFIG = f"""
[endpoints.bad-chat]
api = "chat"

[endpoints.nowhere]
api = "chat"
base_url = "http://127.0.0.1:{closed_port()}/v1"
max_retries = 1
"""


@pytest.fixture
def sql(spark: Any, gateway: Any, register_with_ledger: Callable[..., str]) -> Callable[[str], list[Any]]:
    """Run a query against the emulator (usage ledger on) and return its rows."""
    register_with_ledger(gateway, CONFIG)
    return lambda query: spark.sql(query).collect()


def served(gateway: Any, model: str = "bad-chat") -> int:
    return len(served_by(gateway, model))


def test_null_empty_and_whitespace_prompts(sql: Callable[[str], list[Any]], gateway: Any) -> None:
    rows = sql(
        "SELECT p, ai_query('bad-chat', p, failOnError => false) AS r "
        "FROM VALUES (CAST(NULL AS STRING)), (''), ('   '), ('\\t\\n') AS t(p)"
    )
    by_prompt = {row.p: row.r for row in rows}
    assert by_prompt[None].result is None and by_prompt[None].errorMessage is None  # NULL in, NULL out, no call
    for prompt in ("", "   ", "\t\n"):
        # Sent as they are: whether an empty prompt is acceptable is the model's call, not ours.
        assert (by_prompt[prompt].result is None) != (by_prompt[prompt].errorMessage is None), prompt
    assert served(gateway) == 3


def test_a_one_megabyte_prompt_is_answered_and_an_oversized_one_refused_unsent(
    sql: Callable[[str], list[Any]], gateway: Any
) -> None:
    rows = sql(
        "SELECT length(p) AS n, ai_query('bad-chat', p, failOnError => false) AS r "
        "FROM (SELECT repeat('word ', 1024 * 1024 / 5) AS p UNION ALL SELECT repeat('x', 17 * 1024 * 1024) AS p)"
    )
    one_mb, oversized = sorted(rows, key=lambda row: row.n)
    assert one_mb.r.result and one_mb.r.errorMessage is None
    assert oversized.r.result is None and "above the 16 MiB limit" in oversized.r.errorMessage
    (entry,) = served_by(gateway, "bad-chat")  # only the 1 MB prompt went out
    assert entry["input_tokens"] > 200_000


def test_invalid_utf8_fails_only_its_own_row(
    sql: Callable[[str], list[Any]], spark: Any, gateway: Any, register_with_ledger: Callable[..., str]
) -> None:
    from pyspark.sql import functions as F

    from aiquery.functions import ai_query

    rows = sql(
        "SELECT id, ai_query('bad-chat', p, failOnError => false) AS r FROM VALUES "
        "(1, CAST(X'C328FF' AS STRING)), (2, 'fine'), (3, CAST(X'EDA080' AS STRING)), (4, '\\uD800 lone') AS t(id, p)"
    )
    by_id = {row.id: row.r for row in rows}
    assert by_id[1].result is None and "not valid UTF-8 (byte 0xC3)" in by_id[1].errorMessage
    assert by_id[3].result is None and "not valid UTF-8 (byte 0xED)" in by_id[3].errorMessage  # CESU surrogate
    assert by_id[2].result and by_id[2].errorMessage is None
    # Spark encodes a lone surrogate in a SQL literal as '?', which is valid text and is sent.
    assert by_id[4].result and by_id[4].errorMessage is None
    assert served(gateway) == 2

    with pytest.raises(Exception, match=r"not valid UTF-8 \(byte 0xC3\)"):
        sql("SELECT ai_query('bad-chat', CAST(X'C328FF' AS STRING))")
    frame = spark.sql("SELECT CAST(X'FF' AS STRING) AS p UNION ALL SELECT 'fine' AS p")
    api_rows = frame.select(ai_query("bad-chat", F.col("p"), failOnError=False).alias("r")).collect()
    assert sorted(str(row.r.errorMessage) for row in api_rows) == [
        "None",
        "endpoint 'bad-chat': the request text is not valid UTF-8 (byte 0xFF); clean the column before calling "
        "ai_query",
    ]


def test_unreachable_host_is_a_row_error_and_every_attempt_is_in_the_ledger(
    sql: Callable[[str], list[Any]], spark: Any, gateway: Any, register_with_ledger: Callable[..., str]
) -> None:
    table = register_with_ledger(gateway, CONFIG)
    (row,) = spark.sql("SELECT ai_query('nowhere', 'hello?', failOnError => false) AS r").collect()
    assert row.r.result is None
    assert "endpoint 'nowhere': cannot connect to 127.0.0.1:" in row.r.errorMessage
    assert "(after 2 attempts)" in row.r.errorMessage  # max_retries = 1
    aiquery.flush_usage(spark)
    ledger = ledger_rows(spark, table)
    assert [(r.attempt, r.status_code) for r in sorted(ledger, key=lambda r: r.attempt)] == [(1, None), (2, None)]
    assert all("cannot connect" in r.error_message for r in ledger)


def test_an_unknown_endpoint_is_a_404_not_retried_that_names_the_url(
    spark: Any, gateway: Any, register_with_ledger: Callable[..., str]
) -> None:
    # With a host set, a name the configuration does not know is sent to the gateway, which has no such
    # endpoint. The emulator serves any model name, so the unknown endpoint is a route it does not serve.
    config = f'[endpoints.misnamed]\napi = "chat"\nbase_url = "{gateway.url}/ai-gateway/nope/v1"\n'
    register_with_ledger(gateway, config)
    (row,) = spark.sql("SELECT ai_query('misnamed', 'hello', failOnError => false) AS r").collect()
    assert row.r.result is None
    assert "HTTP 404" in row.r.errorMessage and "not retried: no model 'misnamed' at " in row.r.errorMessage
    assert f"{gateway.url}/ai-gateway/nope/v1/chat/completions" in row.r.errorMessage
    assert gateway.stats()["by_status"] == {"404": 1}  # one request: not retried


def test_an_unconfigured_endpoint_without_a_host_fails_at_analysis(spark: Any, gateway: Any) -> None:
    from aiquery.config import Settings, UsageSettings

    aiquery.register(spark, settings=Settings(usage=UsageSettings(enabled=False)))
    with pytest.raises(Exception, match="DATABRICKS_HOST is not set") as raised:
        spark.sql("SELECT ai_query('databricks-gpt-unknown', 'hi')").collect()
    assert "endpoint 'databricks-gpt-unknown'" in str(raised.value)
    assert served(gateway, "databricks-gpt-unknown") == 0


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[endpoints.x]\napi = "grpc"\n', "[endpoints.x] api = 'grpc' is invalid; expected one of chat, embeddings"),
        ('[endpoints.x\napi = "chat"\n', "not valid TOML: Expected ']' at the end of a table declaration (at line 1"),
        ("[endpoints.x]\napi = chat\n", "not valid TOML: Invalid value (at line 2, column 7)"),
        ('[endpoints.x]\nmax_concurrency = "8"\n', "max_concurrency = '8' is invalid; expected a whole number"),
        ("[endpoints.x]\ntimout = 5\n", "has unknown key 'timout'; allowed:"),
        ("[endpoints.x]\nrequest_tags = { team = 1 }\n", "request_tags = {'team': 1} is invalid"),
    ],
)
def test_configuration_errors_name_the_file_and_the_fault(
    spark: Any, gateway: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toml: str, message: str
) -> None:
    config = tmp_path / "broken.toml"
    config.write_text(toml)
    with pytest.raises(ConfigError) as raised:
        load_settings({"DATABRICKS_HOST": gateway.url}, config_path=config)
    assert str(raised.value).startswith(str(config)) and message in str(raised.value)
    # The same file named by AIQUERY_CONFIG fails register() itself, before any query can run.
    monkeypatch.setenv("AIQUERY_CONFIG", str(config))
    with pytest.raises(ConfigError, match=r"broken\.toml"):
        aiquery.register(spark)


@pytest.mark.parametrize(
    ("argument", "error_class"),
    [
        ("modelParameters => named_struct('max_tokens', 'ten')", "INVALID_PARAMETER_DATA_TYPE"),
        ("modelParameters => named_struct('max_tokens', 1.5)", "INVALID_PARAMETER_DATA_TYPE"),
        ("modelParameters => named_struct('stop', 5)", "INVALID_PARAMETER_DATA_TYPE"),
        ("modelParameters => named_struct('top_p', array(1))", "INVALID_PARAMETER_DATA_TYPE"),
        ("modelParameters => 'max_tokens=5'", "DATATYPE_MISMATCH.UNEXPECTED_INPUT_TYPE"),
        ("responseFormat => '{not json'", "AI_FUNCTION_UNSUPPORTED_RESPONSE_FORMAT.JSON_STRING"),
        ("""responseFormat => '{"type": "json_schema"}'""", "AI_FUNCTION_UNSUPPORTED_RESPONSE_FORMAT.JSON_STRING"),
        ("responseFormat => 'NOT A TYPE<'", "INVALID_SCHEMA.PARSE_ERROR"),
        ("""requestTags => '{"team": 1}'""", "AI_FUNCTION_INVALID_REQUEST_TAGS"),
        ("""requestTags => '{"team": {"a": "b"}}'""", "AI_FUNCTION_INVALID_REQUEST_TAGS"),
        ("requestTags => 'team=ml'", "AI_FUNCTION_INVALID_REQUEST_TAGS"),
        ("requestTags => map('team', 1)", "AI_FUNCTION_INVALID_REQUEST_TAGS"),
    ],
)
def test_invalid_arguments_fail_at_analysis_before_any_request(
    sql: Callable[[str], list[Any]], gateway: Any, argument: str, error_class: str
) -> None:
    with pytest.raises(Exception, match=error_class):
        sql(f"SELECT ai_query('bad-chat', 'hello', {argument}, failOnError => false)")
    assert served(gateway) == 0


def test_a_wrong_token_is_not_retried_and_the_error_says_so(
    spark: Any, gateway: Any, register_with_ledger: Callable[..., str]
) -> None:
    table = register_with_ledger(gateway, CONFIG, token="dapi-wrong-token-000")
    rows = spark.sql(
        "SELECT ai_query('bad-chat', CAST(id AS STRING), failOnError => false) AS r FROM range(3)"
    ).collect()
    for row in rows:
        assert row.r.result is None
        assert row.r.errorMessage == (
            "endpoint 'bad-chat': HTTP 401: Invalid or missing credentials. "
            "(not retried: check the token in DATABRICKS_TOKEN)"
        )
    with pytest.raises(Exception, match=r"HTTP 401: .*not retried: check the token in DATABRICKS_TOKEN"):
        spark.sql("SELECT ai_query('bad-chat', 'strict')").collect()
    assert by_status(served_by(gateway, "bad-chat")) == {"401": 4}  # one request per row: no retry
    aiquery.flush_usage(spark)
    assert_ledger_matches_emulator(ledger_rows(spark, table), served_by(gateway, "bad-chat"))


def test_a_failing_ctas_leaves_no_table(
    sql: Callable[[str], list[Any]], spark: Any, gateway: Any, tmp_path: Path
) -> None:
    location = tmp_path / "answers"
    with pytest.raises(Exception, match="HTTP 400"):
        sql(
            f"CREATE TABLE reliability_answers USING delta LOCATION '{location}' AS "
            "SELECT id, ai_query('bad-chat', CASE WHEN id = 40 THEN 'bad [[fault:400]]' ELSE CAST(id AS STRING) END) "
            "AS answer FROM range(0, 64, 1, 2)"
        )
    assert served(gateway) > 0  # it did run, and failed part-way
    with pytest.raises(Exception, match="REQUIRED_PARAMETER_NOT_FOUND"):
        sql(f"CREATE TABLE reliability_answers USING delta LOCATION '{location}' AS SELECT ai_query('bad-chat')")
    assert not spark.catalog.tableExists("reliability_answers")
    # Delta writes data files before its commit; without a commit in _delta_log there is no table to read.
    assert not list(location.glob("_delta_log/*.json"))
