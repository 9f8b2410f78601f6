"""Journal folders are this user's alone: created 0700, files 0600, someone else's folder refused or avoided."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

import pytest
from usage_helpers import finish, record, spool_records

from aiquery.coordinator.link import Reply
from aiquery.coordinator.local_journal import LocalJournal, local_journal_dir
from aiquery.usage.private_folder import UnsafeFolder
from aiquery.usage.spool import SpoolWriter, spool_writer

NOBODY = 65534


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def written(writer: SpoolWriter, *request_ids: str) -> None:
    for request_id in request_ids:
        begun = record(request_id)
        writer.begin(begun)
        writer.end(finish(begun))
    writer.begin(record("in-flight"))
    writer.flush()


def test_journal_folders_are_created_0700_with_their_parents_and_files_0600(tmp_path: Path) -> None:
    spool = tmp_path / "warehouse" / "_aiquery" / "spool"
    writer = SpoolWriter(spool)
    try:
        written(writer, "r1", "r2")
        for folder in (tmp_path / "warehouse", tmp_path / "warehouse" / "_aiquery", spool, spool / "_journal"):
            assert mode(folder) == 0o700, folder
        files = [path for path in spool.rglob("*") if path.is_file()]
        assert {path.parent.name for path in files} == {"spool", "_journal"}  # published and journal files
        for path in files:
            assert mode(path) == 0o600, path
    finally:
        writer.close()


def test_a_folder_of_ours_that_others_can_read_is_tightened(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o755)
    os.chmod(spool, 0o755)
    SpoolWriter(spool).close()
    assert mode(spool) == 0o700


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user needs root")
def test_a_spool_folder_of_another_user_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)
    os.chown(spool, NOBODY, NOBODY)
    with pytest.raises(UnsafeFolder) as refused:
        spool_writer(spool)
    message = str(refused.value)
    assert str(spool) in message and f"uid {NOBODY}" in message and "set [usage] dir to a folder of your own" in message
    assert list(spool.iterdir()) == []


@pytest.mark.parametrize("folder", ["spool", "spool/_journal"])
def test_a_folder_others_can_write_to_is_refused(tmp_path: Path, folder: str) -> None:
    (tmp_path / folder).mkdir(parents=True)
    os.chmod(tmp_path / folder, 0o777)
    planted = tmp_path / "spool" / "usage-planted.json"
    with pytest.raises(UnsafeFolder, match=r"can be written by other users \(mode 0777\)"):
        SpoolWriter(tmp_path / "spool")
    assert not planted.exists() and mode(tmp_path / folder) == 0o777  # left as it was, for its owner to see


def deliveries(journal: LocalJournal) -> list[bytes]:
    sent: list[bytes] = []

    async def send(meta: dict[str, Any], payload: bytes) -> Reply:
        sent.append(payload)
        return Reply({})

    assert asyncio.run(journal.deliver("driver-journal", send))
    return sent


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user needs root")
def test_a_worker_whose_journal_folder_was_taken_by_another_user_journals_in_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    taken = local_journal_dir("app-1")
    taken.mkdir(parents=True)
    os.chmod(taken.parent, 0o777)
    os.chown(taken.parent, NOBODY, NOBODY)
    planted = taken / "usage-planted-000000.json"
    planted.write_text('{"request_id": "forged", "status_code": 200}\n')
    journal = LocalJournal("app-1")
    with caplog.at_level(logging.WARNING, logger="aiquery.coordinator"):
        for request_id in ("r1", "r2"):
            begun = record(request_id)
            journal.begin(begun)
            journal.end(finish(begun))
    own = tmp_path / f"aiquery-{os.geteuid()}-1" / "app-1"
    assert own.is_dir() and mode(own) == 0o700 and mode(own.parent) == 0o700
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert str(taken.parent) in warning and str(own) in warning
    journal.flush()
    assert [r.request_id for r in spool_records(own)] == ["r1", "r2"]
    sent = b"".join(deliveries(journal))
    assert b'"r1"' in sent and b'"r2"' in sent and b"forged" not in sent  # nothing lost, nothing planted
    assert planted.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user needs root")
def test_every_numbered_folder_taken_leaves_a_fresh_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aiquery.coordinator.local_journal import ALTERNATE_FOLDERS, private_local_journal_dir

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    base = local_journal_dir("app").parent
    for name in [base.name, *(f"{base.name}-{n}" for n in range(1, ALTERNATE_FOLDERS + 1))]:
        (tmp_path / name).mkdir()
        os.chown(tmp_path / name, NOBODY, NOBODY)
    chosen = private_local_journal_dir("app")
    assert chosen.parent.name.startswith(f"{base.name}-") and chosen.parent.stat().st_uid == os.geteuid()
    assert mode(chosen) == mode(chosen.parent) == 0o700
