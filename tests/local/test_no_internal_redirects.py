"""No service redirects a client to its internal address: through the gateway, fastapi-app's
``DELETE /items/`` answered 307 with ``location: http://127.0.0.1:<the service's own port>/items`` (Starlette's
trailing-slash redirect, built from the Host the service saw), and following it bypassed the edge. A path that
differs from a route by a trailing slash is now a 404 problem+json, as the same service answers behind the ALB."""

from __future__ import annotations

import httpx
import pytest
from tests.helpers import serve

from stackwright.local.gateway import build_app
from stackwright.local.ports import free_port
from stackwright.local.routing import EdgeRoute
from stackwright.runtime import Service, Settings

pytestmark = pytest.mark.integration


def _items_service() -> Service:
    svc = Service(settings=Settings.from_env({"SERVICE_NAME": "api", "SYSTEM_NAME": "test"}))

    @svc.app.get("/items")
    async def listing() -> list[str]:
        return ["a"]

    @svc.app.delete("/items")
    async def delete_all() -> dict[str, int]:
        return {"deleted": 1}

    @svc.app.get("/things/")  # declared with the slash: the bare spelling is not redirected to it either
    async def things() -> list[str]:
        return []

    return svc


@pytest.mark.parametrize(("method", "path"), [("DELETE", "/items/"), ("GET", "/items/"), ("GET", "/things")])
def test_a_trailing_slash_is_a_404_through_the_gateway_not_a_redirect(method: str, path: str) -> None:
    with serve(_items_service().app) as upstream:
        port = free_port()
        config = {"port": port, "routes": [EdgeRoute("/items", "api").to_dict(), EdgeRoute("/things", "api").to_dict()],
                  "upstreams": {"api": [upstream]}}
        with serve(build_app(config), port=port) as edge:
            resp = httpx.request(method, f"{edge}{path}", follow_redirects=False, timeout=10)
            assert (resp.status_code, resp.headers.get("location")) == (404, None)
            assert resp.headers["content-type"] == "application/problem+json"
            assert resp.json()["title"] == "Not Found"
            # the exact spellings still work through the same edge
            assert httpx.get(f"{edge}/items", timeout=10).json() == ["a"]
            assert httpx.delete(f"{edge}/items", timeout=10).json() == {"deleted": 1}
            assert httpx.get(f"{edge}/things/", timeout=10).json() == []
