"""Run a canary rehearsal (stackwright.local.rollout) while an open-loop load goes through the gateway."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from stackwright.bench.openloop import OpenLoop, Outcome
from stackwright.local.rollout import Rehearsal, RehearsalOptions, RehearsalResult
from stackwright.local.upstream import UpstreamPool
from stackwright.render import build_manifests
from stackwright.spec import System

#: Shortened timings every rehearsal test passes (printed by the rehearsal as its overrides).
FAST = {"interval_s": 4.0, "pause_s": 4.0, "scrape_interval": "1s"}


class Client:
    """A light keep-alive client for the load (the gateway's own UpstreamPool: httpx's pool costs too much CPU
    per request at these rates on a small machine, starving the rehearsal that shares the event loop)."""

    def __init__(self, base_url: str) -> None:
        self.base = base_url
        self.pool = UpstreamPool(timeout=30, connect_timeout=5)

    async def send(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> int:
        """One request; returns its status (raises on a transport error)."""
        raw = json.dumps(body).encode() if body is not None else b""
        out = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        if body is not None:
            out.append((b"content-type", b"application/json"))
        resp = await self.pool.request(method, self.base, path, out, raw)
        try:
            await resp.read()
            return resp.status
        finally:
            resp.release()


def rehearse(system: System, service: str, path: Path, state_root: Path, rate: float,
             request: Callable[[Client, int], Awaitable[tuple[int, Any]]], base_url: str,
             inject: str | None = None, **overrides: Any) -> tuple[RehearsalResult, list[Outcome], list[str]]:
    """Rehearse ``service`` from ``path`` under ``rate`` requests/s of ``request(client, i)`` through the
    gateway at ``base_url`` (``overrides``: RehearsalOptions fields replacing :data:`FAST`'s); returns the
    result, every request's outcome and the printed lines."""
    lines: list[str] = []
    options = RehearsalOptions(inject=inject, state_root=state_root, **{**FAST, **overrides})
    rehearsal = Rehearsal(system, service, path, options, report=lines.append)

    async def run() -> tuple[RehearsalResult, list[Outcome]]:
        client = Client(base_url)
        load = OpenLoop(rate, lambda i: request(client, i))
        task = asyncio.create_task(load.run())
        try:
            result = await rehearsal.run()
        finally:
            load.stop()
            await task
            await client.pool.aclose()
        return result, load.outcomes

    result, outcomes = asyncio.run(run())
    return result, outcomes, lines


def server_errors(outcomes: list[Outcome]) -> int:
    """Requests answered 5xx or not answered at all."""
    return sum(1 for o in outcomes if o.status is None or o.status >= 500)


def rendered_queries(system: System, service: str) -> dict[str, str]:
    """The queries of the AnalysisTemplate `render` writes for ``service`` (prod, first region)."""
    docs = build_manifests(system, system.primary_region.name, "prod")
    template = next(d for d in docs if d["kind"] == "AnalysisTemplate" and d["metadata"]["name"] == f"{service}-canary")
    return {m["name"]: m["provider"]["prometheus"]["query"] for m in template["spec"]["metrics"]}
