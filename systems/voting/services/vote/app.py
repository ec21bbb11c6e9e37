"""Vote service: creates and opens/closes polls (admin) and accepts votes onto the durable queue.

A vote is accepted (202) only once it is on the queue. One vote per viewer and poll is enforced here
with a Redis SET NX (fast path) and again in Postgres by the worker (the durable guarantee).

Every key written here expires (the cache's eviction policy cannot evict keys without a TTL, so keys that
never expire fill it and then refuse votes). Postgres is the record, so an expired key only costs a
rebuild: ``poll:`` is read back from Postgres, ``totals:``/``counted:`` are recounted from Postgres by the
worker (and the results service counts there while they are missing). The lifetimes follow the poll:

- while a poll is not closed its keys live ``POLL_KEY_TTL_S`` (default 2 days, ``env:`` of the spec);
  ``voted:{poll}:{user}`` lives that long after the vote, so a poll open longer than that lets a viewer
  whose key expired vote again with a 202, but only the first vote counts (the worker's primary key);
- closing a poll shortens its ``poll:``, ``totals:`` and ``counted:`` keys to ``CLOSED_POLL_TTL_S`` (default
  1 hour: the after-show reads come from Redis, later ones from Postgres). ``voted:`` keys are per viewer
  and cannot be found without a scan; they keep their own TTL, and a closed poll refuses votes before
  looking at them.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import uuid
from typing import Annotated, Any

from fastapi import Depends
from pydantic import BaseModel, Field, field_validator

from stackwright.runtime import FastRequest, Principal, Problem, Reply, Service, problem_responses

svc = Service(title="vote")
db = svc.postgres("db")
cache = svc.redis("cache")
votes = svc.queue("votes")
app = svc.app


POLL_CACHE_TTL_S = 1.0  # poll status changes reach every replica within a second
IDEMPOTENCY_TTL_S = 24 * 3600
POLL_KEY_TTL_S = int(svc.settings.get("POLL_KEY_TTL_S", str(2 * 24 * 3600)) or 2 * 24 * 3600)
CLOSED_POLL_TTL_S = int(svc.settings.get("CLOSED_POLL_TTL_S", "3600") or 3600)
_polls: dict[str, tuple[float, dict[str, Any] | None]] = {}
# When the queue is a Redis stream on the cache's own server (``stackwright up``; on AWS the queue is SQS), the
# dedup key and the message are written by one atomic script: one round trip per vote instead of two, and a
# refused vote writes nothing (see RedisStreamsQueue.send_claimed).
ONE_TRIP = (svc.settings.resource_url("cache") == svc.settings.resource_url("votes")
            and getattr(votes, "send_claimed", None) is not None
            and svc.settings.get("VOTE_ONE_TRIP", "1") != "0")


# Postgres text cannot hold NUL characters: reject them as bad input (422) rather than fail on insert (500).
NO_NUL = r"^[^\x00]*$"


class NewPoll(BaseModel):
    title: str = Field(min_length=1, max_length=200, pattern=NO_NUL)
    options: list[Annotated[str, Field(min_length=1, max_length=100, pattern=NO_NUL)]] = Field(
        min_length=2, max_length=20)

    @field_validator("options")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("options must be unique")
        return v


class NewVote(BaseModel):
    option: str = Field(min_length=1, max_length=100, pattern=NO_NUL)


def poll_key(poll_id: str) -> str:
    return f"poll:{poll_id}"


# The spelling str(uuid.UUID(...)) gives: such an id is returned as it is, without building a UUID (every
# vote parses its poll's id; ~4% of the vote service's samples under py-spy).
_CANONICAL_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _parse_id(poll_id: str) -> str:
    """The canonical spelling of a poll id (any spelling :class:`uuid.UUID` accepts); Problem 404 otherwise."""
    if _CANONICAL_ID.fullmatch(poll_id):
        return poll_id
    try:
        return str(uuid.UUID(poll_id))
    except ValueError:
        raise Problem(404, "no such poll") from None


def key_ttl(status: str) -> int:
    """Seconds the Redis keys of a poll in ``status`` live."""
    return CLOSED_POLL_TTL_S if status == "closed" else POLL_KEY_TTL_S


async def _cache_poll(row: Any, *, fresh_totals: bool = False) -> dict[str, Any]:
    """Cache the poll's metadata; with ``fresh_totals`` (a poll that has never been open, so has no votes)
    also create its zero totals, and give the aggregates the lifetime of the poll's status."""
    poll = {"id": str(row["id"]), "title": row["title"], "options": list(row["options"]), "status": row["status"]}
    ttl = key_ttl(poll["status"])
    await cache.set(poll_key(poll["id"]), json.dumps(poll), ex=ttl)
    if fresh_totals:
        # Zero totals from the start, so results reads of a poll nobody has voted in yet come from Redis: with
        # no aggregates they fall back to counting in Postgres, and a poll that just opened on air is read by
        # everyone at once. Only for a poll never open: zeros over a poll with votes would be wrong totals
        # (missing totals are recounted from Postgres by the worker instead).
        async with cache.pipeline(transaction=False) as pipe:
            for option in poll["options"]:
                pipe.hsetnx(f"totals:{poll['id']}", option, 0)
            pipe.expire(f"totals:{poll['id']}", ttl)
            await pipe.execute()
    _polls[poll["id"]] = (time.monotonic(), poll)
    return poll


