"""The local global entry point: what Route 53 does in front of a multi-region system, on one port.

Every region's gateway is health-checked every ``interval_s``; a region is unhealthy after
``failure_threshold`` consecutive failed checks and healthy again after as many successes (Route 53's
health checker, ``edge.health_check_interval_s`` / ``edge.health_check_failure_threshold`` in the spec).
A request goes to the region the client chose (the ``X-Region`` header: what latency records resolve to for
a client near that region), else to the primary; when that region is unhealthy, to the primary, then to the
first healthy region in spec order (failover records). Standby regions take traffic only that way.
Responses carry ``X-Served-By-Region``. ``GET /_global/regions`` lists each region's health and role;
``GET /_global/metrics`` exports region health and each replica's lag (seconds, bytes) to Prometheus;
with no healthy region the entry answers 503 problem+json.

Run as ``python -m stackwright.local.global_entry CONFIG.json``; the config::

    {"port": 8000, "interval_s": 10, "failure_threshold": 3,
     "regions": [{"name": "us-east-1", "role": "primary", "url": "http://127.0.0.1:8080",
                  "health_url": "http://127.0.0.1:8080/_edge/healthz"}, ...]}
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..runtime.problems import PROBLEM_JSON, problem_bytes

REGION_HEADER = "x-region"
SERVED_BY_HEADER = "x-served-by-region"
# Hop-by-hop headers are the entry's own business on each leg, never passed through.
_HOP = frozenset({"connection", "keep-alive", "te", "trailers", "transfer-encoding", "upgrade", "host",
                  "content-length", "proxy-authorization", "proxy-authenticate"})


@dataclass
class RegionHealth:
    """Health-check state of one region (Route 53: consecutive results against the threshold)."""

    name: str
    role: str
    url: str
    health_url: str
    healthy: bool = True
    failures: int = 0
    successes: int = 0
    last_checked: float | None = None
    last_error: str | None = None
    changed_at: float | None = None

    def record(self, ok: bool, threshold: int, error: str | None = None) -> None:
        """Count one check; flip healthy/unhealthy after ``threshold`` consecutive opposite results."""
        self.last_checked = time.time()
        self.last_error = error
        if ok:
            self.failures, self.successes = 0, self.successes + 1
            if not self.healthy and self.successes >= threshold:
                self.healthy, self.changed_at = True, time.time()
        else:
            self.successes, self.failures = 0, self.failures + 1
            if self.healthy and self.failures >= threshold:
                self.healthy, self.changed_at = False, time.time()

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role, "url": self.url, "healthy": self.healthy, "consecutive_failures": self.failures,
                "last_checked": self.last_checked, "last_error": self.last_error, "changed_at": self.changed_at}


class GlobalEntry:
    """Health checks plus region choice; :meth:`app` proxies requests to the chosen region."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.interval_s = float(config.get("interval_s", 10))
        self.threshold = int(config.get("failure_threshold", 3))
        self.regions = [RegionHealth(r["name"], r.get("role", "secondary"), r["url"].rstrip("/"),
                                     r.get("health_url") or r["url"].rstrip("/") + "/")
                        for r in config["regions"]]
        self.by_name = {r.name: r for r in self.regions}
        self.system_name = str(config.get("system", ""))
        self.replication: dict[str, dict[str, Any]] = config.get("replication", {})
        self.client: httpx.AsyncClient | None = None

    def choose(self, wanted: str | None) -> RegionHealth | None:
        """The region serving a client that wants ``wanted`` (None: no preference); None if none is healthy."""
        order: list[RegionHealth] = []
        if wanted in self.by_name and self.by_name[wanted].role != "standby":
            order.append(self.by_name[wanted])
        order += [r for r in self.regions if r.role == "primary"]
        order += [r for r in self.regions if r.role == "secondary"]
        order += [r for r in self.regions if r.role == "standby"]
        return next((r for r in order if r.healthy), None)

    async def check_once(self, client: httpx.AsyncClient) -> None:
        """One round of health checks, all regions at once (a check times out after the interval, at most 2 s)."""
        async def one(region: RegionHealth) -> None:
            try:
                resp = await client.get(region.health_url, timeout=min(2.0, self.interval_s))
                region.record(resp.status_code < 400, self.threshold,
                              None if resp.status_code < 400 else f"HTTP {resp.status_code}")
            except httpx.HTTPError as exc:
                region.record(False, self.threshold, type(exc).__name__)

        await asyncio.gather(*(one(r) for r in self.regions))

    async def _checker(self) -> None:
        assert self.client is not None
        while True:
            await self.check_once(self.client)
            await asyncio.sleep(self.interval_s)

    async def regions_view(self, request: Request) -> Response:
        return JSONResponse({"regions": {r.name: r.to_dict() for r in self.regions},
                             "interval_s": self.interval_s, "failure_threshold": self.threshold})

    async def metrics(self, request: Request) -> Response:
        """Prometheus text: health per region and, for each replicated database in the config's
        ``replication`` (``{resource: {"primary": url, "replicas": {region: url}}}``), each replica's lag."""
        from ..monitoring import conventions as c
        from .backing.replica import lag

        system = self.system_name
        lines = ["# TYPE stackwright_region_healthy gauge"]
        lines += [f'stackwright_region_healthy{{system="{system}",region="{r.name}",role="{r.role}"}} '
                  f"{int(r.healthy)}" for r in self.regions]
        seconds, size = [f"# TYPE {c.REPLICATION_LAG_SECONDS} gauge"], [f"# TYPE {c.REPLICATION_LAG_BYTES} gauge"]
        for resource, repl in self.replication.items():
            for region, url in repl.get("replicas", {}).items():
                labels = f'{{system="{system}",resource="{resource}",region="{region}"}}'
                try:
                    got = await lag(url, repl.get("primary"))
                except Exception:  # a replica that does not answer has no lag to report; health says why
                    continue
                if got.seconds is not None:
                    seconds.append(f"{c.REPLICATION_LAG_SECONDS}{labels} {got.seconds:.3f}")
                if got.bytes is not None:
                    size.append(f"{c.REPLICATION_LAG_BYTES}{labels} {got.bytes}")
        return Response("\n".join(lines + seconds + size) + "\n",
                        media_type="text/plain; version=0.0.4; charset=utf-8")

    async def proxy(self, request: Request) -> Response:
        region = self.choose(request.headers.get(REGION_HEADER))
        if region is None:
            return Response(problem_bytes(503, "no region is healthy"), status_code=503, media_type=PROBLEM_JSON)
        assert self.client is not None
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _HOP]
        url = region.url + request.url.path + (f"?{request.url.query}" if request.url.query else "")
        try:
            upstream = await self.client.request(request.method, url, headers=headers, content=await request.body(),
                                                 timeout=30.0)
        except httpx.HTTPError:
            # Between the failure and the health checker noticing it (interval x threshold), a request to a
            # dead region fails: that window is what the failover drill measures.
            return Response(problem_bytes(502, f"region {region.name} did not answer"), status_code=502,
                            media_type=PROBLEM_JSON, headers={SERVED_BY_HEADER: region.name})
        out = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP | {"date", "server"}}
        out[SERVED_BY_HEADER] = region.name
        return Response(upstream.content, status_code=upstream.status_code, headers=out)

    def app(self) -> Starlette:
        @contextlib.asynccontextmanager
        async def lifespan(_app: Starlette) -> AsyncIterator[None]:
            self.client = httpx.AsyncClient(limits=httpx.Limits(max_connections=200))
            task = asyncio.create_task(self._checker())
            try:
                yield
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                await self.client.aclose()

        methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
        return Starlette(routes=[Route("/_global/regions", self.regions_view, methods=["GET"]),
                                 Route("/_global/metrics", self.metrics, methods=["GET"]),
                                 Route("/{path:path}", self.proxy, methods=methods)], lifespan=lifespan)


def main(argv: list[str] | None = None) -> None:
    """Serve the global entry described by a config file on its configured port."""
    import uvicorn

    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        sys.exit("usage: python -m stackwright.local.global_entry CONFIG.json")
    config = json.loads(Path(args[0]).read_text())
    uvicorn.run(GlobalEntry(config).app(), host="127.0.0.1", port=int(config["port"]), log_level="warning",
                access_log=False, server_header=False)


if __name__ == "__main__":
    main()
