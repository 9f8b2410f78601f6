"""A batch run's rounds without Spark: collected requests in the state, submitted, waited for, stored in the
state, the answer store and the ledger's spool (one record per line, at the batch price), resumed without a
second batch or a second record; a wait that runs out cancels and stores what came back."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from batch_helpers import FAMILIES, endpoint, requests

from aiquery.apis.request_json import request_to_json
from aiquery.config import Endpoint
from aiquery.pricing import Price
from aiquery.provider_batches import ProviderHTTP, client_for
from aiquery.provider_batches.provider_run import RoundReport, new_run_tag, send_and_store
from aiquery.provider_batches.result_storing import LedgerSide
from aiquery.provider_batches.run_state import RunState
from aiquery.provider_batches.waiting import Polling
from aiquery.store.base import StoredAnswer
from aiquery.usage.codec import decode_line
from aiquery.usage.record import UsageRecord

PRICE = Price(input_per_million=2.0, output_per_million=8.0)
FAST = Polling(first_s=0.05, max_s=0.2)


def priced(gateway: Any, family: str) -> Endpoint:
    import dataclasses

    return dataclasses.replace(endpoint(gateway, family), price=PRICE)


def collect(state: RunState, family: str, count: int) -> dict[str, Any]:
    found = {
        f"{family}{index:04d}" + "0" * 50: request for index, request in enumerate(requests(family, count).values())
    }
    state.add_requests(family, [(key, json.dumps(request_to_json(r))) for key, r in found.items()], 1)
    return found


def round_trip(state: RunState, endpoints: dict[str, Endpoint], spool: Path, wait_s: float = 30.0) -> RoundReport:
    side = LedgerSide(spool_dir=spool, run=new_run_tag(state), query_tag="tag-1", requester="me")
    put: dict[str, str] = {}
    report = asyncio.run(
        send_and_store(state, endpoints, tag=side.run, deadline=time.monotonic() + wait_s, ledger=side,
                       put_answers=put.update, polling=FAST)
    )  # fmt: skip
    report.put = put  # type: ignore[attr-defined]
    return report


def records(spool: Path) -> list[UsageRecord]:
    return [decode_line(line) for path in sorted(spool.glob("usage-*.json")) for line in path.read_text().splitlines()]


def listed(gateway: Any, family: str) -> list[Any]:
    async def work() -> list[Any]:
        http = ProviderHTTP()
        try:
            return await client_for(endpoint(gateway, family), http).list(None)
        finally:
            await http.aclose()

    return asyncio.run(work())


def test_one_batch_per_endpoint_answers_every_line_once_at_the_batch_price(batch_gateway: Any, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    families = ["chat", "anthropic", "gemini"]
    endpoints = {family: priced(batch_gateway, family) for family in families}
    with RunState(tmp_path / "state") as state:
        wanted = {family: collect(state, family, 8) for family in families}
        report = round_trip(state, endpoints, spool)
        assert report.created == 3 and report.stored.succeeded == 24
        assert len(report.put) == 24  # type: ignore[attr-defined]
        for family in families:
            answers = state.answers(list(wanted[family]))
            assert set(answers) == set(wanted[family])
            assert {StoredAnswer.decode(text).batch_id for text in answers.values()} == {
                row.provider_id for row in state.batches(family)
            }
        found = records(spool)
        assert len(found) == 24 and len({record.request_id for record in found}) == 24
        for record in found:
            live = PRICE.cost(record.input_tokens, record.output_tokens)
            assert record.cost is not None and live is not None and abs(record.cost - live / 2) < 1e-12
            assert record.batch_id and record.status_code == 200 and record.query_tag == "tag-1"
        # Run again on the same state: nothing submitted, nothing recorded twice.
        again = round_trip(state, endpoints, spool)
        assert again.created == 0 and again.stored.succeeded == 0
        assert len(records(spool)) == 24
    for family in families:
        assert len(listed(batch_gateway, family)) == 1


def test_a_wait_that_runs_out_cancels_and_keeps_what_came_back(batch_gateway: Any, tmp_path: Path) -> None:
    batch_gateway.configure(batch_delay=3.0, batch_cancel_s=0.1)
    spool = tmp_path / "spool"
    spool.mkdir()
    with RunState(tmp_path / "state") as state:
        wanted = collect(state, "chat", 30)
        report = round_trip(state, {"chat": priced(batch_gateway, "chat")}, spool, wait_s=1.0)
        kinds = state.outcome_kinds()
        assert 0 < kinds["succeeded"] < 30 and kinds["succeeded"] + kinds.get("cancelled", 0) == 30
        assert any("cancelled" in note for note in report.notes)
        failures = state.failures(list(wanted))
        assert all("cancelled with batch" in message for message in failures.values())
        # A line cancelled is recorded once, at no cost.
        found = records(spool)
        assert len(found) == 30
        assert all(record.cost == 0 for record in found if record.error_message)


def test_failed_lines_keep_their_error_by_fingerprint(batch_gateway: Any, tmp_path: Path) -> None:
    batch_gateway.configure(batch_failed_share=0.1, batch_delay=0.1)
    spool = tmp_path / "spool"
    spool.mkdir()
    with RunState(tmp_path / "state") as state:
        wanted = collect(state, "anthropic", 60)
        round_trip(state, {"anthropic": priced(batch_gateway, "anthropic")}, spool)
        failures = state.failures(list(wanted))
        assert 0 < len(failures) < 20
        assert len(state.answers(list(wanted))) + len(failures) == 60
        assert FAMILIES["anthropic"]["api"] == "anthropic"


def test_a_batch_created_before_a_crash_is_found_and_not_created_again(batch_gateway: Any, tmp_path: Path) -> None:
    """The run died between a create call's answer and the state's update: the intent has no id. The resumed
    round finds the batch by its tag (OpenAI, Gemini) or by its size among the unclaimed (Anthropic)."""
    spool = tmp_path / "spool"
    spool.mkdir()
    families = ["chat", "anthropic", "gemini"]
    endpoints = {family: priced(batch_gateway, family) for family in families}
    with RunState(tmp_path / "state") as state:
        run = new_run_tag(state)
        for family in families:
            wanted = collect(state, family, 5)
            intent = state.add_intent(family, run, sorted(wanted), None)

            async def create(family: str = family, wanted: dict[str, Any] = wanted, tag: str = intent.tag) -> None:
                http = ProviderHTTP()
                client = client_for(endpoints[family], http)
                try:
                    await client.submit([client.line(key, wanted[key]) for key in sorted(wanted)], tag)
                finally:
                    await http.aclose()

            asyncio.run(create())
        report = round_trip(state, endpoints, spool)
        assert report.created == 0
        assert sum("found batch" in note for note in report.notes) == 3
        assert report.stored.succeeded == 15 and len(records(spool)) == 15
    for family in families:
        assert len(listed(batch_gateway, family)) == 1


def test_the_emulator_answers_live_calls_at_the_providers_paths(gateway: Any) -> None:
    """A batch endpoint's base_url is the provider's: the rows its batches did not answer go live there."""
    import aiohttp

    async def work(family: str) -> Any:
        http = ProviderHTTP()
        client = client_for(endpoint(gateway, family), http)
        request = requests(family, 1)["row-0"]
        try:
            async with aiohttp.ClientSession() as session:
                url = client.adapter.url(client.endpoint.base_url, request.model)
                body = client.adapter.build_body(request)
                async with session.post(url, json=body, headers=client.headers()) as response:
                    assert response.status == 200, (family, url, await response.text())
                    return client.adapter.parse_response(await response.json(), request)
        finally:
            await http.aclose()

    for family in FAMILIES:
        assert asyncio.run(work(family)).usage.input_tokens > 0


def round_killed_when(gateway: Any, tmp_path: Path, families: list[str], condition: Any, chunk: int = 5000) -> None:
    """Run one round (send_and_store) on the test's state in a process of its own; SIGKILL it once ``condition``
    holds."""
    import os
    import signal
    import subprocess
    import sys
    import textwrap

    from processes import wait_until

    script = textwrap.dedent(f"""
        import asyncio, dataclasses, time
        from pathlib import Path
        import aiquery.provider_batches.result_storing as storing
        from aiquery.config import load_settings
        from aiquery.pricing import Price
        from aiquery.provider_batches.provider_run import new_run_tag, send_and_store
        from aiquery.provider_batches.result_storing import LedgerSide
        from aiquery.provider_batches.run_state import RunState
        storing.CHUNK_LINES = {chunk}
        settings = load_settings({{"DATABRICKS_TOKEN": {gateway.token!r}, "DATABRICKS_HOST": {gateway.url!r}}})
        endpoints = {{}}
        for family, api, model, path in {[(f, FAMILIES[f]["api"], FAMILIES[f]["model"], FAMILIES[f]["path"])
                                          for f in families]!r}:
            found = settings.with_endpoint(family, api=api, model=model, base_url={gateway.url!r} + path,
                                           batch=True).endpoint(family)
            endpoints[family] = dataclasses.replace(found, price=Price(input_per_million=2.0,
                                                                       output_per_million=8.0))
        state = RunState({str(tmp_path / "state")!r})
        side = LedgerSide(spool_dir=Path({str(tmp_path / "spool")!r}), run=new_run_tag(state), query_tag="t",
                          requester="me")
        asyncio.run(send_and_store(state, endpoints, tag=side.run, deadline=time.monotonic() + 120, ledger=side))
    """)  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen([sys.executable, "-c", script], env=env, start_new_session=True)
    try:
        assert wait_until(condition, timeout=60), "the round never got there"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)


def test_a_store_killed_part_way_records_every_line_once_on_resume(batch_gateway: Any, tmp_path: Path) -> None:
    """SIGKILL while a batch's results are being stored (chunks of 50 lines, some published): the resumed round
    records the rest, and no line twice."""
    batch_gateway.configure(batch_delay=0.2)
    spool = tmp_path / "spool"
    spool.mkdir()
    with RunState(tmp_path / "state") as state:
        collect(state, "chat", 3000)
    round_killed_when(batch_gateway, tmp_path, ["chat"], lambda: len(list(spool.glob("usage-*.json"))) >= 5, 50)
    killed_at = len(records(spool))
    with RunState(tmp_path / "state") as state:
        report = round_trip(state, {"chat": priced(batch_gateway, "chat")}, spool)
        assert report.created == 0
        found = records(spool)
        assert len(found) == 3000 and len({record.request_id for record in found}) == 3000, killed_at
        assert len(state.answers([f"chat{index:04d}" + "0" * 50 for index in range(3000)])) == 3000
    print(f"killed with {killed_at} of 3000 records published")


def test_killed_while_waiting_and_between_create_and_state_no_batch_is_made_twice(
    batch_gateway: Any, tmp_path: Path
) -> None:
    """SIGKILL while the emulator holds a create call's answer back (the batch exists, the state has its intent
    only), then SIGKILL while waiting for the three batches: the last round creates nothing and stores all."""
    import sqlite3

    families = ["chat", "anthropic", "gemini"]
    spool = tmp_path / "spool"
    spool.mkdir()
    with RunState(tmp_path / "state") as state:
        wanted = {family: collect(state, family, 6) for family in families}

    def batches() -> list[tuple[str, Any]]:
        with sqlite3.connect(f"file:{tmp_path / 'state' / 'state.sqlite'}?mode=ro", uri=True) as db:
            return db.execute("SELECT endpoint, provider_id FROM batches ORDER BY number").fetchall()

    def at_provider() -> int:
        return sum(len(listed(batch_gateway, family)) for family in families)

    batch_gateway.configure(batch_create_hold_s=60.0, batch_delay=4.0)
    round_killed_when(batch_gateway, tmp_path, families, lambda: at_provider() == 1 and batches() == [("chat", None)])
    batch_gateway.configure(batch_create_hold_s=0.0)
    round_killed_when(batch_gateway, tmp_path, families, lambda: len(batches()) == 3 and all(b for _, b in batches()))
    assert at_provider() == 3
    batch_gateway.configure(batch_delay=0.2)
    with RunState(tmp_path / "state") as state:
        # The batches run on the clock they were made with (4 s): waited for, not made again.
        report = round_trip(state, {family: priced(batch_gateway, family) for family in families}, spool, 90.0)
        assert report.created == 0 and report.stored.succeeded == 18
        for family in families:
            assert len(state.answers(list(wanted[family]))) == 6
    assert at_provider() == 3 and len(records(spool)) == 18


def test_a_batch_past_the_cost_cap_is_not_submitted(batch_gateway: Any, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    asked: list[float] = []

    def budget(cost: float) -> bool:
        asked.append(cost)
        return False

    with RunState(tmp_path / "state") as state:
        collect(state, "chat", 10)
        side = LedgerSide(spool_dir=spool, run=new_run_tag(state), query_tag=None, requester="me")
        report = asyncio.run(
            send_and_store(state, {"chat": priced(batch_gateway, "chat")}, tag=side.run,
                           deadline=time.monotonic() + 5, ledger=side, budget=budget, polling=FAST)
        )  # fmt: skip
        assert report.created == 0 and len(state.unsent("chat")) == 10
        assert len(asked) == 1 and asked[0] > 0
        assert any("spending cap" in note and "10 line(s)" in note for note in report.notes)
    assert listed(batch_gateway, "chat") == []


def test_a_refused_create_leaves_its_lines_unsent(batch_gateway: Any, tmp_path: Path) -> None:
    """Anthropic refuses a malformed line id with a 400: the intent is settled at once (no batch at the provider:
    dropped), the run goes on, and the lines are unsent (the run pass sends them live)."""
    spool = tmp_path / "spool"
    spool.mkdir()
    with RunState(tmp_path / "state") as state:
        wanted = requests("anthropic", 3)
        state.add_requests("anthropic", [(key + " !", json.dumps(request_to_json(r))) for key, r in wanted.items()], 1)
        report = round_trip(state, {"anthropic": priced(batch_gateway, "anthropic")}, spool)
        assert report.created == 0 and state.batches() == []
        assert any("creating a batch of 3 line(s) failed" in note and "400" in note for note in report.notes)
        assert any("never reached the provider" in note for note in report.notes)
        assert len(state.unsent("anthropic")) == 3


def test_a_batch_that_fails_validation_keeps_the_providers_errors_for_each_line(
    batch_gateway: Any, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    with RunState(tmp_path / "state") as state:
        wanted = collect(state, "chat", 2)
        first, second = sorted(wanted)
        intent = state.add_intent("chat", new_run_tag(state), [first, second], None)

        async def create() -> None:  # a file the provider refuses: the same line id twice
            http = ProviderHTTP()
            client = client_for(priced(batch_gateway, "chat"), http)
            try:
                created = await client.submit([client.line(first, wanted[first])] * 2, intent.tag)
                state.set_created(intent.number, created.id, created.status, created.phase)
            finally:
                await http.aclose()

        asyncio.run(create())
        report = round_trip(state, {"chat": priced(batch_gateway, "chat")}, spool)
        assert report.stored.failed == 2 and report.created == 0
        failures = state.failures([first, second])
        assert set(failures) == {first, second}
        assert all("failed validation" in message and "duplicate_custom_id" in message for message in failures.values())
        assert records(spool) == []  # nothing ran, nothing is billed
