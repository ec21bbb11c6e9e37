"""A real PostgreSQL (embedded pgserver) with the spec's migrations applied, and the api app in-process."""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import asyncpg
import httpx
import pgserver
import pytest
from tests.helpers import system_up

from stackwright.runtime import Settings, shutdown
from stackwright.spec import PostgresResource, load_system

SYSTEM_DIR = Path(__file__).resolve().parents[1]
SPEC = SYSTEM_DIR / "system.yaml"
HAS_PROMETHEUS = shutil.which("prometheus") is not None
MIGRATION_NAME = re.compile(r"^\d{4}_[a-z0-9_]+\.sql$")


def migration_files() -> list[Path]:
    """The db resource's migrations, in the order the runner applies them (NNNN_name.sql)."""
    system = load_system(SYSTEM_DIR / "system.yaml")
    db = system.resources["db"]
    assert isinstance(db, PostgresResource) and db.migrations
    folder = system.base_dir / db.migrations
    files = sorted(p for p in folder.iterdir() if p.suffix == ".sql")
    bad = [p.name for p in files if not MIGRATION_NAME.match(p.name)]
    assert not bad, f"migration files must be named NNNN_name.sql: {bad}"
    return files


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh database on an embedded PostgreSQL server, migrated once per session."""
    server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    server.psql("CREATE DATABASE fastapi_app_test;")
    url = server.get_uri("fastapi_app_test")

    async def migrate() -> None:
        conn = await asyncpg.connect(url)
        try:
            for path in migration_files():
                async with conn.transaction():
                    await conn.execute(path.read_text())
        finally:
            await conn.close()

    import asyncio

    asyncio.run(migrate())
    yield url
    server.cleanup()


@pytest.fixture(scope="session")
def api_module(postgres_url: str) -> Iterator[ModuleType]:
    """services/api/app.py imported by path, as the runner's ``app:app`` would load it (with DB_URL set)."""
    spec = importlib.util.spec_from_file_location("fastapi_app_api", SYSTEM_DIR / "services" / "api" / "app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DB_URL", postgres_url)
        mp.setenv("SERVICE_NAME", "api")
        spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture
async def client(api_module: ModuleType, postgres_url: str,
                 monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to the app in-process, lifespan (pool) included, on an empty items table."""
    conn = await asyncpg.connect(postgres_url)
    await conn.execute("TRUNCATE items")
    await conn.close()
    # The runtime's draining flag is process-wide and set when an app's lifespan ends; each test here runs
    # a fresh app in the same process, so start it undrained.
    monkeypatch.setattr(shutdown, "_draining", False)
    app = api_module.create_app(Settings.from_env({"SERVICE_NAME": "api", "SYSTEM_NAME": "fastapi-app",
                                                   "DB_URL": postgres_url}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as c:
            c.app = app  # type: ignore[attr-defined]
            yield c


@pytest.fixture(scope="session")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """fastapi-app started by ``stackwright up`` (real processes, free ports), with ``--monitoring`` when the
    prometheus binary is installed; its state (gateway, services' application and platform URLs)."""
    root = tmp_path_factory.mktemp("state")
    extra = ["--monitoring"] if HAS_PROMETHEUS else []
    with system_up(SPEC, root, extra_args=extra, timeout_s=180) as state:
        state["state_root"] = str(root)  # for tests that run the CLI (status --state-dir) against this run
        yield state
