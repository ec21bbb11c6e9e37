"""Transactional outbox: queue messages written in the same Postgres transaction as the change they follow.

A service that changes a row and then sends queue messages about it loses the messages if it dies between
the commit and the sends (the row is there, its follow-up work never happens). With an outbox the messages
are rows too, inserted by :meth:`Outbox.add` on the caller's connection inside the caller's transaction: the
change and its messages commit together or not at all. A relay loop (:meth:`Outbox.run`, one per process,
started as a background task) moves committed rows to their queues and deletes them; :meth:`Outbox.kick`
after a commit wakes it at once, and it also polls every ``poll_s`` seconds, so rows left by a killed
process are sent by whichever process runs a relay next (its restart, or another replica).

Delivery is at-least-once: the relay sends a batch, then deletes its rows in the same transaction that
locked them (``FOR UPDATE SKIP LOCKED``, so replicas never relay one row at the same time). A relay killed
after a send and before its commit sends that batch again: consumers must be idempotent (key their effect
on something in the body). Order is kept per queue within one batch (rows are read in id order).

The table belongs to the system's migrations::

    CREATE TABLE outbox (
        id          bigserial PRIMARY KEY,
        queue       text NOT NULL,          -- the queue resource's name, as given to Outbox(queues=...)
        body        jsonb NOT NULL,
        created_at  timestamptz NOT NULL DEFAULT now()
    );
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from typing import Any

from .db import Database

log = logging.getLogger("stackwright.outbox")


class Outbox:
    """The outbox table of ``db`` and the queues its rows go to.

    ``queues`` maps the names written in the ``queue`` column to queue objects (``Service.queue``); a row
    naming a queue this process does not hold is left for a process that does. ``batch`` rows are relayed
    per transaction; ``poll_s`` is the longest a committed row waits when nobody kicks the relay; a queue
    send taking longer than ``send_timeout_s`` fails the round (its rows are sent again later).
    """

    def __init__(self, db: Database, queues: Mapping[str, Any], *, table: str = "outbox", batch: int = 200,
                 poll_s: float = 1.0, send_timeout_s: float = 15.0) -> None:
        if not table.isidentifier():
            raise ValueError(f"outbox table name {table!r} is not an identifier")
        self.db = db
        self.queues = dict(queues)
        self.table = table
        self.batch = batch
        self.poll_s = poll_s
        self.send_timeout_s = send_timeout_s
        self._wake: asyncio.Event | None = None

    async def add(self, conn: Any, queue: str, body: dict[str, Any]) -> None:
        """Write one message on ``conn`` (an asyncpg connection inside the caller's transaction).

        Raises KeyError for a queue name this outbox does not know (a typo would otherwise never be sent).
        """
        await self.add_many(conn, [(queue, body)])

    async def add_many(self, conn: Any, messages: list[tuple[str, dict[str, Any]]]) -> None:
        """Write several ``(queue, body)`` messages on ``conn`` in one statement."""
        if not messages:
            return
        for queue, _ in messages:
            if queue not in self.queues:
                raise KeyError(f"outbox: no queue named {queue!r}")
        await conn.execute(
            f"INSERT INTO {self.table} (queue, body) SELECT * FROM unnest($1::text[], $2::jsonb[])",
            [q for q, _ in messages], [json.dumps(b, separators=(",", ":")) for _, b in messages])

    def kick(self) -> None:
        """Wake the relay now (call after committing a transaction that added messages)."""
        if self._wake is not None:
            self._wake.set()

    async def relay_once(self) -> int:
        """Send up to ``batch`` committed messages and delete them; returns how many were sent.

        Raises whatever the database or a queue raises; nothing is deleted then (the rows are sent again).
        """
        async with self.db.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"SELECT id, queue, body FROM {self.table} WHERE queue = ANY($1::text[]) ORDER BY id LIMIT $2 "
                "FOR UPDATE SKIP LOCKED", list(self.queues), self.batch)
            if not rows:
                return 0
            by_queue: dict[str, list[dict[str, Any]]] = {}
            for r in rows:
                body = r["body"]
                by_queue.setdefault(r["queue"], []).append(json.loads(body) if isinstance(body, str) else body)
            for queue, bodies in by_queue.items():
                # A hung queue must not hold the rows' locks forever: give up, roll back, send again later.
                await asyncio.wait_for(self.queues[queue].send_batch(bodies), self.send_timeout_s)
            await conn.execute(f"DELETE FROM {self.table} WHERE id = ANY($1::bigint[])", [r["id"] for r in rows])
        return len(rows)

    async def pending(self) -> int:
        """Messages written and not yet relayed (all queues)."""
        return int(await self.db.pool.fetchval(f"SELECT count(*) FROM {self.table}"))

    async def run(self) -> None:
        """Relay for the life of the process: at once when kicked, else every ``poll_s``; a failed round
        (database or queue down) is retried with a growing pause, up to 5 s."""
        self._wake = asyncio.Event()
        delay = self.poll_s
        while True:
            self._wake.clear()  # before the round: a kick during it makes the next round start at once
            try:
                sent = await self.relay_once()
                delay = self.poll_s
                if sent == self.batch:
                    continue  # more are waiting
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # database or queue errors alike: the rows stay and are sent later
                log.warning("outbox relay failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
