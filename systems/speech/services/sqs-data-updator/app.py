"""sqs-data-updator: moves usage records from the ``usage-updates`` queue into Postgres, exactly once.

A record is identified by (session_id, seq): the insert skips one already stored, and the user's totals
grow only by the records this statement inserted, in the same statement (so the same transaction). A batch
redelivered after a crash (the queue is at-least-once; messages are acked after the commit) therefore changes
nothing, and a killed updater loses nothing: its unacked messages come back after the visibility timeout.
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

# One statement, so one round trip and its own transaction (was BEGIN, two statements, COMMIT: four round trips
# per batch, ~half of this worker's CPU per usage record): the records not stored yet are inserted, and exactly
# those are added to their users' totals (a session is counted with its first record). Data-modifying WITH
# clauses run exactly once and see the same snapshot, so a redelivered batch inserts nothing and adds nothing.
STORE = """
WITH inserted AS (
    INSERT INTO usage_records (session_id, seq, user_id, audio_ms, recorded_at)
    SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::bigint[], $5::timestamptz[])
    ON CONFLICT (session_id, seq) DO NOTHING
    RETURNING user_id, audio_ms, seq
), added AS (
    INSERT INTO usage_totals AS t (user_id, audio_ms, sessions, updated_at)
    SELECT user_id, sum(audio_ms)::bigint, count(*) FILTER (WHERE seq = 1), now() FROM inserted GROUP BY user_id
    ON CONFLICT (user_id) DO UPDATE SET audio_ms = t.audio_ms + EXCLUDED.audio_ms,
        sessions = t.sessions + EXCLUDED.sessions, updated_at = EXCLUDED.updated_at
)
SELECT count(*) FROM inserted
"""


async def store(messages: list[Any]) -> None:
    """Store a batch of records and add the new ones to their users' totals (one statement, one transaction)."""
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for m in messages:
        body = m.body
        rows[(str(body["session_id"]), int(body["seq"]))] = body  # one statement cannot insert a key twice
    keys = list(rows)
    inserted = await db.pool.fetchval(
        STORE, [k[0] for k in keys], [k[1] for k in keys], [str(rows[k]["user_id"]) for k in keys],
        [int(rows[k]["audio_ms"]) for k in keys], [datetime.fromtimestamp(float(rows[k]["at"]), UTC) for k in keys])
    if inserted < len(messages):
        log.info("%d of %d usage records were already stored (redelivered)", len(messages) - inserted, len(messages))


@svc.background
async def consume_usage() -> None:
    await consume(usage_updates, store, batch_size=200, wait_seconds=1.0, linger_s=0.05)
