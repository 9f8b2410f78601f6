"""The live progress: usage records followed in the spool as workers write them, and the progress line."""

from __future__ import annotations

import datetime as dt
import io
import os
import uuid
from pathlib import Path

from aiquery.jobs.progress import ProgressReporter, TaskCounts, UsageTail
from aiquery.usage.record import UsageRecord
from aiquery.usage.spool import SpoolWriter


def record(*, tag: str | None, attempt: int = 1) -> UsageRecord:
    return UsageRecord(
        request_id=uuid.uuid4().hex,
        call_id=uuid.uuid4().hex,
        attempt=attempt,
        event_time=dt.datetime.now(dt.timezone.utc),
        endpoint_name="my-chat",
        destination_model="m",
        api_type="mlflow/v1/chat/completions",
        url="http://127.0.0.1/x",
        requester="tester",
        user_agent="aiquery-test",
        query_tag=tag,
    )


def finish(writer: SpoolWriter, item: UsageRecord, *, status: int | None = 200, tokens: int = 10) -> None:
    writer.begin(item)
    item.status_code = status
    item.total_tokens = tokens
    item.input_tokens, item.output_tokens = tokens, 0
    item.latency_ms = item.time_to_first_byte_ms = 5
    writer.end(item)


def test_tail_counts_records_of_its_tag_once_across_rotation_and_ingestion(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    tail = UsageTail(spool, "job-1")
    assert tail.poll().requests == 0  # nothing written yet, not even the folder
    writer = SpoolWriter(spool)
    finish(writer, record(tag="job-1"))
    finish(writer, record(tag="job-1", attempt=2), status=429, tokens=0)
    finish(writer, record(tag="other-job"), tokens=1000)
    counts = tail.poll()  # read from the journal segment, before any rotation
    assert (counts.requests, counts.calls, counts.errors, counts.tokens) == (2, 1, 1, 10)

    writer.flush()  # the segment is renamed into the spool folder: same records, not counted again
    finish(writer, record(tag="job-1"), status=None, tokens=0)  # no answer at all: an error
    counts = tail.poll()
    assert (counts.requests, counts.calls, counts.errors, counts.tokens) == (3, 2, 2, 10)

    writer.flush()
    for name in os.listdir(spool):  # the ledger ingests and deletes spool files
        if name.startswith("usage-"):
            (spool / name).unlink()
    finish(writer, record(tag="job-1"), tokens=5)
    assert tail.poll().requests == 4 and tail.counts.tokens == 15
    writer.close()


def test_a_line_still_being_written_is_read_once_complete(tmp_path: Path) -> None:
    journal = tmp_path / "_journal"
    journal.mkdir()
    segment = journal / "_seg-host-1-2-0-000001.jsonl.inprogress"
    segment.write_text('{"attempt":1,"status_code":200,"total_tokens":4,"query_tag":"t"}\n{"attempt":1,"sta')
    tail = UsageTail(tmp_path, "t")
    assert tail.poll().requests == 1
    with segment.open("a") as handle:
        handle.write('tus_code":200,"total_tokens":6,"query_tag":"t"}\n')
    assert tail.poll().requests == 2 and tail.counts.tokens == 10


def test_progress_line_shows_tasks_calls_rate_errors_and_tokens(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    writer = SpoolWriter(spool)
    finish(writer, record(tag="t"))  # before the statement: not part of its counts
    tail = UsageTail(spool, "t")
    stream = io.StringIO()
    with ProgressReporter(
        "statement 2/3", usage=tail, tasks=lambda: TaskCounts(done=3, running=1, total=8), stream=stream, interval=60
    ):
        for _ in range(4):
            finish(writer, record(tag="t"), tokens=25)
        finish(writer, record(tag="t", attempt=2), status=503, tokens=0)
    writer.close()
    line = stream.getvalue().strip()
    assert line.startswith("statement 2/3  00:00  tasks 3/8")
    assert "calls 4  requests 5 (" in line and "errors 1  tokens 100" in line


def test_no_progress_line_for_a_quick_statement_without_requests(tmp_path: Path) -> None:
    stream = io.StringIO()
    with ProgressReporter("statement 1/1", usage=UsageTail(tmp_path, "t"), tasks=None, stream=stream, interval=60):
        pass
    assert stream.getvalue() == ""
