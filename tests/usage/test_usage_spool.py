"""The spool writer: journal files, rotation into the spool directory, close, fork."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest
from usage_helpers import finish, journal_lines, record, spool_files, spool_records

from aiquery.usage.spool import LOST_IN_FLIGHT_MESSAGE, SpoolWriter, spool_writer


def journal(tmp_path: Path, prefix: str) -> list[Path]:
    return sorted((tmp_path / "_journal").glob(prefix + "*"))


def test_begin_journals_before_end_and_flush_publishes(tmp_path: Path) -> None:
    writer = SpoolWriter(tmp_path)
    first = record("r1")
    writer.begin(first)
    [pending] = journal(tmp_path, "_pending-")
    assert [line["request_id"] for line in journal_lines(pending)] == ["r1"]
    [segment] = journal(tmp_path, "_seg-")
    assert segment.read_text() == ""

    writer.end(finish(first))
    assert len(segment.read_text().splitlines()) == 1
    assert spool_files(tmp_path) == []  # not visible before flush

    writer.begin(record("r2"))  # carries r1's done line
    assert [line.get("done") for line in journal_lines(pending)] == [None, "r1", None]
    writer.flush()
    assert [r.request_id for r in spool_records(tmp_path)] == ["r1"]
    # P now lists only the request still in flight.
    assert [line["request_id"] for line in journal_lines(pending)] == ["r2"]
    writer.close()


def test_rotation_never_duplicates_and_skips_empty_segments(tmp_path: Path) -> None:
    writer = SpoolWriter(tmp_path)
    expected = []
    for batch in range(3):
        for i in range(5):
            rec = record(f"b{batch}-{i}")
            writer.begin(rec)
            writer.end(finish(rec))
            expected.append(rec)
        writer.flush()
        writer.flush()  # nothing new: no file
    assert len(spool_files(tmp_path)) == 3
    assert spool_records(tmp_path) == expected
    writer.close()
    assert len(spool_files(tmp_path)) == 3
    assert list((tmp_path / "_journal").glob("_seg-*")) == []
    assert list((tmp_path / "_journal").glob("_pending-*")) == []


def test_a_large_segment_is_published_without_waiting_for_a_flush(tmp_path: Path) -> None:
    # A long query between two ingestions must not leave one spool file of hundreds of megabytes.
    writer = SpoolWriter(tmp_path)
    expected = []
    for i in range(30_000):
        rec = record(f"r{i}", error_message="x" * 300)
        writer.begin(rec)
        writer.end(finish(rec))
        expected.append(rec)
    published = spool_files(tmp_path)
    assert len(published) >= 1 and all(path.stat().st_size < (8 << 20) + 4096 for path in published)
    writer.flush()
    assert spool_records(tmp_path) == expected
    pending = next((tmp_path / "_journal").glob("_pending-*"))
    assert pending.stat().st_size < 2 << 20  # compacted at each rotation
    writer.close()


def test_close_records_requests_still_in_flight(tmp_path: Path) -> None:
    with SpoolWriter(tmp_path) as writer:
        done = record("done")
        writer.begin(done)
        writer.end(finish(done))
        writer.begin(record("hanging"))
        assert writer.in_flight == 1
    by_id = {r.request_id: r for r in spool_records(tmp_path)}
    assert by_id["done"].status_code == 200
    assert by_id["hanging"].status_code is None and by_id["hanging"].input_tokens is None
    assert by_id["hanging"].error_message == LOST_IN_FLIGHT_MESSAGE


def test_end_without_begin_is_still_recorded(tmp_path: Path) -> None:
    with SpoolWriter(tmp_path) as writer:
        writer.end(finish(record("orphan")))
    assert [r.request_id for r in spool_records(tmp_path)] == ["orphan"]


def test_spool_writer_is_one_per_process_and_directory(tmp_path: Path) -> None:
    first = spool_writer(tmp_path / "a")
    assert spool_writer(tmp_path / "a") is first
    assert spool_writer(tmp_path / "b") is not first
    first.close()
    assert spool_writer(tmp_path / "a") is not first  # a closed writer is replaced
    spool_writer(tmp_path / "a").close()
    spool_writer(tmp_path / "b").close()


def _child_writes(spool_dir: str) -> None:
    writer = spool_writer(spool_dir)
    rec = record(f"child-{os.getpid()}")
    writer.begin(rec)
    writer.end(finish(rec))
    writer.flush()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_writes_under_its_own_identity(tmp_path: Path) -> None:
    parent = spool_writer(tmp_path)
    rec = record("parent")
    parent.begin(rec)
    parent.end(finish(rec))
    child = multiprocessing.get_context("fork").Process(target=_child_writes, args=(str(tmp_path),))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    parent.flush()
    names = [p.name for p in spool_files(tmp_path)]
    assert len(names) == 2
    assert any(f"-{child.pid}-" in name for name in names) and any(f"-{os.getpid()}-" in name for name in names)
    assert sorted(r.request_id for r in spool_records(tmp_path)) == sorted(["parent", f"child-{child.pid}"])
    parent.close()
