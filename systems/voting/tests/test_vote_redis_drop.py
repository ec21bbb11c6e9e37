"""A vote whose dedup SET reaches Redis but whose answer is lost with the connection must not lock the viewer out.

The runtime's Redis client never re-sends a write after a dropped connection (it might have landed), so the
vote service answers 503 and must undo the SET it cannot see. Here a TCP proxy between a second, in-process
vote service and the system's Redis forwards the first ``SET ... NX`` and then cuts the connection before the
answer comes back.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from stackwright.local.ports import free_port
from stackwright.local.state import read_state

pytestmark = pytest.mark.integration

VOTE_APP = Path(__file__).resolve().parents[1] / "services" / "vote" / "app.py"


class DropAfterSetNX:
    """Forwards TCP to Redis; the first time a client sends a SET ... NX, forwards it, then drops the link."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.dropped = threading.Event()
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> DropAfterSetNX:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", self.port))
        self._ready.set()
        self.loop.run_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)

        async def upstream_to_client() -> None:
            while data := await up_reader.read(65536):
                writer.write(data)
                await writer.drain()

        back = asyncio.create_task(upstream_to_client())
        try:
            while data := await reader.read(65536):
                up_writer.write(data)
                await up_writer.drain()
                if not self.dropped.is_set() and b"SET" in data and b"NX" in data:
                    self.dropped.set()
                    back.cancel()  # the answer to the SET never reaches the client
                    await asyncio.sleep(0.2)  # let Redis apply it
                    break
        finally:
            back.cancel()
            writer.transport.abort()
            up_writer.transport.abort()


@pytest.fixture
def second_vote_service(voting: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, DropAfterSetNX]]:
    """The vote service's app in this process, wired like the running one except its cache goes via the proxy."""
    pid = read_state("voting", voting.state_root)["services"]["vote"][0]["pid"]
    env = dict(line.split("=", 1) for line in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in line)
    cache = urlsplit(env["CACHE_URL"])
    with DropAfterSetNX(cache.hostname or "127.0.0.1", cache.port or 6379) as proxy:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("CACHE_URL", f"redis://127.0.0.1:{proxy.port}{cache.path}")
        spec = importlib.util.spec_from_file_location(f"vote_app_{os.getpid()}_{proxy.port}", VOTE_APP)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module.app, proxy


def test_a_lost_dedup_answer_does_not_lock_the_viewer_out(voting: Any, second_vote_service: Any) -> None:
    app, proxy = second_vote_service
    poll = voting.new_poll()
    viewer = voting.token("dropped-set-viewer")

    async def cast_twice() -> tuple[httpx.Response, httpx.Response]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://vote") as client:
                url = f"/polls/{poll['id']}/votes"
                first = await client.post(url, json={"option": "B"}, headers=viewer)
                second = await client.post(url, json={"option": "B"}, headers=viewer)
                return first, second

    first, second = asyncio.run(cast_twice())
    assert proxy.dropped.is_set()
    assert first.status_code == 503 and first.headers["retry-after"] == "1"
    assert second.status_code == 202, second.text

    def counted() -> int:
        return voting.client.get(f"/polls/{poll['id']}/results").json()["totals"]["B"]

    deadline = time.monotonic() + 20
    while counted() != 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert counted() == 1
