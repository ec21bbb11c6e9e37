"""Route figures from the local Prometheus (``up --monitoring``): the queries' answers into RouteStats, and
None (fall back to the dashboard's own readings) when Prometheus cannot answer."""

from __future__ import annotations

import httpx
import pytest

from stackwright.local.dashboard import promql


def _vector(*items: tuple[dict[str, str], float]) -> dict:
    return {"status": "success", "data": {"resultType": "vector",
                                          "result": [{"metric": m, "value": [0, str(v)]} for m, v in items]}}


def _answer(request: httpx.Request) -> httpx.Response:
    q = request.url.params["query"]
    by_route = "method, path" in q
    api = {"app_name": "api", **({"method": "GET", "path": "/items"} if by_route else {})}
    edge = {"app_name": "edge", **({"method": "GET", "path": "/items"} if by_route else {})}
    if "histogram_quantile" in q:
        return httpx.Response(200, json=_vector((api, 0.012), (edge, float("nan"))))
    if "status_code" in q:
        return httpx.Response(200, json=_vector((api, 0.5)))
    if q.startswith("sum by") and "rate(" in q:
        return httpx.Response(200, json=_vector((api, 10.0), (edge, 10.0)))
    return httpx.Response(200, json=_vector((api, 1234.0), (edge, 1300.0)))


async def test_figures_per_app_and_route() -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(_answer)) as client:
        figs = await promql.query_figures(client, "http://prom")
    assert figs is not None
    api = figs["api"]
    assert api["overall"].rps == 10.0 and api["overall"].total == 1234.0
    route = api["routes"][0]
    assert (route.method, route.path) == ("GET", "/items")
    assert route.p95_ms == pytest.approx(12.0) and route.error_share == pytest.approx(0.05)
    assert figs["edge"]["overall"].p95_ms is None  # NaN (no observations) is "not known", not a number


async def test_an_unreachable_or_failing_prometheus_gives_none() -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"status": "error", "error": "bad query"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(broken)) as client:
        assert await promql.query_figures(client, "http://prom") is None
    async with httpx.AsyncClient(timeout=0.5) as client:
        assert await promql.query_figures(client, "http://127.0.0.1:9") is None
