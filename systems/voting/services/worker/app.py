"""Vote worker: moves votes from the queue into Postgres and the Redis aggregates, exactly once.

Postgres is the record: (poll_id, user_id) is unique, so a redelivered vote inserts nothing. The Redis
aggregate is updated by a script that counts a viewer only if it adds them to the poll's counted set, so
replaying a batch after a crash (or a Redis restart) never counts anyone twice. Messages are acked only
after both writes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from stackwright.runtime import Service, consume

svc = Service(title="worker")
db = svc.postgres("db")
cache = svc.redis("cache")
votes = svc.queue("votes")
audit = svc.store("audit")
app = svc.app


log = logging.getLogger("voting.worker")

# KEYS[1] counted set, KEYS[2] totals hash; ARGV = user1, option1, user2, option2, ...
COUNT_SCRIPT = """
local added = 0
for i = 1, #ARGV, 2 do
  if redis.call('SADD', KEYS[1], ARGV[i]) == 1 then
    redis.call('HINCRBY', KEYS[2], ARGV[i + 1], 1)
    added = added + 1
  end
end
return added
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
            pipe.eval(COUNT_SCRIPT, 2, f"counted:{poll_id}", f"totals:{poll_id}", *argv)
        for poll_id in per_poll:
            pipe.publish(f"results:{poll_id}", "1")
        await pipe.execute()
    _audit_buffer.extend({"vote_id": r["vote_id"], "poll_id": r["poll_id"]} for r in rows)


async def rebuild_aggregates(poll_id: str | None = None) -> int:
    """Recompute Redis totals from Postgres (after Redis lost data). Returns polls rebuilt."""
    if poll_id:
        found = await db.pool.fetch("SELECT id, options FROM polls WHERE id = $1", uuid.UUID(poll_id))
    else:
        found = await db.pool.fetch("SELECT id, options FROM polls")
    polls = {str(r["id"]): list(r["options"]) for r in found}
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
