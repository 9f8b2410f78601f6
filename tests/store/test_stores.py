"""Answer stores: the SQLite one on the driver's disk and the Redis one; fingerprints; a failing store is a miss."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import pytest

from aiquery.apis.base import TokenUsage
from aiquery.config import CacheSettings
from aiquery.store import open_store
from aiquery.store.base import StoredAnswer, fingerprint, fingerprint_prefix
from aiquery.store.disk import FILE_NAME, DiskStore


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def answer(text: str) -> str:
    return StoredAnswer(text, {"input_tokens": 3, "output_tokens": 5, "total_tokens": 8}, 1.0).encode()


def test_fingerprints_name_what_decides_the_answer_and_never_the_token() -> None:
    body = b'{"model":"m","messages":[{"role":"user","content":"hi"}]}'
    base = fingerprint(fingerprint_prefix("chat", "https://h/v1/chat/completions", "m", {}), body)
    assert base == fingerprint(fingerprint_prefix("chat", "https://h/v1/chat/completions", "m", {}), body)
    others = {
        fingerprint(fingerprint_prefix("responses", "https://h/v1/chat/completions", "m", {}), body),
        fingerprint(fingerprint_prefix("chat", "https://other/v1/chat/completions", "m", {}), body),
        fingerprint(fingerprint_prefix("chat", "https://h/v1/chat/completions", "m2", {}), body),
        fingerprint(fingerprint_prefix("chat", "https://h/v1/chat/completions", "m", {"anthropic-version": "x"}), body),
        fingerprint(fingerprint_prefix("chat", "https://h/v1/chat/completions", "m", {}), body.replace(b"hi", b"ho")),
    }
    assert base not in others and len(others) == 5


def test_a_stored_answer_round_trips_with_its_tokens() -> None:
    stored = StoredAnswer([0.25, -1.5], {"input_tokens": 7, "tokens_estimated": True}, 12.5)
    assert StoredAnswer.decode(stored.encode()) == stored


def test_a_batch_answer_keeps_its_batch_id_and_a_live_one_encodes_as_before() -> None:
    usage = TokenUsage(input_tokens=7, output_tokens=2, total_tokens=9)
    batched = StoredAnswer.of("yes", usage, 3.0, batch_id="batch_69a1")
    assert json.loads(batched.encode())["b"] == "batch_69a1"
    assert StoredAnswer.decode(batched.encode()) == batched and batched.usage["total_tokens"] == 9
    live = StoredAnswer.of("yes", usage, 3.0)
    # An answer stored before batch mode (no "b" key) decodes as a live one; a live one writes no "b".
    assert json.loads(live.encode()).keys() == {"v", "u", "s"}
    assert StoredAnswer.decode('{"v":"yes","u":{},"s":1.0}').batch_id is None
    with pytest.raises(ValueError, match="batch id"):
        StoredAnswer.decode('{"v":"yes","u":{},"s":1.0,"b":7}')


def test_the_disk_store_keeps_answers_across_reopening_and_is_private(tmp_path: Path) -> None:
    folder = tmp_path / "answers"
    store = DiskStore(folder, ttl=3600, max_bytes=1 << 20)
    store.put_many({"a": answer("alpha"), "b": answer("beta")})
    store.close()
    again = DiskStore(folder, ttl=3600, max_bytes=1 << 20)
    found = again.get_many(["a", "b", "c"])
    assert set(found) == {"a", "b"} and StoredAnswer.decode(found["a"]).value == "alpha"
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    for path in folder.iterdir():  # the database and SQLite's own log files
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    assert b"alpha" in (folder / FILE_NAME).read_bytes() or (folder / f"{FILE_NAME}-wal").exists()
    again.close()


def test_answers_expire_after_the_ttl(tmp_path: Path) -> None:
    clock = Clock()
    store = DiskStore(tmp_path, ttl=60, max_bytes=1 << 20, clock=clock)
    store.put_many({"old": answer("x")})
    clock.now += 30
    store.put_many({"new": answer("y")})
    clock.now += 45  # old is 75 s old, new 45 s
    assert set(store.get_many(["old", "new"])) == {"new"}
    clock.now += 100
    assert store.get_many(["old", "new"]) == {}
    assert store.count() == 0  # expired entries are deleted, not only hidden


def test_the_size_bound_drops_the_least_recently_used(tmp_path: Path) -> None:
    clock = Clock()
    one = len(answer("x" * 1000))
    store = DiskStore(tmp_path, ttl=3600, max_bytes=10 * one, clock=clock)
    for index in range(10):
        clock.now += 1
        store.put_many({f"k{index}": answer("x" * 1000)})
    clock.now += 1
    store.get_many(["k0"])  # used: k0 is now the most recently used
    clock.now += 1
    store.put_many({"k10": answer("x" * 1000)})  # past the bound: down to 90 %
    kept = set(store.get_many([f"k{i}" for i in range(11)]))
    assert store.size <= 10 * one and len(kept) == 9
    assert {"k0", "k10"} <= kept and "k1" not in kept and "k2" not in kept


def test_the_redis_store_shares_answers_and_expires_them(redis_url: str) -> None:
    import redis

    settings = CacheSettings(url=redis_url, ttl=5)
    first, second = open_store(settings, "unused"), open_store(settings, "unused")
    first.put_many({"shared-1": answer("one")})
    assert first.flush(10)
    assert StoredAnswer.decode(second.get_many(["shared-1", "absent"])["shared-1"]).value == "one"
    ttl = redis.Redis.from_url(redis_url).ttl("aiquery:answer:shared-1")
    assert 0 < ttl <= 5
    assert first.failures == second.failures == 0
    first.close()
    second.close()


def test_a_store_that_fails_is_a_miss_with_one_warning_and_a_count(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    closed = socket_port_closed()
    store = open_store(CacheSettings(url=f"redis://:secret-password@127.0.0.1:{closed}/0"), tmp_path)
    with caplog.at_level(logging.WARNING, logger="aiquery.store"):
        assert store.get_many(["a"]) == {}
        store.put_many({"a": answer("x")})
        assert store.flush(10)  # the write fails on the writer thread
        assert store.get_many(["a"]) == {}
    assert store.failures == 3
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1 and f"redis://127.0.0.1:{closed}/0" in warnings[0]
    assert "secret-password" not in caplog.text


def test_an_unusable_folder_is_a_failing_store_not_an_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    store = open_store(CacheSettings(), blocker / "answers")
    assert store.get_many(["a"]) == {} and store.failures == 2  # opening it, then the lookup


def socket_port_closed() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
