"""Results service: live totals from the Redis aggregates, falling back to Postgres; SSE stream."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Query
from starlette.requests import Request
from starlette.responses import StreamingResponse

from stackwright.runtime import FastRequest, Problem, Service, problem_responses

svc = Service(title="results")
# Reads only: in a secondary region that is the region's replica (stale by the replication lag).
db = svc.postgres("db", reads=True)
cache = svc.redis("cache")
app = svc.app


_polls: dict[str, tuple[float, dict[str, Any] | None]] = {}
POLL_TTL_S = 1.0


def _parse_id(poll_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(poll_id)
    except ValueError:
        raise Problem(404, "no such poll") from None


async def poll_meta(pid: uuid.UUID) -> dict[str, Any]:
    key = str(pid)
    hit = _polls.get(key)
    if hit and time.monotonic() - hit[0] < POLL_TTL_S:
        poll = hit[1]
    else:
        raw = await cache.get(f"poll:{key}")
        if raw is not None:
            poll = json.loads(raw)
        else:
            row = await db.pool.fetchrow("SELECT id, title, options, status FROM polls WHERE id = $1", pid)
            poll = {"id": key, "title": row["title"], "options": list(row["options"]),
                    "status": row["status"]} if row else None
        _polls[key] = (time.monotonic(), poll)
    if poll is None:
        raise Problem(404, "no such poll")
    return poll


async def tally(pid: uuid.UUID) -> dict[str, Any]:
    """Totals for every option: Redis aggregates when present, else counted in Postgres (this service only
    reads Redis; the worker rebuilds missing aggregates)."""
    poll = await poll_meta(pid)
    raw = await cache.hgetall(f"totals:{pid}")
    source = "cache"
    # Totals are complete whenever they exist (zeros of a never-opened poll, or recounted from Postgres); when
    # missing (expired, or Redis lost them) Postgres is the record.
    if not raw:
        rows = await db.pool.fetch("SELECT option, count(*) AS n FROM votes WHERE poll_id = $1 GROUP BY option", pid)
        raw = {r["option"]: r["n"] for r in rows}
        source = "database"
    totals = {opt: int(raw.get(opt, 0)) for opt in poll["options"]}
    return {"poll_id": str(pid), "title": poll["title"], "status": poll["status"], "totals": totals,
            "total": sum(totals.values()), "source": source}


@app.get("/polls")
async def list_polls(status: str | None = None, limit: int = Query(50, ge=1, le=200)) -> dict[str, Any]:
    if status not in (None, "draft", "open", "closed"):
        raise Problem(422, "status must be draft, open or closed")
    rows = await db.pool.fetch(
        "SELECT id, title, options, status, created_at FROM polls WHERE ($1::text IS NULL OR status = $1)"
        " ORDER BY created_at DESC LIMIT $2", status, limit)
    return {"polls": [{"id": str(r["id"]), "title": r["title"], "options": list(r["options"]),
                       "status": r["status"]} for r in rows]}


@app.get("/polls/{poll_id}", responses=problem_responses(404))
async def get_poll(poll_id: str) -> dict[str, Any]:
    return await poll_meta(_parse_id(poll_id))


# The most read route of the system, so a fast route: served without FastAPI's per-request machinery.
@svc.fast_route("GET", "/polls/{poll_id}/results", responses=problem_responses(404), response_model=dict[str, Any])
async def results(req: FastRequest) -> dict[str, Any]:
    """Totals of a poll: Redis aggregates when present, else counted in Postgres."""
    return await tally(_parse_id(req.path_params["poll_id"]))


@app.get("/polls/{poll_id}/results/stream", response_class=StreamingResponse,
         responses={200: {"content": {"text/event-stream": {}}}, **problem_responses(404)})
async def results_stream(poll_id: str, request: Request) -> StreamingResponse:
    pid = _parse_id(poll_id)
    first = await tally(pid)

    async def events() -> AsyncIterator[bytes]:
        pubsub = cache.pubsub()
        await pubsub.subscribe(f"results:{pid}")
        try:
            yield f"event: results\ndata: {json.dumps(first)}\n\n".encode()
            last_sent = time.monotonic()
            while not await request.is_disconnected():
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if msg is None:
                    if time.monotonic() - last_sent > 15:
                        yield b": keepalive\n\n"
                        last_sent = time.monotonic()
                    continue
                await asyncio.sleep(0.25)  # coalesce bursts: at most ~4 updates a second
                while await pubsub.get_message(ignore_subscribe_messages=True, timeout=0):
                    pass
                yield f"event: results\ndata: {json.dumps(await tally(pid))}\n\n".encode()
                last_sent = time.monotonic()
        finally:
            await pubsub.aclose()

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
