"""The search service's two index engines answer alike: Postgres full-text (local) and OpenSearch (AWS).

The OpenSearch side runs on osmem-server (an in-memory server speaking the OpenSearch API, a bundled binary);
the Postgres side on a scratch database of the session's Postgres. Both get the same documents and must
return the same candidates for each query (in the same order where the order is by id).
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import asyncpg
import pytest

from .conftest import Files

pytestmark = pytest.mark.integration

ENGINES = Path(__file__).resolve().parents[1] / "services" / "search" / "engines.py"


def _engines() -> ModuleType:
    name = "files_test_search_engines"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ENGINES)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the class is made
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="module")
def opensearch_url() -> Iterator[str]:
    osmem = pytest.importorskip("osmem_server")
    with osmem.OsmemServer.start() as server:
        yield server.url


def _docs(e: ModuleType) -> list[Any]:
    rows = [("Holiday Photo.JPG", ["beach", "summer"], "image/jpeg", "alice", ""),
            ("notes.txt", ["work"], "text/plain", "alice", "quarterly budget report for the board"),
            ("budget-2026.xlsx", ["work"], "application/octet-stream", "bob", ""),
            ("Café menu.txt", [], "text/plain", "bob", "croissant and espresso"),
            ("scan.png", ["work", "receipts"], "image/png", "carol", "")]
    return [e.Doc(uuid.UUID(int=i + 1), *row) for i, row in enumerate(rows)]


async def _answers(index: Any, e: ModuleType, queries: list[Any]) -> list[list[uuid.UUID]]:
    await index.open()
    try:
        assert await index.is_empty()
        for doc in _docs(e):
            await index.upsert(doc)
        await index.upsert(_docs(e)[0])  # an upsert twice is one document
        await index.delete(uuid.UUID(int=99))  # deleting what is not there is fine (idempotent messages)
        if getattr(index, "client", None) is not None:
            await index.client.indices.refresh(index=index.name)  # OpenSearch shows writes after a refresh
        assert not await index.is_empty()
        return [await index.candidates(q, 0, 50) for q in queries]
    finally:
        await index.close()


def test_postgres_and_opensearch_find_the_same_files(files: Files, opensearch_url: str) -> None:
    e = _engines()
    Q = e.SearchQuery
    queries = [Q(q="budget"), Q(q="photo"), Q(q="CROISSANT"), Q(q="menu"), Q(tag="work"), Q(tag="WORK", owner="bob"),
               Q(type="image"), Q(type="text/plain"), Q(owner="alice"), Q(q="budget", tag="work", owner="alice"),
               Q(q="nothing-matches-this"), Q()]

    async def postgres() -> list[list[uuid.UUID]]:
        admin = files.state["backing"]["postgres"]["url"]
        scratch = f"search_engines_{uuid.uuid4().hex[:8]}"
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'CREATE DATABASE "{scratch}"')
        finally:
            await conn.close()
        url = admin.rsplit("/", 1)[0] + f"/{scratch}"
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        try:
            return await _answers(e.PostgresIndex(SimpleNamespace(pool=pool)), e, queries)
        finally:
            await pool.close()

    pg = asyncio.run(postgres())
    os_ = asyncio.run(_answers(e.OpenSearchIndex(opensearch_url, index_name=f"t-{uuid.uuid4().hex[:6]}"), e,
                               queries))
    ids = {d.name: d.file_id for d in _docs(e)}
    expected = {"budget": {"notes.txt", "budget-2026.xlsx"}, "photo": {"Holiday Photo.JPG"},
                "CROISSANT": {"Café menu.txt"}, "menu": {"Café menu.txt"}}
    for q, got_pg, got_os in zip(queries, pg, os_, strict=True):
        if q.q is None:  # ordered by id in both
            assert got_pg == got_os, q
        else:  # ranked: the same set (the two engines score differently)
            assert set(got_pg) == set(got_os), q
        if q.q in expected and q.tag is None:
            assert set(got_pg) == {ids[n] for n in expected[q.q]}, q
    assert set(pg[4]) == {ids["notes.txt"], ids["budget-2026.xlsx"], ids["scan.png"]}  # tag work
    assert pg[5] == [ids["budget-2026.xlsx"]]  # tag WORK (folded) and owner bob
    assert set(pg[6]) == {ids["Holiday Photo.JPG"], ids["scan.png"]}  # type image
    assert pg[9] == [ids["notes.txt"]]
    assert pg[10] == [] and len(pg[11]) == 5


def test_opensearch_body_is_what_the_service_sends() -> None:
    e = _engines()
    body = e.opensearch_query(e.SearchQuery(q="a*b", tag="Work", type="image", owner="bob"), 200, 200)
    assert body["from"] == 200 and body["size"] == 200 and body["_source"] is False
    assert body["sort"] == ["_score", {"file_id": "asc"}]
    should = body["query"]["bool"]["must"][0]["bool"]["should"]
    assert should[1] == {"wildcard": {"name.raw": {"value": "*a\\*b*", "case_insensitive": True}}}
    assert body["query"]["bool"]["filter"] == [{"term": {"tags": "work"}}, {"prefix": {"content_type": "image/"}},
                                               {"term": {"owner_id": "bob"}}]
    assert e.is_opensearch("https://search-files-dev-index-abc.us-east-1.es.amazonaws.com")
    assert not e.is_opensearch("postgresql://u@127.0.0.1:5432/files_index")
