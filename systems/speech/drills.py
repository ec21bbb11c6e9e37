"""``stackwright chaos speech``: kill -9 a process while streams flow, then check every stream's usage.

Clients stream corpus clips back to back (as fast as answered), each stream as its own user, so a user's
usage total is exactly one stream's. A stream closed 1000 was *acknowledged*: its usage must equal the
audio it sent, once. A stream cut by the fault (1012 from ws-proxy when stt-api dies, or a transport error)
is retried by its client as a new stream; its own usage may be anything up to the audio it sent, never more.

Faults: ``sqs-data-updator`` (killed with usage records queued: nothing may be lost), ``stt-api`` (streams in
flight get 1012 and reconnect), ``redis`` (the per-user limits, session state and the local queue live there:
limits must work again afterwards, usage of acknowledged streams must still arrive), ``ws-proxy``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from stackwright.local.chaos import ChaosError, DrillRow, kill_and_recover
from stackwright.local.demokit import idp_for
from stackwright.local.state import system_dir
from stackwright.plugins import load_helper
from stackwright.spec import System


@dataclass
class StreamRecord:
    """One stream a drill client made: its user, the audio it sent, how it ended."""

    user: str
    sent_ms: int
    close_code: int | None
    started_at: float


@dataclass
class Phase:
    fault: str
    streams: list[StreamRecord] = field(default_factory=list)
    killed_at: float | None = None
    respawned_s: float | None = None
    ready_s: float | None = None
    error: str | None = None


class Drill:
    """The speech drills against a running copy of the system (``state`` from ``start_detached``)."""

    FAULTS = ("sqs-data-updator", "stt-api", "redis", "ws-proxy", "imp-backend-api")

    def __init__(self, system: System, state: dict[str, Any], state_root: Path | None, *,
                 key_file: Path | None = None, clients: int = 2, warmup_s: float = 4.0, tail_s: float = 6.0,
                 recover_timeout_s: float = 90.0, drain_timeout_s: float = 90.0) -> None:
        self.system = system
        self.state = state
        self.state_root = state_root
        self.kit = load_helper(__file__, "speechkit")
        self.clips = self.kit.load_corpus(8)
        self.ws_url = self.kit.asr_url(state)
        self.db_url = state["resources"]["db"]
        self.idp = idp_for(system, key_file or system_dir(system, state_root) / "idp-key.pem")
        self.run_id = uuid.uuid4().hex[:6]
        self.clients = clients
        self.warmup_s = warmup_s
        self.tail_s = tail_s
        self.recover_timeout_s = recover_timeout_s
        self.drain_timeout_s = drain_timeout_s
        self.phases: list[Phase] = []

    async def _client(self, phase: Phase, index: int, stop: asyncio.Event) -> None:
        n = 0
        while not stop.is_set():
            clip = self.clips[(index + n) % len(self.clips)]
            user = f"drill-{self.run_id}-{phase.fault}-{index}-{n}"
            n += 1
            started = time.time()
            try:
                result = await self.kit.stream(self.ws_url, clip.pcm, token=self.idp.mint(user, [], ttl_s=900))
                code = result.close_code
            except Exception:  # refused handshake or transport error while a process is down
                code = None
            phase.streams.append(StreamRecord(user, len(clip.pcm) * 1000 // (2 * self.kit.SAMPLE_RATE), code,
                                              started))
            if code != 1000:
                await asyncio.sleep(0.5)  # as a client backs off before reconnecting

    async def run_fault(self, fault: str, report: Callable[[str], None]) -> Phase:
        phase = Phase(fault)
        stop = asyncio.Event()
        tasks = [asyncio.create_task(self._client(phase, i, stop)) for i in range(self.clients)]
        try:
            await asyncio.sleep(self.warmup_s)
            report(f"kill -9 {fault} …")
            rec = await kill_and_recover(self.system.name, self.state_root, fault, timeout_s=self.recover_timeout_s)
            phase.killed_at, phase.respawned_s, phase.ready_s = rec.killed_at, rec.respawned_s, rec.ready_s
            report(f"  {fault} back as pid {rec.new_pid}: respawned in {rec.respawned_s:.2f}s, "
                   f"ready in {rec.ready_s:.2f}s")
            await asyncio.sleep(self.tail_s)
        except ChaosError as exc:
            phase.error = str(exc)
            report(f"  {exc}")
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
        self.phases.append(phase)
        return phase

    async def _usage(self, users: list[str]) -> dict[str, int]:
        conn = await asyncpg.connect(self.db_url, timeout=5)
        try:
            rows = await conn.fetch("SELECT user_id, sum(audio_ms) AS ms FROM usage_records WHERE user_id = ANY($1) "
                                    "GROUP BY user_id", users)
            return {r["user_id"]: int(r["ms"]) for r in rows}
        finally:
            await conn.close()

    async def _limit_works(self) -> bool:
        """Two streams of one user are admitted and a third is refused with 1013 (after the fault)."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        url = f"{self.ws_url}?access_token={self.idp.mint(f'drill-{self.run_id}-limit', [], ttl_s=600)}"
        held = []
        try:
            for _ in range(2):
                ws = await connect(url, proxy=None, open_timeout=20, **self.kit.dial(url))
                await ws.send('{"config": {"sample_rate": 16000}}')
                await ws.send(bytes(self.kit.FRAME_BYTES))
                await asyncio.wait_for(ws.recv(), 60)
                held.append(ws)
            third = await connect(url, proxy=None, open_timeout=20, **self.kit.dial(url))
            with contextlib.suppress(ConnectionClosed):
                await asyncio.wait_for(third.recv(), 20)
            return third.close_code == 1013
        finally:
            for ws in held:
                await ws.close()

    async def verify(self, report: Callable[[str], None]) -> list[DrillRow]:
        report("waiting for usage records to be stored …")
        rows: list[DrillRow] = []
        for phase in self.phases:
            acked = [s for s in phase.streams if s.close_code == 1000]
            deadline = time.monotonic() + self.drain_timeout_s
            usage: dict[str, int] = {}
            while time.monotonic() < deadline:
                usage = await self._usage([s.user for s in phase.streams])
                if all(usage.get(s.user) == s.sent_ms for s in acked):
                    break
                await asyncio.sleep(1.0)
            cut = [s for s in phase.streams if s.close_code != 1000]
            row = DrillRow(fault=phase.fault, acknowledged=len(acked),
                           counted=sum(usage.get(s.user) == s.sent_ms for s in acked),
                           lost=sum(usage.get(s.user, 0) < s.sent_ms for s in acked),
                           duplicated=sum(usage.get(s.user, 0) > s.sent_ms for s in phase.streams),
                           failed=len(cut), extra=sum(1 for s in cut if usage.get(s.user)),
                           respawned_s=phase.respawned_s, ready_s=phase.ready_s)
            after = [s for s in acked if phase.killed_at and s.started_at > phase.killed_at]
            if after and phase.killed_at:
                row.flow_s = min(s.started_at for s in after) - phase.killed_at
            notes = [f"{len(cut)} stream(s) cut by the fault and retried"] if cut else []
            if phase.fault == "redis":
                ok = await self._limit_works()
                row.aggregates_ok = ok
                notes.append("per-user limit enforced again" if ok else "per-user limit NOT enforced after restart")
            if phase.error:
                notes.append(phase.error)
            row.note = "; ".join(notes)
            rows.append(row)
        return rows

    async def run(self, faults: list[str], *, rate: float = 2.0,
                  report: Callable[[str], None] = print) -> list[DrillRow]:
        """Run the faults in turn while clients stream, then check every stream.

        ``rate`` is the number of concurrent streaming clients here (rounded, 1-4: at most the recognizer's
        ``STT_MAX_STREAMS``, so refusals at capacity do not blur the fault's effect).
        """
        unknown = [f for f in faults if f not in self.FAULTS]
        if unknown:
            raise ChaosError(f"unknown fault(s) {', '.join(unknown)} (speech drills: {', '.join(self.FAULTS)})")
        self.clients = max(1, min(4, round(rate)))
        for fault in faults:
            await self.run_fault(fault, report)
        return await self.verify(report)