async def _retime_aggregates(poll_id: str, ttl: int) -> None:
    # totals first: counted must never expire before totals (the worker would count its viewers again).
    async with cache.pipeline(transaction=False) as pipe:
        pipe.expire(f"totals:{poll_id}", ttl)
        pipe.expire(f"counted:{poll_id}", ttl)
        await pipe.execute()


async def load_poll(poll_id: str) -> dict[str, Any] | None:
    """Poll metadata: process memory (1 s), then Redis, then Postgres."""
    hit = _polls.get(poll_id)
    if hit and time.monotonic() - hit[0] < POLL_CACHE_TTL_S:
        return hit[1]
    raw = await cache.get(poll_key(poll_id))
    if raw is not None:
        poll = json.loads(raw)
    else:
        row = await db.pool.fetchrow("SELECT id, title, options, status FROM polls WHERE id = $1", uuid.UUID(poll_id))
        poll = await _cache_poll(row) if row else None
    _polls[poll_id] = (time.monotonic(), poll)
    return poll


@app.post("/polls", status_code=201, responses=problem_responses(401, 403))
async def create_poll(body: NewPoll, who: Principal = Depends(svc.principal("admin"))) -> dict[str, Any]:
    row = await db.pool.fetchrow(
        "INSERT INTO polls (id, title, options, created_by) VALUES ($1, $2, $3, $4)"
        " RETURNING id, title, options, status", uuid.uuid4(), body.title, body.options, who.sub)
    return await _cache_poll(row, fresh_totals=True)


async def _transition(poll_id: str, to: str, allowed_from: tuple[str, ...]) -> dict[str, Any]:
    pid = uuid.UUID(_parse_id(poll_id))
    stamp = "opened_at" if to == "open" else "closed_at"
    async with db.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow("SELECT status FROM polls WHERE id = $1 FOR UPDATE", pid)
        if row is None:
            raise Problem(404, "no such poll")
        was = row["status"]
        if row["status"] != to:
            if row["status"] not in allowed_from:
                raise Problem(409, f"a {row['status']} poll cannot be {'opened' if to == 'open' else 'closed'}")
            await conn.execute(f"UPDATE polls SET status = $2, {stamp} = now() WHERE id = $1", pid, to)
        updated = await conn.fetchrow("SELECT id, title, options, status FROM polls WHERE id = $1", pid)
    poll = await _cache_poll(updated, fresh_totals=was == "draft")
    if was != "draft":  # closing shortens the aggregates' lifetime, reopening lengthens it again
        await _retime_aggregates(poll["id"], key_ttl(poll["status"]))
    return poll


@app.post("/polls/{poll_id}/open", responses=problem_responses(401, 403, 404, 409))
async def open_poll(poll_id: str, _: Principal = Depends(svc.principal("admin"))) -> dict[str, Any]:
    return await _transition(poll_id, "open", ("draft", "closed"))


@app.post("/polls/{poll_id}/close", responses=problem_responses(401, 403, 404, 409))
async def close_poll(poll_id: str, _: Principal = Depends(svc.principal("admin"))) -> dict[str, Any]:
    return await _transition(poll_id, "closed", ("open",))


