"""FIFO queues end to end: a ``fifo: true`` queue is wired as ``<QUEUE>_FIFO=true`` and the runtime's sends carry
what SQS demands of a FIFO queue (a MessageGroupId; a MessageDeduplicationId). SQS runs in moto, which refuses a
FIFO send without a group as AWS does; the Redis Streams backend takes the same calls."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from tests.conftest import REPO

from stackwright.local.backing import LocalRedis
from stackwright.runtime import Service, Settings
from stackwright.runtime.queue import queue_from_url
from stackwright.spec import load_system
from stackwright.spec.wiring import Placement, service_env


@pytest.fixture
def sqs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS"):
        monkeypatch.delenv(var, raising=False)
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(var, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        yield boto3.client("sqs", region_name="us-east-1")


def _fifo_queues(client: Any, name: str) -> str:
    """A FIFO queue and its FIFO DLQ shaped like the rendered CDK app's (content-based deduplication on)."""
    fifo = {"FifoQueue": "true", "ContentBasedDeduplication": "true"}
    dlq = client.create_queue(QueueName=name.replace(".fifo", "-dlq.fifo"), Attributes=fifo)["QueueUrl"]
    arn = client.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return client.create_queue(QueueName=name, Attributes={
        **fifo, "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": "2"})})["QueueUrl"]


async def test_a_service_sends_to_a_fifo_queue(sqs: Any) -> None:
    _fifo_queues(sqs, "jobs.fifo")
    settings = Settings.from_env({"SERVICE_NAME": "producer", "SYSTEM_NAME": "test",
                                  "JOBS_URL": "sqs://?region=us-east-1", "JOBS_QUEUE": "jobs.fifo",
                                  "JOBS_FIFO": "true", "JOBS_MAX_RECEIVE": "2"})
    jobs = Service(settings=settings).queue("jobs")
    try:
        await jobs.send({"n": 1})  # no group given: the default group
        await jobs.send({"n": 2}, group="poll-1", dedup_id="vote-2")
        await jobs.send({"n": 2}, group="poll-1", dedup_id="vote-2")  # same id within 5 min: dropped by SQS
        await jobs.send({"n": 1})  # equal body, new call: not merged (an explicit id beats content dedup)
        await jobs.send_batch([{"n": 3}, {"n": 4}], group="poll-1")
        got: list[Any] = []
        for _ in range(10):
            batch = await jobs.receive(max_messages=10, wait_seconds=0)
            got += batch
            await jobs.ack_many(batch)
            if len(got) >= 5:
                break
        assert sorted(m.body["n"] for m in got) == [1, 1, 2, 3, 4]
        in_group = [m.body["n"] for m in got if m.body["n"] > 1]
        assert in_group == [2, 3, 4]  # one group is delivered in order
    finally:
        await jobs.close()


async def test_fifo_dead_letters_and_redrive(sqs: Any) -> None:
    _fifo_queues(sqs, "work.fifo")
    q = queue_from_url("sqs://?region=us-east-1", "work.fifo", max_receive_count=1, visibility_timeout=1)
    try:
        await q.send({"poison": True}, group="g")
        first = await q.receive(wait_seconds=0)
        assert [m.body for m in first] == [{"poison": True}]
        await q.extend(first[0])  # still held: renewing works on FIFO too
        # Not acked: made visible again at once, and the next receive moves it to the (FIFO) DLQ.
        sqs.change_message_visibility(QueueUrl=await q._url(), ReceiptHandle=first[0].receipt, VisibilityTimeout=0)
        assert await q.receive(wait_seconds=0) == []
        assert await q.dlq_depth() == 1
        assert await q.redrive() == 1
        assert [m.body for m in await q.receive(wait_seconds=0)] == [{"poison": True}]
    finally:
        await q.close()


async def test_the_redis_backend_takes_the_same_calls(redis_server: LocalRedis) -> None:
    q = queue_from_url(redis_server.url, "fifo-contract", fifo=True)
    try:
        await q.send({"n": 1}, group="poll-1", dedup_id="vote-1")
        await q.send_batch([{"n": 2}, {"n": 3}], group="poll-1")
        got = await q.receive(max_messages=10, wait_seconds=0)
        assert [m.body["n"] for m in got] == [1, 2, 3]
        await q.ack_many(got)
    finally:
        await q.close()


def test_wiring_tells_a_service_its_queue_is_fifo() -> None:
    system = load_system(REPO / "systems" / "voting" / "system.yaml")
    place = Placement(environment="local", region="local", region_role="primary", host="127.0.0.1", port=1,
                      jwks_url=None, shutdown_grace_s=5)

    def env(fifo: bool) -> dict[str, str]:
        system.resources["votes"].fifo = fifo  # type: ignore[union-attr]
        return service_env(system, "vote", place, resource_urls={}, queue_names={"votes": "votes"},
                           service_urls={})

    assert env(True)["VOTES_FIFO"] == "true"
    assert "VOTES_FIFO" not in env(False)  # standard queues render exactly as before
