"""Recovery of dead writers' journals: completed records once, in-flight requests as status-NULL records."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from usage_helpers import finish, record, spool_files, spool_records

from aiquery.usage import journal
from aiquery.usage.recovery import LOST_WORKER_MESSAGE, recover_orphans
from aiquery.usage.spool import SpoolWriter

CHILD = Path(__file__).with_name("spool_child.py")


def start_child(spool_dir: Path, mode: str) -> subprocess.Popen[str]:
    child = subprocess.Popen([sys.executable, str(CHILD), str(spool_dir), mode], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    return child


def kill(child: subprocess.Popen[str]) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait(30)


def test_sigkilled_writer_is_recovered_exactly_once(tmp_path: Path) -> None:
    child = start_child(tmp_path, "steady")
    kill(child)
    assert len(spool_files(tmp_path)) == 2  # the two flushes it made; 10 records were still in its segment

    report = recover_orphans(tmp_path)
    assert (report.owners, report.records, report.lost) == (1, 17, 7)
    records = spool_records(tmp_path)
    assert sorted(r.request_id for r in records) == sorted(
        [f"done-{i}" for i in range(50)] + [f"flying-{i}" for i in range(7)]
    )
    for rec in records:
        if rec.request_id.startswith("done-"):
            assert rec.status_code == 200 and rec.input_tokens == 10
        else:
            assert rec.status_code is None and rec.input_tokens is None and rec.total_tokens is None
            assert rec.error_message == LOST_WORKER_MESSAGE
            assert rec.endpoint_name == "my-chat" and rec.call_id == f"call-{rec.request_id}"
    assert list((tmp_path / "_journal").glob("_seg-*")) == []
    assert list((tmp_path / "_journal").glob("_pending-*")) == []
    assert recover_orphans(tmp_path).owners == 0  # idempotent


@pytest.mark.slow
@pytest.mark.parametrize("run_for", [0.05, 0.3, 1.0])
def test_writer_killed_at_a_random_point_loses_and_doubles_nothing(tmp_path: Path, run_for: float) -> None:
    child = start_child(tmp_path, "busy")
    time.sleep(run_for)
    kill(child)
    recover_orphans(tmp_path)
    records = spool_records(tmp_path)
    numbers = sorted(int(r.request_id[1:]) for r in records)
    assert numbers == list(range(len(numbers)))  # no gap, no duplicate
    assert len(numbers) > 0
    lost = [r for r in records if r.status_code is None]
    # At most the one request in flight when the kill came, and only as the last one.
    assert all(r.request_id == f"r{numbers[-1]}" for r in lost)


def dead_owner(number: int = 0) -> journal.Owner:
    me = journal.current_process()
    return journal.Owner(me.host, me.pid, me.start + 1, number)  # our pid, another start time: a dead process


def write_journal(tmp_path: Path, owner: journal.Owner, segment: str, pending: str) -> None:
    folder = tmp_path / journal.JOURNAL_DIR
    folder.mkdir(exist_ok=True)
    (folder / journal.pending_name(owner)).write_text(pending)
    (folder / journal.segment_name(owner, "000003")).write_text(segment)


def line(request_id: str, done: bool = True) -> str:
    from aiquery.usage.codec import RecordEncoder

    rec = finish(record(request_id)) if done else record(request_id)
    return RecordEncoder().line(rec)


def test_partial_last_line_is_cut_and_its_request_reported_lost(tmp_path: Path) -> None:
    owner = dead_owner()
    sent = "".join(line(r, done=False) for r in ("a", "b", "c"))
    write_journal(tmp_path, owner, line("a") + line("b")[:40], sent + '{"done":"a"}\n{"do')
    report = recover_orphans(tmp_path)
    assert (report.records, report.lost) == (3, 2)
    by_id = {r.request_id: r for r in spool_records(tmp_path)}
    assert by_id["a"].status_code == 200
    assert by_id["b"].status_code is None and by_id["c"].status_code is None


def test_record_in_segment_without_done_line_is_not_reported_lost(tmp_path: Path) -> None:
    # The done line is written with the next begin or flush: a kill in between leaves only the record.
    owner = dead_owner()
    write_journal(tmp_path, owner, line("a"), line("a", done=False))
    recover_orphans(tmp_path)
    assert [(r.request_id, r.status_code) for r in spool_records(tmp_path)] == [("a", 200)]


def test_recovery_interrupted_after_writing_lost_records_does_not_repeat_them(tmp_path: Path) -> None:
    owner = dead_owner()
    write_journal(tmp_path, owner, line("a"), line("a", done=False) + line("b", done=False))
    # State left by a recoverer that died after writing the lost segment, before marking "b" done.
    lost = json.loads(line("b", done=False))
    lost["error_message"] = LOST_WORKER_MESSAGE
    (tmp_path / journal.JOURNAL_DIR / journal.segment_name(owner, "lost1")).write_text(json.dumps(lost) + "\n")
    recover_orphans(tmp_path)
    assert sorted((r.request_id, r.status_code) for r in spool_records(tmp_path)) == [("a", 200), ("b", None)]


def test_recovery_interrupted_after_publishing_does_not_report_published_records(tmp_path: Path) -> None:
    # A recoverer died after marking every request done and publishing the segment, before deleting P.
    owner = dead_owner()
    folder = tmp_path / journal.JOURNAL_DIR
    folder.mkdir()
    (tmp_path / journal.spool_name(owner, "000003")).write_text(line("a"))
    (folder / journal.pending_name(owner)).write_text(line("a", done=False) + '{"done":"a"}\n')
    assert recover_orphans(tmp_path).lost == 0
    assert [r.request_id for r in spool_records(tmp_path)] == ["a"]
    assert list(folder.glob("_pending-*")) == []


def test_live_writers_are_left_alone(tmp_path: Path) -> None:
    with SpoolWriter(tmp_path) as writer:
        rec = record("live")
        writer.begin(rec)
        writer.end(finish(rec))
        report = recover_orphans(tmp_path)
        assert report.owners == 0 and report.skipped == [writer.owner.token]
        assert spool_files(tmp_path) == []
    assert len(spool_files(tmp_path)) == 1


def test_other_hosts_are_recovered_only_when_stale(tmp_path: Path) -> None:
    owner = journal.Owner("some-other-host", 4242, 99, 0)
    write_journal(tmp_path, owner, line("x"), line("x", done=False))
    assert recover_orphans(tmp_path, stale_after=600).skipped == [owner.token]
    old = time.time() - 3600
    for path in (tmp_path / journal.JOURNAL_DIR).glob("_*-some-other-host-*"):
        os.utime(path, (old, old))
    assert recover_orphans(tmp_path, stale_after=600).owners == 1
    assert [r.request_id for r in spool_records(tmp_path)] == ["x"]
    # Published with a fresh mtime: Spark's file source would skip a file older than its maxFileAge.
    assert all(time.time() - p.stat().st_mtime < 60 for p in spool_files(tmp_path))


def test_racing_recoverers_publish_each_record_once(tmp_path: Path) -> None:
    expected = []
    for number in range(20):
        owner = dead_owner(number)
        done = [f"{number}-{i}" for i in range(30)]
        flying = [f"{number}-lost-{i}" for i in range(3)]
        write_journal(
            tmp_path,
            owner,
            "".join(line(r) for r in done),
            "".join(line(r, done=False) for r in done + flying),
        )
        expected += done + flying
    barrier = threading.Barrier(4)

    def recover() -> None:
        barrier.wait()
        recover_orphans(tmp_path)

    threads = [threading.Thread(target=recover) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(r.request_id for r in spool_records(tmp_path)) == sorted(expected)


def test_recovery_without_waiting_skips_when_another_recoverer_holds_the_lock(tmp_path: Path) -> None:
    import fcntl

    write_journal(tmp_path, dead_owner(), line("a"), line("a", done=False))
    fd = os.open(tmp_path / journal.JOURNAL_DIR / journal.LOCK_NAME, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert recover_orphans(tmp_path, wait=False).owners == 0
    finally:
        os.close(fd)
    assert recover_orphans(tmp_path, wait=False).owners == 1


def test_first_writer_of_a_process_recovers_dead_journals(tmp_path: Path) -> None:
    from aiquery.usage.spool import spool_writer

    write_journal(tmp_path, dead_owner(), line("a"), line("a", done=False) + line("b", done=False))
    writer = spool_writer(tmp_path)
    try:
        assert sorted((r.request_id, r.status_code) for r in spool_records(tmp_path)) == [("a", 200), ("b", None)]
    finally:
        writer.close()
