"""One reply carries at most half a frame of answers; the rest come with the next sync; an answer too large for
any reply is never stored; claims are taken before the store is asked."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiquery.coordinator.answer_waits import REPLY_ANSWER_BYTES, AnswerDesk
from aiquery.coordinator.protocol import MAX_PAYLOAD_BYTES
from aiquery.store.base import StoredAnswer
from aiquery.store.disk import DiskStore
from aiquery.store.guarded import GuardedStore


def large(fill: str, size: int) -> str:
    return StoredAnswer(fill * size, {}, 1.0).encode()


def desk_with_store(tmp_path: Path) -> tuple[AnswerDesk, GuardedStore]:
    # A generous deadline: this test is about sizes, and reads tens of MiB on a shared machine.
    store = GuardedStore(lambda: DiskStore(tmp_path, ttl=3600, max_bytes=1 << 30), str(tmp_path), deadline_s=30.0)
    desk = AnswerDesk()
    desk.add_store("s", store)
    return desk, store


def test_answers_past_half_a_frame_wait_for_the_next_reply(tmp_path: Path) -> None:
    desk, store = desk_with_store(tmp_path)
    try:
        third = REPLY_ANSWER_BYTES // 3 + 1024  # three do not fit one reply, two do
        answers = {f"big-{i}": large(str(i), third) for i in range(3)}
        desk.answered("writer", "s", answers)
        assert store.flush(60)
        first = asyncio.run(desk.consult(desk.claim("reader", "s", list(answers), [])))
        assert len(first.found) == 2 and sum(len(t) for t in first.found.values()) < MAX_PAYLOAD_BYTES
        (left,) = first.wait  # the third: waited for, not sent (it is in the store)
        assert left not in first.found and not first.own
        second = asyncio.run(desk.consult(desk.claim("reader", "s", [], [left])))
        assert second.found == {left: answers[left]} and not second.own and not second.wait
    finally:
        store.close()


def test_an_answer_too_large_for_a_reply_is_not_stored(tmp_path: Path) -> None:
    desk, store = desk_with_store(tmp_path)
    try:
        desk.answered("writer", "s", {"huge": large("x", REPLY_ANSWER_BYTES), "small": large("y", 10)})
        assert store.flush(60) and desk.too_large == 1
        reply = asyncio.run(desk.consult(desk.claim("reader", "s", ["huge", "small"], [])))
        assert list(reply.found) == ["small"] and not reply.wait  # "huge" is a miss: the reader sends it
    finally:
        store.close()


def test_a_fingerprint_being_looked_up_is_claimed_so_another_worker_waits(tmp_path: Path) -> None:
    desk, store = desk_with_store(tmp_path)
    try:
        asking = desk.claim("first", "s", ["fp"], [])
        other = desk.claim("second", "s", ["fp"], [])  # while the first worker's lookup is out
        assert other.asked == [] and other.waiting == ["fp"]
        mine = asyncio.run(desk.consult(asking))
        assert mine.found == {} and not mine.wait  # a miss: the first worker sends it
        desk.answered("first", "s", {"fp": large("z", 5)})
        waiter = asyncio.run(desk.consult(desk.claim("second", "s", [], ["fp"])))
        assert waiter.found == {"fp": large("z", 5)} and not waiter.own
    finally:
        store.close()
