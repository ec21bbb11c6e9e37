"""The dashboard as a small Starlette app: the page, its static files, a JSON snapshot and a log stream.

Routes: ``/`` (the page, with the topology drawn in), ``/static/*`` (its script and style sheet, shipped
in the package: no CDN, it works offline), ``/api/snapshot`` (health and figures, see
:mod:`.collector`), ``/api/topology`` (the laid-out spec), ``/api/logs`` (Server-Sent Events: the recent
tail of every process's log, then each new line as it is written) and ``/healthz``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from html import escape
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ...spec import System
from ..logfiles import Follower, processes, tail
from . import layout, svg
from .collector import Collector

STATIC = Path(__file__).with_name("static")
# How many lines of each process's log the stream starts with, and how often it looks for new ones.
BACKLOG_LINES = 200
LOG_POLL_S = 0.3
# An SSE comment this often keeps proxies and the browser from timing a quiet stream out.
KEEPALIVE_S = 15.0


def _sse(event: str, data: object) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def create_app(system: System, state_dir: Path) -> Starlette:
    """The dashboard of ``system``, whose local run keeps its state and logs in ``state_dir``."""
    topo = layout.layout(system)
    drawing = svg.render(topo)
    collector = Collector(system, state_dir)
    log_dir = state_dir / "logs"
    page = (STATIC / "index.html").read_text().replace("{{system}}", escape(system.name)).replace(
        "{{description}}", escape(system.description)).replace("{{topology}}", drawing)

    async def index(request: Request) -> Response:
        return HTMLResponse(page, headers={"cache-control": "no-store"})

    async def snapshot(request: Request) -> Response:
        return JSONResponse(await collector.snapshot(), headers={"cache-control": "no-store"})

    async def topology(request: Request) -> Response:
        return JSONResponse(topo.to_dict())

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def log_stream(request: Request) -> Response:
        async def events() -> AsyncIterator[bytes]:
            follower = await asyncio.to_thread(Follower, log_dir)
            backlog = await asyncio.to_thread(tail, log_dir, processes(log_dir), lines=BACKLOG_LINES,
                                              upto=follower.offsets())
            # The browser reconnects on its own after an error; "reset" tells it to drop what it has.
            yield _sse("reset", {"processes": processes(log_dir)})
            yield _sse("lines", [ln.to_dict() for ln in backlog])
            quiet = 0.0
            while not await request.is_disconnected():
                lines = await asyncio.to_thread(follower.poll)
                if lines:
                    quiet = 0.0
                    yield _sse("lines", [ln.to_dict() for ln in lines])
                else:
                    quiet += LOG_POLL_S
                    if quiet >= KEEPALIVE_S:
                        quiet = 0.0
                        yield b": keep-alive\n\n"
                await asyncio.sleep(LOG_POLL_S)

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"cache-control": "no-store", "x-accel-buffering": "no"})

    # Bound to 127.0.0.1, but a web page the user visits could still reach it through a DNS name that
    # resolves to 127.0.0.1 (DNS rebinding) and read the logs: answer only requests addressed to this machine.
    return Starlette(middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost"])],
                     routes=[
        Route("/", index),
        Route("/healthz", healthz),
        Route("/api/snapshot", snapshot),
        Route("/api/topology", topology),
        Route("/api/logs", log_stream),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ])
