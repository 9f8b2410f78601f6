"""AdaptiveConcurrency: the order in which waiting calls get a slot."""

from __future__ import annotations

import asyncio

from aiquery.engine.limiter import AdaptiveConcurrency


def test_retries_get_a_slot_before_first_attempts_queued_earlier() -> None:
    async def scenario() -> list[str]:
        bound = AdaptiveConcurrency(1)
        await bound.acquire()  # the one slot is taken
        served: list[str] = []

        async def call(name: str, retry: bool) -> None:
            await bound.acquire(retry=retry)
            served.append(name)
            await asyncio.sleep(0)
            bound.release()

        tasks = [asyncio.create_task(call("fresh-1", False)), asyncio.create_task(call("fresh-2", False))]
        await asyncio.sleep(0)
        tasks += [asyncio.create_task(call("retry-1", True)), asyncio.create_task(call("retry-2", True))]
        await asyncio.sleep(0)
        bound.release()
        await asyncio.gather(*tasks)
        assert bound.in_flight == 0
        return served

    assert asyncio.run(scenario()) == ["retry-1", "retry-2", "fresh-1", "fresh-2"]


def test_a_cancelled_retry_leaves_the_queue_and_its_slot_passes_on() -> None:
    async def scenario() -> list[str]:
        bound = AdaptiveConcurrency(1)
        await bound.acquire()
        served: list[str] = []

        async def call(name: str, retry: bool) -> None:
            await bound.acquire(retry=retry)
            served.append(name)
            bound.release()

        fresh = asyncio.create_task(call("fresh", False))
        retry = asyncio.create_task(call("retry", True))
        await asyncio.sleep(0)
        retry.cancel()
        await asyncio.sleep(0)
        bound.release()
        await fresh
        return served

    assert asyncio.run(scenario()) == ["fresh"]
