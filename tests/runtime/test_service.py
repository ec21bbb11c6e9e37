"""Service defaults against real Postgres and Redis: health, readiness, metrics, problem+json, body limits."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel

from stackwright.local.backing import LocalPostgres, LocalRedis
from stackwright.local.ports import free_port, port_in_use
from stackwright.runtime import Problem, Service, Settings, apply_migrations, store_from_url

pytestmark = pytest.mark.integration


class Thing(BaseModel):
    name: str
    size: int


def _service(pg_url: str, redis_url: str, *, max_body: int = 1024) -> Service:
    settings = Settings.from_env({"SERVICE_NAME": "things", "SYSTEM_NAME": "test", "DB_URL": pg_url,
                                  "CACHE_URL": redis_url, "MAX_BODY_BYTES": str(max_body),
                                  "DEPENDENCY_CHECK_INTERVAL_S": "0.1"})
    svc = Service(settings=settings)
    db = svc.postgres("db")
    cache = svc.redis("cache")

    @svc.app.post("/things", status_code=201)
    async def create(thing: Thing) -> dict:
        if thing.size > 100:
            raise Problem(409, "too big to store", limit=100)
        await cache.incr("things")
        return {"name": thing.name, "n": await db.pool.fetchval("SELECT $1::int + 1", thing.size)}

    @svc.app.get("/things/{name}")
    async def get(name: str) -> dict:
        raise Problem(404, f"no thing called {name}")

    @svc.app.get("/boom")
    async def boom() -> dict:
        raise RuntimeError("bug")

    return svc


@pytest.fixture
async def client(postgres_server: LocalPostgres, redis_server: LocalRedis) -> AsyncIterator[httpx.AsyncClient]:
    svc = _service(postgres_server.url, redis_server.url)
    async with svc.app.router.lifespan_context(svc.app):
        transport = httpx.ASGITransport(app=svc.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as c:
            yield c


async def test_health_ready_and_happy_path(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json()["status"] == "ok"
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready",
                                                         "dependencies": {"db": "ok", "cache": "ok"}}
    created = await client.post("/things", json={"name": "a", "size": 41})
    assert created.status_code == 201 and created.json() == {"name": "a", "n": 42}


async def test_errors_are_problem_json(client: httpx.AsyncClient) -> None:
    cases = [
        (await client.post("/things", content=b"{nope", headers={"content-type": "application/json"}), 400),
        (await client.post("/things", json={"name": "a"}), 422),
        (await client.post("/things", json={"name": "a", "size": "big"}), 422),
        (await client.post("/things", json={"name": "a", "size": 101}), 409),
        (await client.get("/things/zed"), 404),
        (await client.get("/no/such/route"), 404),
        (await client.delete("/things/zed"), 405),
        (await client.post("/things", content=b"x" * 2048, headers={"content-type": "application/json"}), 413),
        (await client.get("/boom"), 500),
    ]
    for resp, status in cases:
        assert resp.status_code == status, resp.text
        assert resp.headers["content-type"] == "application/problem+json"
        body = resp.json()
        assert body["status"] == status and body["title"]
    conflict = cases[3][0].json()
    assert conflict["detail"] == "too big to store" and conflict["limit"] == 100
    assert "bug" not in cases[-1][0].text  # internals are logged, not leaked


async def test_metrics_use_route_templates(client: httpx.AsyncClient) -> None:
    await client.get("/things/one")
    await client.get("/things/two")
    text = (await client.get("/metrics")).text
    assert 'starlette_requests_total{app_name="things",method="GET",path="/things/{name}",status_code="404"}' in text
    assert "starlette_request_duration_seconds_bucket" in text
    assert "starlette_requests_in_progress" in text
    assert 'path="/things/one"' not in text


async def test_not_ready_until_dependencies_have_answered_once(postgres_server: LocalPostgres) -> None:
    # A new process whose cache has never answered is not worth routing to (and `up` waits on this).
    svc = _service(postgres_server.url, "redis://127.0.0.1:1/0")
    async with svc.app.router.lifespan_context(svc.app):
        transport = httpx.ASGITransport(app=svc.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as c:
            assert (await c.get("/healthz")).status_code == 200  # liveness ignores dependencies
            ready = await c.get("/readyz")
            assert ready.status_code == 503 and ready.json()["status"] == "starting"
            assert ready.json()["dependencies"]["cache"].startswith("failing")


def _gauge(text: str, dependency: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "stackwright_dependency_up" and sample.labels == {"app_name": "things",
                                                                                 "dependency": dependency}:
                return sample.value
    return None


async def test_a_dependency_outage_after_start_keeps_the_process_ready(
        postgres_server: LocalPostgres, tmp_path: Path) -> None:
    """Readiness is process up and not draining: a shared Redis going away must not unready every replica.
    Its health shows on the stackwright_dependency_up gauge, and requests needing it answer 503 + Retry-After."""
    rd = LocalRedis(tmp_path / "redis", free_port())
    proc = subprocess.Popen(rd.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not port_in_use(rd.port):
            assert proc.poll() is None, "redis did not start"
            await asyncio.sleep(0.05)
        svc = _service(postgres_server.url, rd.url)
        async with svc.app.router.lifespan_context(svc.app):
            transport = httpx.ASGITransport(app=svc.app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://svc") as c:
                assert (await c.get("/readyz")).status_code == 200
                assert _gauge((await c.get("/metrics")).text, "cache") == 1.0
                proc.kill()
                proc.wait()
                for _ in range(200):  # the watch re-checks every 0.1 s here
                    if _gauge((await c.get("/metrics")).text, "cache") == 0.0:
                        break
                    await asyncio.sleep(0.05)
                assert _gauge((await c.get("/metrics")).text, "cache") == 0.0
                assert _gauge((await c.get("/metrics")).text, "db") == 1.0
                ready = await c.get("/readyz")
                assert ready.status_code == 200, ready.text
                assert ready.json()["dependencies"]["cache"].startswith("failing")
                refused = await c.post("/things", json={"name": "a", "size": 1})
                assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
                assert refused.headers["content-type"] == "application/problem+json"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_migrations_apply_once(fresh_db: str) -> None:
    files = [("0001_a.sql", "CREATE TABLE a (id int)"), ("0002_b.sql", "CREATE TABLE b (id int)")]
    assert await apply_migrations(fresh_db, files) == ["0001_a.sql", "0002_b.sql"]
    assert await apply_migrations(fresh_db, [*files, ("0003_c.sql", "CREATE TABLE c (id int)")]) == ["0003_c.sql"]
    with pytest.raises(Exception, match="syntax"):
        await apply_migrations(fresh_db, [("0004_bad.sql", "CREATE TABLE")])
    assert await apply_migrations(fresh_db, files) == []


async def test_local_object_store(tmp_path: Path) -> None:
    store = store_from_url((tmp_path / "bucket").as_uri())
    await store.put("a/b.json", json.dumps({"x": 1}).encode())
    assert json.loads(await store.get("a/b.json")) == {"x": 1}
    assert await store.list("a/") == ["a/b.json"]
    with pytest.raises(ValueError):
        await store.put("../escape", b"")
    await store.delete("a/b.json")
    with pytest.raises(KeyError):
        await store.get("a/b.json")


async def test_s3_object_store_with_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto import mock_aws

    fake = {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"}
    for key, value in fake.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        import boto3

        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="audit")
        store = store_from_url("s3://audit?region=us-east-1")
        await store.put("counted/1.json", b"{}")
        assert await store.list("counted/") == ["counted/1.json"]
        assert await store.get("counted/1.json") == b"{}"
        with pytest.raises(KeyError):
            await store.get("missing")


async def test_cache_and_queue_on_one_redis_share_one_connection(redis_server: LocalRedis) -> None:
    settings = Settings.from_env({"SERVICE_NAME": "shared", "SYSTEM_NAME": "test", "CACHE_URL": redis_server.url,
                                  "JOBS_URL": redis_server.url})
    svc = Service(settings=settings)
    cache = svc.redis("cache")
    jobs = svc.queue("jobs")
    assert cache.fast is not None and jobs._producer is cache.fast
    async with svc.app.router.lifespan_context(svc.app):
        await cache.set("shared-conn", "1")
        await jobs.send({"n": 1})
        assert await cache.get("shared-conn") == "1"
    with pytest.raises(ConnectionError):  # closed once, at shutdown, after both users
        await cache.get("shared-conn")


def test_platform_endpoints_answer_only_their_plain_spelling() -> None:
    """The edges block /metrics, /readyz, /docs ... as sent; a percent-encoded spelling (decoded by the
    server before routing) passes them, so the service itself refuses it."""
    import http.client

    from tests.helpers import serve

    svc = Service(settings=Settings.from_env({"SERVICE_NAME": "plain", "SYSTEM_NAME": "test"}))

    def status(base: str, path: str) -> int:
        conn = http.client.HTTPConnection(base.removeprefix("http://").split(":")[0], int(base.rsplit(":", 1)[1]))
        try:
            conn.putrequest("GET", path)  # sent as written (httpx would normalise the escapes)
            conn.endheaders()
            resp = conn.getresponse()
            resp.read()
            return resp.status
        finally:
            conn.close()

    with serve(svc.app) as base:
        assert [status(base, p) for p in ("/metrics", "/healthz", "/openapi.json", "/metrics?x=1")] == [200] * 4
        for encoded in ("/%6detrics", "/%6Detrics", "/healthz%3F", "/%72eadyz", "/openapi%2ejson", "/%64ocs"):
            assert status(base, encoded) == 404, encoded
