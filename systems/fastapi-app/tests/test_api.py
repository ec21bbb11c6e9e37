"""The items API against a real PostgreSQL: CRUD, pagination, filters, problem+json errors, /health, /metrics."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"


async def _create(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"name": "widget", "price": "9.99", **fields}
    resp = await client.post("/items", json=body)
    assert resp.status_code == 201, resp.text
    return resp.json()


def _problem(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM)
    body = resp.json()
    assert body["status"] == status and body["title"] and body["type"] == "about:blank"
    return body


# ---------------------------------------------------------------- CRUD


async def test_create_then_read(client: httpx.AsyncClient) -> None:
    resp = await client.post("/items", json={"name": "  Blue mug ", "description": "holds tea", "price": 12.5,
                                             "quantity": 3, "tags": ["kitchen", "blue"]})
    assert resp.status_code == 201
    item = resp.json()
    assert item["name"] == "Blue mug"  # trimmed
    assert item["price"] == "12.50" and item["quantity"] == 3 and item["tags"] == ["kitchen", "blue"]
    assert item["version"] == 1
    assert resp.headers["location"] == f"/items/{item['id']}"
    assert resp.headers["etag"] == '"1"'

    got = await client.get(resp.headers["location"])
    assert got.status_code == 200
    assert got.json() == item
    assert got.headers["etag"] == '"1"'


async def test_put_replaces_and_patch_changes_only_given_fields(client: httpx.AsyncClient) -> None:
    item = await _create(client, description="old", quantity=5, tags=["a"])
    url = f"/items/{item['id']}"

    put = await client.put(url, json={"name": "gadget", "price": "1.00"})
    assert put.status_code == 200
    assert put.json() | {"updated_at": None} == item | {
        "name": "gadget", "price": "1.00", "description": "", "quantity": 0, "tags": [], "version": 2,
        "updated_at": None}

    patch = await client.patch(url, json={"quantity": 7}, headers={"content-type": "application/merge-patch+json"})
    assert patch.status_code == 200
    assert patch.json()["quantity"] == 7 and patch.json()["name"] == "gadget" and patch.json()["version"] == 3

    unchanged = await client.patch(url, json={})
    assert unchanged.status_code == 200 and unchanged.json()["version"] == 3
    assert (await client.get(url)).json()["quantity"] == 7


async def test_if_match_guards_concurrent_updates(client: httpx.AsyncClient) -> None:
    item = await _create(client)
    url = f"/items/{item['id']}"
    ok = await client.patch(url, json={"quantity": 1}, headers={"if-match": '"1"'})
    assert ok.status_code == 200 and ok.headers["etag"] == '"2"'
    stale = await client.patch(url, json={"quantity": 2}, headers={"if-match": '"1"'})
    assert _problem(stale, 412)["current_version"] == 2
    assert _problem(await client.delete(url, headers={"if-match": '"garbage"'}), 412)
    assert (await client.delete(url, headers={"if-match": '"2"'})).status_code == 204


async def test_delete(client: httpx.AsyncClient) -> None:
    item = await _create(client)
    url = f"/items/{item['id']}"
    resp = await client.delete(url)
    assert resp.status_code == 204 and resp.content == b""
    assert "does not exist" in _problem(await client.get(url), 404)["detail"]
    _problem(await client.delete(url), 404)
    _problem(await client.put(url, json={"name": "x", "price": 1}), 404)
    _problem(await client.patch(url, json={"name": "x"}), 404)


async def test_duplicate_name_is_a_conflict(client: httpx.AsyncClient) -> None:
    await _create(client, name="Lamp")
    body = _problem(await client.post("/items", json={"name": "lamp", "price": 1}), 409)
    assert "already exists" in body["detail"]
    other = await _create(client, name="Desk")
    _problem(await client.patch(f"/items/{other['id']}", json={"name": "LAMP"}), 409)


# ---------------------------------------------------------------- list


async def test_pagination_walks_every_item_once(client: httpx.AsyncClient) -> None:
    for i in range(25):
        await _create(client, name=f"item-{i:02d}", price=f"{i}.00")
    seen: list[str] = []
    offset: int | None = 0
    pages = 0
    while offset is not None:
        page = (await client.get("/items", params={"limit": 10, "offset": offset, "sort": "price"})).json()
        assert page["total"] == 25 and page["limit"] == 10 and page["offset"] == offset
        seen += [i["name"] for i in page["items"]]
        offset = page["next_offset"]
        pages += 1
    assert pages == 3
    assert seen == [f"item-{i:02d}" for i in range(25)]

    desc = (await client.get("/items", params={"sort": "-price", "limit": 3})).json()
    assert [i["price"] for i in desc["items"]] == ["24.00", "23.00", "22.00"]
    assert (await client.get("/items", params={"offset": 100})).json()["items"] == []
    default = (await client.get("/items")).json()
    assert len(default["items"]) == 20 and default["next_offset"] == 20


async def test_filters(client: httpx.AsyncClient) -> None:
    await _create(client, name="Red chair", price="40.00", quantity=0, tags=["furniture", "red"])
    await _create(client, name="Red pen", price="2.50", quantity=100, tags=["office", "red"])
    await _create(client, name="Blue chair", price="45.00", quantity=2, tags=["furniture"])
    await _create(client, name="100% cotton_shirt", price="20.00", quantity=1)

    async def names(**params: Any) -> list[str]:
        resp = await client.get("/items", params={"sort": "name", **params})
        assert resp.status_code == 200, resp.text
        return [i["name"] for i in resp.json()["items"]]

    assert await names(name="CHAIR") == ["Blue chair", "Red chair"]
    assert await names(tag="red") == ["Red chair", "Red pen"]
    assert await names(min_price="20", max_price="40") == ["100% cotton_shirt", "Red chair"]
    assert await names(in_stock="true") == ["100% cotton_shirt", "Blue chair", "Red pen"]
    assert await names(in_stock="false") == ["Red chair"]
    assert await names(tag="furniture", in_stock="true") == ["Blue chair"]
    # LIKE wildcards in the filter are literal characters
    assert await names(name="%") == ["100% cotton_shirt"]
    assert await names(name="n_s") == ["100% cotton_shirt"]
    assert await names(name="e_p") == []
    total = (await client.get("/items", params={"tag": "red"})).json()["total"]
    assert total == 2


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("body", [
    {"price": "1.00"},                                   # name missing
    {"name": "", "price": "1.00"},                       # empty name
    {"name": "   ", "price": "1.00"},                    # blank name
    {"name": "x" * 201, "price": "1.00"},                # too long
    {"name": "a\x00b", "price": "1.00"},                 # NUL cannot be stored
    {"name": "x", "price": "-1"},                        # negative price
    {"name": "x", "price": "1.001"},                     # sub-cent price
    {"name": "x", "price": "1e20"},                      # too many digits
    {"name": "x", "price": "NaN"},
    {"name": "x", "price": "cheap"},
    {"name": "x", "price": 1, "quantity": -1},
    {"name": "x", "price": 1, "quantity": 2**31},        # beyond the integer column
    {"name": "x", "price": 1, "quantity": 1.5},
    {"name": "x", "price": 1, "tags": ["Not A Tag"]},
    {"name": "x", "price": 1, "tags": ["t"] * 21},
    {"name": "x", "price": 1, "colour": "red"},          # unknown field
    [1, 2, 3],
    "just a string",
    None,
])
async def test_bad_create_bodies_are_422(client: httpx.AsyncClient, body: Any) -> None:
    problem = _problem(await client.post("/items", json=body), 422)
    assert problem["errors"] and all({"loc", "msg", "type"} <= set(e) for e in problem["errors"])


async def test_bad_patch_bodies_are_422(client: httpx.AsyncClient) -> None:
    item = await _create(client)
    url = f"/items/{item['id']}"
    body = _problem(await client.patch(url, json={"name": None}), 422)
    assert body["errors"][0]["loc"] == ["body", "name"]
    _problem(await client.patch(url, json={"price": None}), 422)
    _problem(await client.patch(url, json={"id": "x"}), 422)
    _problem(await client.put(url, json={"name": "only a name"}), 422)


async def test_malformed_json_is_400_and_wrong_media_type_is_415(client: httpx.AsyncClient) -> None:
    bad = await client.post("/items", content=b'{"name": "x", ', headers={"content-type": "application/json"})
    assert "not valid JSON" in _problem(bad, 400)["detail"]
    huge = await client.post("/items", content=b"[" + b"1," * 600_000 + b"1]",
                             headers={"content-type": "application/json"})
    _problem(huge, 413)
    text = await client.post("/items", content=b"name=x", headers={"content-type": "text/plain"})
    _problem(text, 415)
    form = await client.post("/items", data={"name": "x", "price": "1"})
    _problem(form, 415)


@pytest.mark.parametrize("params", [
    {"limit": 0}, {"limit": 101}, {"limit": "ten"}, {"offset": -1}, {"sort": "id; DROP TABLE items"},
    {"min_price": "-5"}, {"max_price": "abc"}, {"in_stock": "maybe"}, {"tag": "Bad Tag"}, {"name": "x\x00"},
    {"name": "x" * 201},
])
async def test_bad_list_parameters_are_422(client: httpx.AsyncClient, params: dict[str, Any]) -> None:
    _problem(await client.get("/items", params=params), 422)


async def test_contradictory_price_range_is_400(client: httpx.AsyncClient) -> None:
    body = _problem(await client.get("/items", params={"min_price": "10", "max_price": "5"}), 400)
    assert "greater than" in body["detail"]


async def test_bad_ids_routes_and_methods(client: httpx.AsyncClient) -> None:
    assert _problem(await client.get("/items/not-a-uuid"), 422)["errors"][0]["loc"] == ["path", "item_id"]
    _problem(await client.get("/items/00000000-0000-0000-0000-000000000000"), 404)
    _problem(await client.get("/nope"), 404)
    not_allowed = await client.delete("/items")
    _problem(not_allowed, 405)
    assert not_allowed.headers["allow"] == "GET, HEAD, POST"  # every method of the path (RFC 9110), not just POST


# ---------------------------------------------------------------- ops


async def test_health(client: httpx.AsyncClient) -> None:
    resp = await client.get("/health")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok", "service": "api", "checks": {"db": "ok"}}
    assert (await client.get("/healthz")).status_code == 200
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready", "dependencies": {"db": "ok"}}


async def test_database_outage_is_503_not_500(client: httpx.AsyncClient) -> None:
    client.app.state.db.pool.terminate()  # type: ignore[attr-defined]
    items = await client.get("/items")
    _problem(items, 503)
    assert items.headers["retry-after"] == "5"
    # A shared database's outage must not take every replica out of the load balancer (or restart it):
    # the probes stay green, the requests that need the database say 503 + Retry-After.
    assert (await client.get("/health")).status_code == 200
    assert (await client.get("/readyz")).status_code == 200
    assert (await client.get("/healthz")).status_code == 200


async def test_metrics_use_the_seed_names(client: httpx.AsyncClient) -> None:
    item = await _create(client)
    await client.get(f"/items/{item['id']}")
    await client.get("/items/00000000-0000-0000-0000-000000000000")
    await client.get("/health")
    resp = await client.get("/metrics")
    assert resp.status_code == 200
    samples = [s for family in text_string_to_metric_families(resp.text) for s in family.samples
               if s.labels.get("app_name") == "api"]

    def has(name: str, **labels: str) -> bool:
        return any(s.name == name and labels.items() <= s.labels.items() for s in samples)

    assert has("starlette_requests_total", method="GET", path="/items/{item_id}", status_code="200")
    assert has("starlette_requests_total", method="GET", path="/items/{item_id}", status_code="404")
    assert has("starlette_requests_total", method="POST", path="/items", status_code="201")
    assert has("starlette_request_duration_seconds_bucket", path="/items/{item_id}", status_code="200", le="0.2")
    assert has("starlette_request_duration_seconds_count", path="/items", method="POST")
    assert has("starlette_request_duration_seconds_sum", path="/items", method="POST")
    assert has("starlette_requests_in_progress", method="GET")
    # probes and scrapes are not traffic
    assert not [s for s in samples if s.labels.get("path") in {"/health", "/metrics", "/healthz", "/readyz"}]
