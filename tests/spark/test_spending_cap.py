"""The spending cap through Spark SQL: once reached no request is sent, answered rows are kept, rows not sent carry
AI_QUERY_BUDGET_EXCEEDED, and a re-run without the cap finishes through the answer store without paying again. A
cap belongs to the session that set it (another session neither lifts nor resets it), and requests that time out
count at a pessimistic cost. (The same on a standalone cluster with two workers:
tests/cluster/test_cluster_coordinator.py.)
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from ledgers import own_ledger_settings

import aiquery
from aiquery.spark.registry import ledger_for

pytestmark = pytest.mark.spark

# Prices high enough that a request costs about a cent: a cap of 10 cents is reached after a few dozen requests.
PRICE = {"input_per_million": 600.0, "output_per_million": 1200.0}
CONCURRENCY = 4
ROWS = 400


def register(spark: Any, gateway: Any, tmp_path: Path, **endpoints: dict[str, Any]) -> Any:
    settings = own_ledger_settings(gateway, tmp_path, "cap")
    for name, options in endpoints.items():
        settings = settings.with_endpoint(name, **options)
    aiquery.register(spark, settings=settings)
    spark.conf.set("aiquery.cache.enabled", "true")
    return settings


@pytest.fixture
def capped(spark: Any) -> Any:
    """The session; its cap settings are removed afterwards (they would cap every later test)."""
    yield spark
    spark.conf.unset("aiquery.budget.max_cost")
    spark.conf.unset("aiquery.budget.max_tokens")


def request_cost(entry: dict[str, Any]) -> float:
    """What the emulator's log says a request cost at PRICE (the chat API reports no cache tokens here)."""
    return (
        entry["input_tokens"] * PRICE["input_per_million"] + entry["output_tokens"] * PRICE["output_per_million"]
    ) / 1e6


def test_a_cost_cap_stops_sending_keeps_answered_rows_and_a_rerun_finishes_without_paying_again(
    capped: Any, gateway: Any, tmp_path: Path
) -> None:
    spark = capped
    register(
        spark, gateway, tmp_path, **{"priced-chat": {"api": "chat", "max_concurrency": CONCURRENCY, "price": PRICE}}
    )
    gateway.configure(latency_ms=20)
    query = (
        "SELECT id, ai_query('priced-chat', 'Summarize row ' || id || ': ' || repeat('word ', id % 40), "
        f"failOnError => false) AS r FROM range(0, {ROWS}, 1, 2)"
    )
    # A request of this query costs about 0.045 USD on average (the emulator's token counts at PRICE; checked below):
    # the cap is a tenth of the whole query.
    per_request = 0.045
    cap = round(ROWS * per_request / 10, 4)
    spark.sql(f"SET aiquery.budget.max_cost = {cap}")
    first = {row.id: row.r for row in spark.sql(query).collect()}
    log = gateway.requests()
    spent = sum(request_cost(entry) for entry in log)
    answered = {key for key, value in first.items() if value.result is not None}
    refused = {key: value.errorMessage for key, value in first.items() if value.result is None}
    assert answered and refused, (len(answered), len(refused))
    assert len(log) == len(answered)  # every request sent was answered and kept
    # At most the cap plus the requests in flight when it was reached (2 workers x CONCURRENCY).
    most = max(request_cost(entry) for entry in log)
    assert spent <= cap + 2 * CONCURRENCY * most, (spent, cap, most)
    assert spent >= 0.5 * cap  # it did spend up to the cap (reservations are averages, not worst cases)
    assert all("[AI_QUERY_BUDGET_EXCEEDED]" in message and f"{cap:g} USD" in message for message in refused.values())

    # The cap is the session's: it stays reached for its next query, and store answers are still served.
    again = spark.sql(query).collect()
    assert len(gateway.requests()) == len(log)
    assert sum(1 for row in again if row.r.result is not None) == len(answered)

    # Without the cap the re-run sends only the rows that were refused.
    spark.sql("RESET aiquery.budget.max_cost")
    final = {row.id: row.r for row in spark.sql(query).collect()}
    assert all(value.result is not None for value in final.values())
    resent = gateway.requests()[len(log) :]
    assert len(resent) == len(refused)
    assert {entry["client_request_id"] for entry in resent}.isdisjoint(entry["client_request_id"] for entry in log)

    # The ledger holds exactly the HTTP requests the emulator served, each with its cost.
    aiquery.flush_usage(spark)
    ledger = spark.read.format("delta").load(str(tmp_path / "usage_table")).where("NOT cache_hit").collect()
    served = {entry["client_request_id"]: entry for entry in gateway.requests()}
    assert {row.request_id for row in ledger} == set(served)
    assert all(row.cost == pytest.approx(request_cost(served[row.request_id])) for row in ledger)
    whole = sum(request_cost(entry) for entry in served.values())  # every row paid once
    assert 8 * cap <= whole <= 12 * cap, (whole, cap)  # the job as designed: about ten times the cap