# The hottest route of the system, so a fast route: served without FastAPI's per-request machinery.
@svc.fast_route("POST", "/polls/{poll_id}/votes", status_code=202, body=NewVote, auth=True,
                headers={"Idempotency-Key": 255}, responses=problem_responses(401, 404, 409))
async def cast_vote(req: FastRequest) -> Reply:
    """Accept one vote per viewer and poll onto the queue (202)."""
    assert req.principal is not None  # auth=True
    return await accept_vote(req.path_params["poll_id"], req.body, req.principal, req.header("idempotency-key"))


async def _release(voted: str, vote_id: str) -> None:
    """Delete the dedup key if it holds this attempt's id (best effort: Redis may still be unreachable)."""
    with contextlib.suppress(Exception):
        if await cache.get(voted) == vote_id:
            await cache.delete(voted)


async def accept_vote(poll_id: str, body: NewVote, who: Principal, idempotency_key: str | None) -> Reply:
    pid = _parse_id(poll_id)
    poll = await load_poll(pid)
    if poll is None:
        raise Problem(404, "no such poll")
    if poll["status"] != "open":
        raise Problem(409, f"poll is {poll['status']}, not open")
    if body.option not in poll["options"]:
        raise Problem(422, f"'{body.option}' is not an option of this poll", options=poll["options"])
    idem = f"idem:{who.sub}:{idempotency_key}" if idempotency_key else None
    if idem:
        replay = await cache.get(idem)
        if replay is not None:
            return Reply(json.loads(replay), 202, {"Idempotent-Replayed": "true"})
    vote_id = str(uuid.uuid4())
    voted = f"voted:{pid}:{who.sub}"
    result = {"vote_id": vote_id, "poll_id": pid, "option": body.option, "status": "queued"}
    if ONE_TRIP:
        await _claim_and_queue(voted, vote_id, pid, who.sub, body.option)
    else:
        await _claim_then_queue(voted, vote_id, pid, who.sub, body.option)
    if idem:
        await cache.set(idem, json.dumps(result), ex=IDEMPOTENCY_TTL_S)
    return Reply(result, 202)


def _message(vote_id: str, pid: str, user: str, option: str) -> dict[str, Any]:
    now = time.time()
    return {"vote_id": vote_id, "poll_id": pid, "user_id": user, "option": option, "accepted_at": now,
            "sent_at": now}


async def _claim_and_queue(voted: str, vote_id: str, pid: str, user: str, option: str) -> None:
    """The dedup key and the message in one script: Problem 409 when the viewer has voted (nothing written)."""
    try:
        sent = await votes.send_claimed(voted, vote_id, POLL_KEY_TTL_S, _message(vote_id, pid, user, option))
    except Exception:
        # Lost with the script in flight: it may have run (key and message) or not. Release the key so the
        # viewer's retry is accepted; if the first message did land, the worker's primary key counts it once.
        await _release(voted, vote_id)
        raise Problem(503, "vote could not be queued; please retry", headers={"Retry-After": "1"}) from None
    if sent is None:
        raise Problem(409, "you have already voted in this poll")


async def _claim_then_queue(voted: str, vote_id: str, pid: str, user: str, option: str) -> None:
    """SET NX of the dedup key, then the message (two round trips: the queue is not on the cache's Redis)."""
    try:
        fresh = await cache.set(voted, vote_id, nx=True, ex=POLL_KEY_TTL_S)
    except Exception:
        # The connection dropped with the SET in flight: it may have landed. A write is never re-sent, so
        # undo it, or the viewer's retry would meet this key and be told it has already voted.
        await _release(voted, vote_id)
        raise
    # A key holding our own id is our SET (e.g. retried by a client library after a dropped connection).
    if not fresh and await cache.get(voted) != vote_id:
        raise Problem(409, "you have already voted in this poll")
    try:
        await votes.send(_message(vote_id, pid, user, option))
    except Exception:
        # Not queued means not accepted: release the dedup key so the viewer can retry. (If the send did land,
        # the retry queues a second message and the worker's primary key counts the viewer once.)
        await _release(voted, vote_id)
        raise Problem(503, "vote could not be queued; please retry", headers={"Retry-After": "1"}) from None
