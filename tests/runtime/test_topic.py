"""Topic fan-out on a real Redis: every subscriber's group sees every event once; one group's acks and
dead letters never touch another's; a redelivered (un-acked) event comes back to its own group only."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from stackwright.local.backing.redis import LocalRedis
from stackwright.resources.topic import create_groups, group_name
from stackwright.runtime.queue import QueueError
from stackwright.runtime.topic import Topic


def test_each_subscriber_gets_every_event_and_acks_are_its_own(redis_server: LocalRedis) -> None:
    async def scenario() -> None:
        stream = f"sys-events-{uuid.uuid4().hex[:6]}"
        await create_groups(redis_server.url, stream, ["a", "b"])
        pub = Topic(redis_server.url, stream)
        a = Topic(redis_server.url, stream, group=group_name(stream, "a"), visibility_timeout=0.5).subscription()
        b = Topic(redis_server.url, stream, group=group_name(stream, "b"), visibility_timeout=0.5).subscription()
        try:
            for i in range(3):
                await pub.publish({"n": i})
            got_a = await a.receive(10, wait_seconds=1)
            assert [m.body["n"] for m in got_a] == [0, 1, 2]
            await a.ack_many(got_a)
            # b still sees all three (a's acks deleted nothing), and only b has work left
            assert await a.depth() == 0 and await b.depth() == 3
            got_b = await b.receive(2, wait_seconds=1)
            assert [m.body["n"] for m in got_b] == [0, 1]
            await b.ack(got_b[0])
            await asyncio.sleep(0.6)  # n=1 was not acked: it comes back to b after the visibility timeout
            again = await b.receive(10, wait_seconds=1)
            assert sorted(m.body["n"] for m in again) == [1, 2]
            assert {m.body["n"]: m.receive_count for m in again}[1] == 2
            assert await a.receive(10, wait_seconds=0.2) == []
        finally:
            for t in (a, b):
                await t.close()
            await pub.close()

    asyncio.run(scenario())


def test_dead_letters_stay_with_their_subscriber_and_are_not_redriven_to_all(redis_server: LocalRedis) -> None:
    async def scenario() -> None:
        stream = f"sys-events-{uuid.uuid4().hex[:6]}"
        await create_groups(redis_server.url, stream, ["a", "b"])
        pub = Topic(redis_server.url, stream)
        a = Topic(redis_server.url, stream, group=group_name(stream, "a"), max_receive_count=1,
                  visibility_timeout=0.2).subscription()
        b = Topic(redis_server.url, stream, group=group_name(stream, "b"), visibility_timeout=0.2).subscription()
        try:
            await pub.publish({"n": 1})
            assert [m.body for m in await b.receive(10, wait_seconds=1)] == [{"n": 1}]
            await b.ack_many(await b.receive(10, wait_seconds=0.1) or [])
            assert [m.body for m in await a.receive(10, wait_seconds=1)] == [{"n": 1}]  # never acked
            await asyncio.sleep(0.3)
            assert await a.receive(10, wait_seconds=0.3) == []  # past max_receive_count: dead-lettered
            assert [m.body for m in await a.dlq_messages()] == [{"n": 1}] and await b.dlq_depth() == 0
            # Added back to the topic's stream, the event would reach b (which handled it) a second time.
            with pytest.raises(QueueError, match="every subscriber"):
                await a.redrive()
            assert await a.dlq_depth() == 1
        finally:
            for t in (a, b):
                await t.close()
            await pub.close()

    asyncio.run(scenario())