def test_with_fail_on_error_the_query_fails_naming_the_cap(capped: Any, gateway: Any, tmp_path: Path) -> None:
    spark = capped
    register(spark, gateway, tmp_path, **{"priced-chat": {"api": "chat", "max_concurrency": 2, "price": PRICE}})
    spark.sql("SET aiquery.budget.max_cost = 0.02")
    with pytest.raises(Exception, match=r"AI_QUERY_BUDGET_EXCEEDED.*0\.02 USD"):
        spark.sql("SELECT ai_query('priced-chat', 'Describe ' || id) FROM range(0, 200, 1, 2)").collect()
    sent = len(gateway.requests())
    assert 0 < sent < 20


def test_a_token_cap_counts_input_and_output_tokens(capped: Any, gateway: Any, tmp_path: Path) -> None:
    spark = capped
    register(spark, gateway, tmp_path, **{"free-chat": {"api": "chat", "max_concurrency": 2}})
    spark.sql("SET aiquery.budget.max_tokens = 2000")
    rows = spark.sql(
        "SELECT ai_query('free-chat', 'Describe ' || id, failOnError => false) AS r FROM range(0, 300, 1, 2)"
    ).collect()
    log = gateway.requests()
    tokens = sum(entry["input_tokens"] + entry["output_tokens"] for entry in log)
    most = max(entry["input_tokens"] + entry["output_tokens"] for entry in log)
    assert 1000 <= tokens <= 2000 + 2 * 2 * most, tokens
    refused = [row for row in rows if row.r.result is None]
    assert refused and all("2,000 tokens" in row.r.errorMessage for row in refused)


def test_a_cost_cap_refuses_at_analysis_time_a_call_it_could_not_count(
    capped: Any, gateway: Any, tmp_path: Path
) -> None:
    spark = capped
    register(
        spark,
        gateway,
        tmp_path,
        **{
            "unpriced-chat": {"api": "chat", "model": "a-model-nobody-prices"},
            "dbu-chat": {"api": "chat", "price": PRICE, "currency": "DBU"},
        },
    )
    spark.sql("SET aiquery.budget.max_cost = 5")
    with pytest.raises(Exception, match=r"AI_QUERY_BUDGET_UNPRICED.*'unpriced-chat'.*no price"):
        spark.sql("SELECT ai_query('unpriced-chat', 'hello')").collect()
    with pytest.raises(Exception, match=r"AI_QUERY_BUDGET_UNPRICED.*'dbu-chat'.*prices in DBU"):
        spark.sql("SELECT ai_query('dbu-chat', 'hello')").collect()
    spark.sql("SET aiquery.budget.max_cost = 5 DBU")
    assert spark.sql("SELECT ai_query('dbu-chat', 'hello') AS r").collect()[0].r
    spark.sql("SET aiquery.budget.max_cost = lots")
    with pytest.raises(Exception, match=r"aiquery.budget.max_cost must be a positive amount.*'lots'"):
        spark.sql("SELECT ai_query('dbu-chat', 'hello')").collect()
    assert len(gateway.requests()) == 1  # nothing else was sent


