"""Vote worker: moves votes from the queue into Postgres and the Redis aggregates, exactly once.

Postgres is the record: (poll_id, user_id) is unique, so a redelivered vote inserts nothing. The Redis
aggregate is updated by a script that counts a viewer only if it adds them to the poll's counted set, so
replaying a batch after a crash (or a Redis restart) never counts anyone twice. Messages are acked only
after both writes.

The aggregates expire with the poll (see the vote service): totals are complete whenever they exist, so a
batch for a poll whose totals are gone (expired, or lost by Redis) first recounts them from Postgres. The
counted set always expires with its totals (same deadline), never before: a counted set without totals is
recounted, totals without a counted set would count viewers twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from stackwright.runtime import Service, consume

svc = Service(title="worker")
db = svc.postgres("db")
cache = svc.redis("cache")
votes = svc.queue("votes")
audit = svc.store("audit")
app = svc.app


log = logging.getLogger("voting.worker")

POLL_KEY_TTL_S = int(svc.settings.get("POLL_KEY_TTL_S", str(2 * 24 * 3600)) or 2 * 24 * 3600)
CLOSED_POLL_TTL_S = int(svc.settings.get("CLOSED_POLL_TTL_S", "3600") or 3600)
REBUILD_CHUNK = 5000  # viewers per script call when recounting a poll (keeps each call short)

# Shared tail of the scripts: totals keep the lifetime they have (the vote service sets it from the poll's
# status; ARGV[1] only for totals without one), and the counted set gets exactly the same deadline.
_EXPIRE_TOGETHER = """
if redis.call('TTL', KEYS[2]) == -1 then redis.call('EXPIRE', KEYS[2], ARGV[1]) end
local pttl = redis.call('PTTL', KEYS[2])
if pttl > 0 then redis.call('PEXPIRE', KEYS[1], pttl) end
"""

# KEYS[1] counted set, KEYS[2] totals hash; ARGV = ttl, user1, option1, user2, option2, ...
# Returns the viewers newly counted, or -1 when the totals are missing and must be recounted from Postgres.
COUNT_SCRIPT = """
if redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
local added = 0
for i = 2, #ARGV, 2 do
  if redis.call('SADD', KEYS[1], ARGV[i]) == 1 then
    redis.call('HINCRBY', KEYS[2], ARGV[i + 1], 1)
    added = added + 1
  end
end
""" + _EXPIRE_TOGETHER + """
return added
"""

# Recount merged into whatever is there: KEYS as above; ARGV = ttl, n options, option1..n, user1, option1, ...
# Missing totals start again from zero (with the counted set dropped); present ones only gain the viewers not
# counted yet, so concurrent recounts and counts of the same poll never count anyone twice.
MERGE_SCRIPT = """
local n = tonumber(ARGV[2])
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[1])
  for i = 3, 2 + n do redis.call('HSET', KEYS[2], ARGV[i], 0) end
end
for i = 3 + n, #ARGV, 2 do
  if redis.call('SADD', KEYS[1], ARGV[i]) == 1 then
    redis.call('HINCRBY', KEYS[2], ARGV[i + 1], 1)
  end
end
""" + _EXPIRE_TOGETHER + """
return 1
"""

UPSERT = """
INSERT INTO votes (poll_id, user_id, option, vote_id, accepted_at)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::timestamptz[])
ON CONFLICT (poll_id, user_id) DO UPDATE SET poll_id = votes.poll_id
RETURNING poll_id, user_id, option
"""

_audit_buffer: list[dict[str, Any]] = []
_redis_run_id: str | None = None


async def count(messages: list[Any]) -> None:
    """Record a batch durably, then update the aggregates idempotently."""
    await _reconcile_if_redis_restarted()
    seen: set[tuple[str, str]] = set()
    rows: list[dict[str, Any]] = []
    for m in messages:
        body = m.body
        key = (body["poll_id"], body["user_id"])
        if key not in seen:  # one statement cannot touch the same row twice
            seen.add(key)
            rows.append(body)
    stored = await db.pool.fetch(
        UPSERT,
        [uuid.UUID(r["poll_id"]) for r in rows], [r["user_id"] for r in rows], [r["option"] for r in rows],
        [uuid.UUID(r["vote_id"]) for r in rows],
        [datetime.fromtimestamp(r["accepted_at"], UTC) for r in rows],
    )
    # Count what Postgres holds (the first vote wins), not what the message says.
    per_poll: dict[str, list[str]] = defaultdict(list)
    for row in stored:
        per_poll[str(row["poll_id"])] += [row["user_id"], row["option"]]
    async with cache.pipeline(transaction=False) as pipe:
        for poll_id, argv in per_poll.items():
            pipe.eval(COUNT_SCRIPT, 2, f"counted:{poll_id}", f"totals:{poll_id}", POLL_KEY_TTL_S, *argv)
        for poll_id in per_poll:
            pipe.publish(f"results:{poll_id}", "1")
        outcomes = await pipe.execute()
    # Totals gone (expired or lost): this batch is in Postgres already, so the recount includes it.
    for poll_id, outcome in zip(per_poll, outcomes, strict=False):
        if outcome == -1:
            await recount_poll(poll_id)
    _audit_buffer.extend({"vote_id": r["vote_id"], "poll_id": r["poll_id"]} for r in rows)


async def recount_poll(poll_id: str) -> None:
    """Merge a poll's votes from Postgres into its aggregates (recreating them at zero when missing)."""
    pid = uuid.UUID(poll_id)
    poll = await db.pool.fetchrow("SELECT options, status FROM polls WHERE id = $1", pid)
    if poll is None:
        return
    rows = await db.pool.fetch("SELECT user_id, option FROM votes WHERE poll_id = $1", pid)
    options = list(poll["options"])
    ttl = CLOSED_POLL_TTL_S if poll["status"] == "closed" else POLL_KEY_TTL_S
    keys = (f"counted:{poll_id}", f"totals:{poll_id}")
    for start in range(0, max(len(rows), 1), REBUILD_CHUNK):
        argv = [a for r in rows[start:start + REBUILD_CHUNK] for a in (r["user_id"], r["option"])]
        await cache.eval(MERGE_SCRIPT, 2, *keys, ttl, len(options), *options, *argv)
    log.info("recounted poll %s from Postgres (%d votes)", poll_id, len(rows))


