"""The batch run's state folder: the lock names its holder, intents and ids, and the usage records' outbox
publishes each chunk once whichever step a crash cut."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from aiquery.provider_batches.line_records import publish_records, settle_outbox, write_hidden
from aiquery.provider_batches.run_state import RunState, StateLocked
from aiquery.usage.codec import decode_line
from aiquery.usage.record import UsageRecord


def record(request_id: str) -> UsageRecord:
    import datetime as dt

    return UsageRecord(
        request_id=request_id, call_id=request_id, attempt=1, event_time=dt.datetime(2026, 12, 8, tzinfo=dt.UTC),
        endpoint_name="chat", destination_model="m", api_type="chat", url="http://x/v1", requester="me",
        user_agent="ua", batch_id="batch_1", cost=0.5,
    )  # fmt: skip


def published(spool: Path) -> list[str]:
    return sorted(
        decode_line(line).request_id
        for path in spool.glob("usage-*.json")
        for line in path.read_text().splitlines()
        if line
    )


def test_a_second_run_on_the_folder_is_refused_naming_the_holder(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from aiquery.provider_batches.run_state import RunState
            state = RunState({str(tmp_path)!r})
            print("held", flush=True)
            time.sleep(60)
        """)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()},
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(StateLocked) as refused:
            RunState(tmp_path)
        assert f"process {holder.pid} on " in str(refused.value)
        # A reader (aiquery batch status) is not refused.
        with RunState(tmp_path, lock=False) as reader:
            assert reader.batches() == []
    finally:
        holder.kill()
        holder.wait()
    # The holder's death releases the lock.
    RunState(tmp_path).close()


def test_intents_keep_their_lines_until_given_an_id_or_dropped(tmp_path: Path) -> None:
    with RunState(tmp_path) as state:
        assert state.add_requests("chat", [("f1", "{}"), ("f2", "{}"), ("f3", "{}")], 1) == 3
        assert state.add_requests("chat", [("f1", "{}")], 2) == 0
        intent = state.add_intent("chat", "run-x", ["f1", "f2"], 0.25)
        assert intent.tag == f"run-x.{intent.number}" and intent.provider_id is None
        assert [fingerprint for fingerprint, _ in state.unsent("chat")] == ["f3"]
        state.drop_intent(intent.number)
        assert [fingerprint for fingerprint, _ in state.unsent("chat")] == ["f1", "f2", "f3"]
        second = state.add_intent("chat", "run-x", ["f1"], None)
        state.set_created(second.number, "batch_9", "in_progress", "running")
        state.drop_intent(second.number)  # an intent with an id is never dropped
        assert state.batch(second.number).provider_id == "batch_9"
        assert [fingerprint for fingerprint, _ in state.unsent("chat")] == ["f2", "f3"]


def test_the_outbox_publishes_once_whatever_step_a_crash_cut(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    with RunState(tmp_path / "state") as state:
        # Cut after the file, before the transaction: the outcomes are not kept, so the file goes.
        write_hidden(spool, "run", state.next_outbox(), [record("a")])
        settle_outbox(state, spool, "run")
        assert published(spool) == [] and list(spool.iterdir()) == []
        # Cut after the transaction, before the rename: the rename is done by the settle.
        number = state.next_outbox()
        write_hidden(spool, "run", number, [record("b"), record("c")])
        state.keep_outcomes("chat", "batch_1", [("b", "{}")], [("c", "errored", "no")], number)
        settle_outbox(state, spool, "run")
        assert published(spool) == ["b", "c"]
        # Cut after the rename, before the mark: only marked, nothing written twice.
        number = state.next_outbox()
        write_hidden(spool, "run", number, [record("d")])
        state.keep_outcomes("chat", "batch_1", [("d", "{}")], [], number)
        os.replace(spool / f"_batch-run-{number:08d}.json", spool / f"usage-batch-run-{number:08d}.json")
        settle_outbox(state, spool, "run")
        settle_outbox(state, spool, "run")
        assert published(spool) == ["b", "c", "d"]
        assert state.outbox_pending() == []
        # The published files are ingested (deleted) later: a settle then writes nothing again.
        for path in spool.glob("usage-*.json"):
            path.unlink()
        settle_outbox(state, spool, "run")
        publish_records(state, spool, "run", number)
        assert published(spool) == []
        assert state.outcome_fingerprints("batch_1") == {"b", "c", "d"}


def test_the_collect_sink_writes_each_request_once_off_the_callers_thread(tmp_path: Path) -> None:
    from aiquery.provider_batches.collect_sink import CollectSink

    with RunState(tmp_path) as state:
        sink = CollectSink(state, 1)
        for start in (0, 50, 100):  # overlapping deliveries, as tasks and statements send the same misses
            sink(
                "chat", [(f"f{index:03d}", {"prompt": str(index), "model": "m"}) for index in range(start, start + 80)]
            )
        sink("embed", [("f000", {"prompt": "0", "model": "e"})])
        assert sink.close() == 181
        assert len(state.unsent("chat")) == 180 and len(state.unsent("embed")) == 1
        again = CollectSink(state, 2)
        again("chat", [("f000", {"prompt": "0", "model": "m"})])
        assert again.close() == 0


def test_a_reset_forgets_everything(tmp_path: Path) -> None:
    with RunState(tmp_path) as state:
        state.set_meta("run", "r1")
        state.add_requests("chat", [("f1", "{}")], 1)
        intent = state.add_intent("chat", "r1", ["f1"], None)
        state.set_created(intent.number, "batch_1", "completed", "ended")
        state.keep_outcomes("chat", "batch_1", [("f1", "{}")], [], None)
        state.reset()
        assert state.meta("run") is None and state.batches() == [] and state.counts()["requests"] == 0
        assert state.answers(["f1"]) == {}
