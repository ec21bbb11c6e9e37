"""sqs-data-updator: moves usage records from the ``usage-updates`` queue into Postgres, exactly once.

A record is identified by (session_id, seq): the insert skips one already stored, and the user's totals
grow only by the records this transaction inserted, in the same transaction. A batch redelivered after a
crash (the queue is at-least-once; messages are acked after the commit) therefore changes nothing, and a
killed updater loses nothing: its unacked messages come back after the visibility timeout.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from stackwright.runtime import Service, consume

svc = Service(title="sqs-data-updator")
db = svc.postgres("db")
usage_updates = svc.queue("usage-updates")
app = svc.app
log = logging.getLogger("speech.updater")

INSERT = """
INSERT INTO usage_records (session_id, seq, user_id, audio_ms, recorded_at)
SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::bigint[], $5::timestamptz[])
ON CONFLICT (session_id, seq) DO NOTHING
RETURNING user_id, audio_ms, seq
"""

ADD_TOTALS = """
INSERT INTO usage_totals AS t (user_id, audio_ms, sessions, updated_at)
SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::timestamptz[])
ON CONFLICT (user_id) DO UPDATE SET audio_ms = t.audio_ms + EXCLUDED.audio_ms,
    sessions = t.sessions + EXCLUDED.sessions, updated_at = EXCLUDED.updated_at
"""


async def store(messages: list[Any]) -> None:
    """Store a batch of records and add the new ones to their users' totals (one transaction)."""
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for m in messages:
        body = m.body
        rows[(str(body["session_id"]), int(body["seq"]))] = body  # one statement cannot insert a key twice
    keys = list(rows)
    async with db.pool.acquire() as conn, conn.transaction():
        inserted = await conn.fetch(
            INSERT, [k[0] for k in keys], [k[1] for k in keys], [str(rows[k]["user_id"]) for k in keys],
            [int(rows[k]["audio_ms"]) for k in keys],
            [datetime.fromtimestamp(float(rows[k]["at"]), UTC) for k in keys])
        totals: dict[str, list[int]] = {}
        for r in inserted:
            t = totals.setdefault(r["user_id"], [0, 0])
            t[0] += r["audio_ms"]
            t[1] += 1 if r["seq"] == 1 else 0  # a session is counted with its first record
        if totals:
            now = datetime.now(UTC)
            users = list(totals)
            await conn.execute(ADD_TOTALS, users, [totals[u][0] for u in users], [totals[u][1] for u in users],
                               [now] * len(users))
    if len(inserted) < len(messages):
        log.info("%d of %d usage records were already stored (redelivered)", len(messages) - len(inserted),
                 len(messages))


@svc.background
async def consume_usage() -> None:
    await consume(usage_updates, store, batch_size=200, wait_seconds=1.0, linger_s=0.05)
