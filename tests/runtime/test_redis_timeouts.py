"""A Redis that stops answering (SIGSTOP: the socket stays open, nothing replies) fails a request into the
service's 503 problem+json within the Redis timeout instead of hanging it, and the service works again once
Redis continues (SIGCONT). Both of svc.redis()'s paths: redis-py (HSET) and the multiplexed connection (INCR)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from stackwright.local.backing import LocalRedis
from stackwright.local.ports import free_port, port_in_use
from stackwright.runtime import Service, Settings
from stackwright.runtime.queue.redis_streams import RedisStreamsQueue
from stackwright.runtime.redis_client import block_ms

pytestmark = pytest.mark.integration

TIMEOUT_S = 1.0  # REDIS_TIMEOUT_S of the service under test (default 5 s)
# An upper bound for a request against a stopped Redis: far above TIMEOUT_S (a loaded machine), far below
# forever. What the test checks is that the request ends, with a 503; not how fast.
NO_HANG_S = 30.0


@pytest.fixture
def redis_proc(tmp_path: Path) -> Iterator[tuple[LocalRedis, subprocess.Popen[bytes]]]:
    """A Redis of this test's own, which it may stop and continue."""
    rd = LocalRedis(tmp_path / "redis", free_port())
    proc = subprocess.Popen(rd.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not port_in_use(rd.port):
            assert proc.poll() is None, "redis did not start"
            time.sleep(0.05)
        yield rd, proc
    finally:
        os.kill(proc.pid, signal.SIGCONT)  # a stopped process ignores SIGTERM until continued
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
async def client(redis_proc: tuple[LocalRedis, subprocess.Popen[bytes]]) -> AsyncIterator[httpx.AsyncClient]:
    rd, _ = redis_proc
    svc = Service(settings=Settings.from_env({"SERVICE_NAME": "t", "SYSTEM_NAME": "test", "CACHE_URL": rd.url,
                                              "REDIS_TIMEOUT_S": str(TIMEOUT_S)}))
    cache = svc.redis("cache")

    @svc.app.post("/hash")
    async def hash_set() -> dict:
        return {"added": await cache.hset("h", "k", "v")}  # redis-py's pool

    @svc.app.post("/count")
    async def count() -> dict:
        return {"n": await cache.incr("n")}  # the multiplexed connection

    async with svc.app.router.lifespan_context(svc.app):
        transport = httpx.ASGITransport(app=svc.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as c:
            yield c


async def test_a_stopped_redis_fails_requests_with_503_and_they_recover(
        client: httpx.AsyncClient, redis_proc: tuple[LocalRedis, subprocess.Popen[bytes]]) -> None:
    _, proc = redis_proc
    for path in ("/hash", "/count"):  # both paths have live connections before Redis stops
        assert (await client.post(path)).status_code == 200
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        for path in ("/hash", "/count"):
            refused = await asyncio.wait_for(client.post(path), NO_HANG_S)
            assert refused.status_code == 503, (path, refused.text)
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.json()["status"] == 503
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    for path in ("/hash", "/count"):
        ok = await asyncio.wait_for(client.post(path), NO_HANG_S)
        assert ok.status_code == 200, (path, ok.text)


async def test_a_long_receive_on_a_quiet_queue_returns_empty_not_a_timeout(
        redis_proc: tuple[LocalRedis, subprocess.Popen[bytes]]) -> None:
    rd, _ = redis_proc
    queue = RedisStreamsQueue(rd.url, "quiet", command_timeout_s=TIMEOUT_S)
    try:
        # Asking to wait 3x the socket timeout: the BLOCK is capped below it, so Redis answers (nothing).
        assert await asyncio.wait_for(queue.receive(max_messages=1, wait_seconds=3 * TIMEOUT_S), NO_HANG_S) == []
    finally:
        await queue.close()


def test_a_blocking_read_blocks_for_less_than_the_socket_timeout() -> None:
    assert block_ms(1.0) == 1000  # the workers' usual wait is untouched (default timeout 5 s)
    assert block_ms(20.0) == 4000
    assert block_ms(20.0, 1.0) == 500 and block_ms(0.2, 1.0) == 200
