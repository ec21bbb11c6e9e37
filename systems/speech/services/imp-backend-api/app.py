"""imp-backend-api: accounts, API keys and usage reports for signed-in users (Cognito on AWS, the dev IdP
locally); the entry of usage records onto the ``usage-updates`` queue.

Routes (edge, token required): ``GET /account`` (created on first call), ``GET /account/usage`` (totals and
the latest sessions), ``POST /account/keys`` (a new API key, shown once; only its SHA-256 is stored),
``GET /account/keys``, ``DELETE /account/keys/{id}``. Internal (not routed by the edge):
``POST /internal/usage``, where ws-proxy reports usage records; they are queued, and sqs-data-updator stores
each (session_id, seq) once; ``POST /internal/keys/verify``, where ws-proxy checks an API key on a handshake.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends
from pydantic import BaseModel, Field

from stackwright.runtime import FastRequest, Problem, Service
from stackwright.runtime.auth import Principal
from stackwright.runtime.problems import problem_responses

svc = Service(title="imp-backend-api")
app = svc.app
db = svc.postgres("db")
usage_updates = svc.queue("usage-updates")

User = Annotated[Principal, Depends(svc.principal())]


class UsageRecord(BaseModel):
    """One usage record from ws-proxy: audio received in a session since its previous record."""

    session_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    seq: int = Field(ge=1, le=1_000_000, description="1, 2, ... per session")
    user_id: str = Field(min_length=1, max_length=256)
    audio_ms: int = Field(ge=0, le=24 * 3600 * 1000, description="milliseconds of 16 kHz audio")
    at: float = Field(gt=0, description="unix seconds when ws-proxy made the record")
    final: bool = False


class NewKey(BaseModel):
    name: str = Field("default", min_length=1, max_length=64)


class KeyCheck(BaseModel):
    """An API key as a client presented it (``sk_`` and 43 URL-safe characters when well formed)."""

    key: str = Field(min_length=1, max_length=256)


KEY_PREFIX = "sk_"


def key_digest(key: str) -> bytes:
    """What is stored of a key: its SHA-256 (the key itself is shown once, at creation)."""
    return hashlib.sha256(key.encode()).digest()


async def _account(user_id: str) -> dict[str, Any]:
    row = await db.pool.fetchrow(
        "INSERT INTO accounts (user_id) VALUES ($1) ON CONFLICT (user_id) DO UPDATE SET user_id = EXCLUDED.user_id "
        "RETURNING user_id, created_at", user_id)
    return {"user_id": row["user_id"], "created_at": row["created_at"].isoformat()}


@app.get("/account", responses=problem_responses(401))
async def account(who: User) -> dict[str, Any]:
    """The caller's account ({user_id, created_at}); created on first call."""
    return await _account(who.sub)


@app.get("/account/usage", responses=problem_responses(401))
async def usage(who: User) -> dict[str, Any]:
    """{user_id, audio_seconds, sessions, recent: [{session_id, audio_seconds, records, last_at}]} (latest 20)."""
    totals = await db.pool.fetchrow("SELECT audio_ms, sessions FROM usage_totals WHERE user_id = $1", who.sub)
    recent = await db.pool.fetch(
        "SELECT session_id, sum(audio_ms)::bigint AS ms, count(*) AS records, max(recorded_at) AS last_at "
        "FROM usage_records WHERE user_id = $1 GROUP BY session_id ORDER BY max(recorded_at) DESC LIMIT 20",
        who.sub)
    # sum(bigint) is numeric in Postgres (a Decimal here): cast, or 30000 / 1000 came out as the string "3E+1".
    return {"user_id": who.sub,
            "audio_seconds": (totals["audio_ms"] if totals else 0) / 1000,
            "sessions": totals["sessions"] if totals else 0,
            "recent": [{"session_id": r["session_id"], "audio_seconds": r["ms"] / 1000, "records": r["records"],
                        "last_at": r["last_at"].isoformat()} for r in recent]}


@app.post("/account/keys", status_code=201, responses=problem_responses(401))
async def create_key(body: NewKey, who: User) -> dict[str, Any]:
    """A new API key {id, name, key, prefix}: ``key`` is shown only in this answer."""
    await _account(who.sub)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    key_id = uuid.uuid4()
    await db.pool.execute(
        "INSERT INTO api_keys (id, user_id, name, prefix, key_sha256) VALUES ($1, $2, $3, $4, $5)",
        key_id, who.sub, body.name, key[:10], key_digest(key))
    return {"id": str(key_id), "name": body.name, "key": key, "prefix": key[:10]}


@app.get("/account/keys", responses=problem_responses(401))
async def list_keys(who: User) -> list[dict[str, Any]]:
    """The caller's keys that are not revoked: [{id, name, prefix, created_at}] (never the key itself)."""
    rows = await db.pool.fetch(
        "SELECT id, name, prefix, created_at FROM api_keys WHERE user_id = $1 AND revoked_at IS NULL "
        "ORDER BY created_at", who.sub)
    return [{"id": str(r["id"]), "name": r["name"], "prefix": r["prefix"], "created_at": r["created_at"].isoformat()}
            for r in rows]


@app.delete("/account/keys/{key_id}", status_code=204, responses=problem_responses(401, 404))
async def revoke_key(key_id: uuid.UUID, who: User) -> None:
    """Revoke one of the caller's keys; 404 if it is not theirs or already revoked."""
    done = await db.pool.execute(
        "UPDATE api_keys SET revoked_at = $3 WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
        key_id, who.sub, datetime.now(UTC))
    if done.endswith(" 0"):
        raise Problem(404, "no such key")


# A fast route (served without FastAPI's per-request machinery; same checks and answers): ws-proxy posts one
# record per stream, right after the stream's close, while the client's next stream is being set up.
@svc.fast_route("POST", "/internal/usage", status_code=202, body=UsageRecord, response_model=dict[str, str])
async def report_usage(req: FastRequest) -> dict[str, str]:
    """Queue one usage record (internal: ws-proxy's only; the edge does not route /internal): {queued: id}."""
    message_id = await usage_updates.send(req.body.model_dump())
    return {"queued": message_id}


@app.post("/internal/keys/verify", responses=problem_responses(404))
async def verify_key(body: KeyCheck) -> dict[str, str]:
    """The owner of a live API key, {user_id, key_id}; 404 if the key is unknown or revoked (internal: ws-proxy
    asks on every handshake made with a key, so a revocation holds from the next handshake on)."""
    row = await db.pool.fetchrow("SELECT id, user_id FROM api_keys WHERE key_sha256 = $1 AND revoked_at IS NULL",
                                 key_digest(body.key))
    if row is None:
        raise Problem(404, "no such API key, or it was revoked")
    return {"user_id": row["user_id"], "key_id": str(row["id"])}
