"""Per-route figures from the local Prometheus (``stackwright up --monitoring``) instead of the dashboard's
own readings: the same numbers Grafana and the alert rules see.

The queries group by ``app_name`` (the service; ``edge`` for the gateway), ``method`` and ``path``, over
:data:`RANGE`; a route Prometheus has not seen twice yet simply has no rate. Any failure (Prometheus still
starting, stopped) returns None and the dashboard falls back to its own readings.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import httpx

from .metrics import RouteStats

# Several scrapes of the local Prometheus (5 s apart) so a rate exists soon after traffic starts.
RANGE = "30s"
_REQ = "starlette_requests_total"
_BUCKET = "starlette_request_duration_seconds_bucket"


def _queries(by: str) -> dict[str, str]:
    return {
        "rps": f"sum by ({by}) (rate({_REQ}[{RANGE}]))",
        "err": f'sum by ({by}) (rate({_REQ}{{status_code=~"5.."}}[{RANGE}]))',
        "p95": f"histogram_quantile(0.95, sum by ({by}, le) (rate({_BUCKET}[{RANGE}])))",
        "total": f"sum by ({by}) ({_REQ})",
    }


ROUTE_BY = "app_name, method, path"
SERVICE_BY = "app_name"


def _figures(results: dict[str, list[dict[str, Any]]], keys: tuple[str, ...]) -> dict[tuple[str, ...], RouteStats]:
    """RouteStats per label tuple (``keys``) from the four instant-query results."""
    values: dict[tuple[str, ...], dict[str, float]] = {}
    for name, series in results.items():
        for item in series:
            key = tuple(item["metric"].get(k, "*") for k in keys)
            values.setdefault(key, {})[name] = float(item["value"][1])
    out = {}
    for key, v in values.items():
        rps = v.get("rps", 0.0)
        p95 = v.get("p95")
        out[key] = RouteStats(
            method=key[1] if len(key) > 1 else "*", path=key[2] if len(key) > 2 else "*", rps=rps,
            p95_ms=p95 * 1000.0 if p95 is not None and math.isfinite(p95) else None,
            error_share=v.get("err", 0.0) / rps if rps > 0 else None, total=v.get("total", 0.0))
    return out


async def query_figures(client: httpx.AsyncClient, base_url: str) -> dict[str, dict[str, Any]] | None:
    """``{app_name: {"overall": RouteStats, "routes": [RouteStats, ...]}}`` from Prometheus at ``base_url``,
    or None if it cannot answer."""
    async def one(q: str) -> list[dict[str, Any]]:
        resp = await client.get(f"{base_url}/api/v1/query", params={"query": q})
        resp.raise_for_status()
        body = resp.json()
        if body.get("status") != "success":
            raise ValueError(body.get("error", "query failed"))
        return body["data"]["result"]

    names = list(_queries(ROUTE_BY))
    try:
        route_res, svc_res = await asyncio.gather(
            asyncio.gather(*(one(q) for q in _queries(ROUTE_BY).values())),
            asyncio.gather(*(one(q) for q in _queries(SERVICE_BY).values())))
    except (httpx.HTTPError, ValueError, KeyError):
        return None
    routes = _figures(dict(zip(names, route_res, strict=True)), ("app_name", "method", "path"))
    overall = _figures(dict(zip(names, svc_res, strict=True)), ("app_name",))
    out: dict[str, dict[str, Any]] = {}
    for (app,), stats in overall.items():
        mine = [r for key, r in routes.items() if key[0] == app]
        out[app] = {"overall": stats, "routes": sorted(mine, key=lambda r: (-r.rps, -r.total, r.path, r.method))}
    return out