async def rebuild_aggregates(poll_id: str | None = None) -> int:
    """Recompute Redis totals from Postgres (after Redis lost data). Returns polls rebuilt."""
    if poll_id:
        found = await db.pool.fetch("SELECT id, options, status FROM polls WHERE id = $1", uuid.UUID(poll_id))
    else:
        # Polls closed longer ago than their aggregates live are read from Postgres; not worth the memory.
        found = await db.pool.fetch(
            "SELECT id, options, status FROM polls WHERE status <> 'closed' OR closed_at > now() - $1::interval",
            timedelta(seconds=CLOSED_POLL_TTL_S))
    polls = {str(r["id"]): list(r["options"]) for r in found}
    ttls = {str(r["id"]): CLOSED_POLL_TTL_S if r["status"] == "closed" else POLL_KEY_TTL_S for r in found}
    for pid, options in polls.items():
        rows = await db.pool.fetch("SELECT user_id, option FROM votes WHERE poll_id = $1", uuid.UUID(pid))
        totals: dict[str, int] = dict.fromkeys(options, 0)  # zeros too: see the vote service's _cache_poll
        for r in rows:
            totals[r["option"]] = totals.get(r["option"], 0) + 1
        async with cache.pipeline(transaction=True) as pipe:
            pipe.delete(f"counted:{pid}", f"totals:{pid}")
            for start in range(0, len(rows), 5000):
                pipe.sadd(f"counted:{pid}", *[r["user_id"] for r in rows[start:start + 5000]])
            if totals:
                pipe.hset(f"totals:{pid}", mapping=totals)
            pipe.expire(f"totals:{pid}", ttls[pid])  # totals first: counted never expires before them
            pipe.expire(f"counted:{pid}", ttls[pid])
            await pipe.execute()
    return len(polls)


async def _reconcile_if_redis_restarted() -> None:
    # A Redis restart may have lost the last writes; Postgres is the record, so rebuild from it.
    global _redis_run_id
    run_id = (await cache.info("server")).get("run_id")
    if _redis_run_id is not None and run_id != _redis_run_id:
        rebuilt = await rebuild_aggregates()
        log.warning("redis restarted (run_id changed); rebuilt aggregates of %d polls from Postgres", rebuilt)
    _redis_run_id = run_id


@svc.background
async def consume_votes() -> None:
    # Linger 50 ms after a partial batch: counting stays well within the results stream's 250 ms cadence,
    # and at moderate rates one transaction carries tens of votes instead of one or two.
    await consume(votes, count, batch_size=500, wait_seconds=1.0, linger_s=0.05)


@svc.background
async def flush_audit() -> None:
    """Every few seconds, write the ids of the votes counted since the last flush to the audit bucket."""
    while True:
        await asyncio.sleep(5)
        if not _audit_buffer:
            continue
        batch = _audit_buffer[:]
        del _audit_buffer[:len(batch)]
        now = datetime.now(UTC)
        key = f"counted/{now:%Y/%m/%d}/{now:%H%M%S}-{uuid.uuid4().hex[:8]}.json"
        await audit.put(key, json.dumps({"at": time.time(), "votes": batch}).encode(), "application/json")


@app.post("/admin/rebuild")
async def rebuild() -> dict[str, int]:
    """Rebuild every poll's aggregates from Postgres (internal; not routed by the edge)."""
    return {"polls": await rebuild_aggregates()}
