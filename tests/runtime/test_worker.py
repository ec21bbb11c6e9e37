"""The consumer loop on a real Redis queue: outages of a dependency hold messages, poison goes to the DLQ."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from stackwright.local.backing import LocalRedis
from stackwright.runtime import consume
from stackwright.runtime.queue import queue_from_url

pytestmark = pytest.mark.integration


async def _run_until(queue: Any, handler: Any, done: Any, timeout_s: float = 20.0) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(consume(queue, handler, batch_size=10, wait_seconds=0.2, stop=stop))
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not await done():
            assert asyncio.get_running_loop().time() < deadline, "consumer did not finish in time"
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_outage_longer_than_the_redelivery_budget_dead_letters_nothing(redis_server: LocalRedis) -> None:
    # max_receive_count x visibility_timeout = 2 s; the "database" is down for ~4 s.
    queue = queue_from_url(redis_server.url, f"outage-{uuid.uuid4().hex[:8]}", max_receive_count=2,
                           visibility_timeout=1.0)
    await queue.send_batch([{"n": i} for i in range(5)])
    loop = asyncio.get_running_loop()
    back_at = loop.time() + 4.0
    handled: list[int] = []

    async def handler(messages: list[Any]) -> None:
        if loop.time() < back_at:
            raise ConnectionRefusedError("database is down")
        handled.extend(m.body["n"] for m in messages)

    async def done() -> bool:
        return len(handled) >= 5 and await queue.depth() == 0

    await _run_until(queue, handler, done)
    assert sorted(handled) == [0, 1, 2, 3, 4]
    assert await queue.dlq_depth() == 0
    await queue.close()


async def test_poison_message_lands_in_the_dlq_and_others_pass(redis_server: LocalRedis) -> None:
    queue = queue_from_url(redis_server.url, f"poison-{uuid.uuid4().hex[:8]}", max_receive_count=2,
                           visibility_timeout=0.5)
    await queue.send_batch([{"n": 1}, {"n": "poison"}, {"n": 3}])
    handled: list[int] = []

    async def handler(messages: list[Any]) -> None:
        if any(m.body["n"] == "poison" for m in messages):
            raise ValueError("cannot count this")
        handled.extend(m.body["n"] for m in messages)

    async def done() -> bool:
        return await queue.dlq_depth() == 1 and len(handled) == 2

    await _run_until(queue, handler, done)
    assert sorted(handled) == [1, 3]
    [dead] = await queue.dlq_messages()
    assert dead.body == {"n": "poison"}
    await queue.close()