def test_another_session_neither_lifts_nor_resets_a_sessions_cap(capped: Any, gateway: Any, tmp_path: Path) -> None:
    """Session A caps itself and starts; session B (spark.newSession(), no cap) analyses and runs its own query
    meanwhile: A stays within its cap plus its requests in flight, and B is not capped by A's cap."""
    spark = capped
    options = {"api": "chat", "max_concurrency": CONCURRENCY, "price": PRICE}
    settings = register(spark, gateway, tmp_path, **{"priced-chat": options})
    other = spark.newSession()
    aiquery.register(other, settings=settings)
    gateway.configure(latency_ms=300)
    cap = round(24 * 0.045, 4)  # about 24 requests of A's query (0.045 USD each on average)
    spark.sql(f"SET aiquery.budget.max_cost = {cap}")

    def tagged(session: str, first: int, rows: int) -> str:
        # Rows of their own (other prompts): the answer store shares nothing between the two queries.
        return (
            "SELECT id, ai_query('priced-chat', 'Summarize row ' || id || ': ' || repeat('word ', id % 40), "
            f"""requestTags => '{{"session": "{session}"}}', failOnError => false) AS r """
            f"FROM range({first}, {first + rows}, 1, 2)"
        )

    def requests_of(session: str) -> list[dict[str, Any]]:
        return [entry for entry in gateway.requests() if entry["request_tags"] == {"session": session}]

    first: dict[int, Any] = {}

    def run_a() -> None:
        first.update((row.id, row.r) for row in spark.sql(tagged("a", 0, 200)).collect())

    worker = threading.Thread(target=run_a)
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while not requests_of("a") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert requests_of("a"), "session A sent nothing"
        # B analyses and runs a query while A's requests go.
        second = other.sql(tagged("b", 1000, 40)).collect()
    finally:
        worker.join(120)
        ledger_for(other).stop_background()  # its ledger is this test's
    assert all(row.r.result is not None for row in second)  # A's cap does not count B's requests
    assert len(requests_of("b")) == 40
    sent = requests_of("a")
    spent = sum(request_cost(entry) for entry in sent)
    most = max(request_cost(entry) for entry in sent)
    assert spent <= cap + 2 * CONCURRENCY * most, (spent, cap, len(sent))
    refused = [value.errorMessage for value in first.values() if value.result is None]
    assert refused and all(f"this session's spending cap of {cap:g} USD" in message for message in refused)


def test_requests_that_time_out_count_at_a_pessimistic_cost(capped: Any, gateway: Any, tmp_path: Path) -> None:
    """Every attempt times out (the endpoint's timeout is 1 s; the model takes longer), so no request reports usage.
    At 1,000 USD per million tokens, at most cap / (input cost of one request) requests go, plus those in flight."""
    spark = capped
    price = {"input_per_million": 1000.0, "output_per_million": 1000.0}
    slow = {"api": "chat", "max_concurrency": CONCURRENCY, "price": price, "timeout": 1, "max_retries": 2}
    register(spark, gateway, tmp_path, **{"slow-chat": slow})
    gateway.configure(fault_rates={"hang": 1.0}, hang_seconds=30)
    prompt = "word " * 40  # 200 characters: a body of at least 50 input tokens, at least 0.05 USD of input
    input_cost = len(prompt) // 4 * price["input_per_million"] / 1e6
    cap = round(10 * input_cost, 4)  # about ten requests' input
    spark.sql(f"SET aiquery.budget.max_cost = {cap}")
    rows = spark.sql(
        f"SELECT ai_query('slow-chat', id || ' {prompt}', failOnError => false) AS r FROM range(0, 60, 1, 2)"
    ).collect()
    sent = gateway.stats()["requests"]
    assert 0 < sent <= cap / input_cost + 2 * CONCURRENCY, sent
    refused = [row.r.errorMessage for row in rows if "[AI_QUERY_BUDGET_EXCEEDED]" in (row.r.errorMessage or "")]
    assert refused and f"{cap:g} USD" in refused[0], rows[:3]
    # The ledger's cost of a request that timed out stays NULL: only the cap counts it.
    aiquery.flush_usage(spark)
    ledger = spark.read.format("delta").load(str(tmp_path / "usage_table")).collect()
    assert len(ledger) == sent and all(row.cost is None for row in ledger)
