"""``stackwright chaos files``: kill -9 a process while uploads flow, then check every acknowledged file.

For each fault, clients upload small files through the gateway at a steady rate (open loop), each upload as
its own user (so the edge's per-user rate limit never interferes and a user's files are exactly one
upload's); every fourth upload is a small JPEG, so variant jobs flow too. A couple of seconds in, the process
is killed with SIGKILL and the supervisor brings it back. An upload answered 201 is *acknowledged*.

When every fault has run, the drill waits until every acknowledged image has its variants and every
acknowledged upload its upload-complete email, then checks, per fault:

- **lost**: an acknowledged file whose row is missing, whose object is missing, or whose stored bytes do not
  hash to what the client sent;
- **duplicated**: more than one row for one upload (its user), more than one email for one file, or more
  variant objects than variant rows;
- the variants of every acknowledged image: each object complete (Pillow decodes it to the recorded size),
  none half-written; and no more objects in the originals bucket without a row than uploads that failed
  while file was down (a kill between the store's rename and the row's commit leaves one; the file service's
  leftovers sweep removes it once LEFTOVER_AGE_S old);
- a file stored whose 201 never reached its client (the kill landed after the commit) must have its email
  too: its follow-up messages were committed with the row (the outbox) and relayed after the restart.

Fault-specific steps: ``file`` also has a 160 MiB upload in flight when it is killed (it must fail, leave
nothing visible, and succeed when the client sends it again); ``image-processing`` is killed while it works
on 2400x1800 photos (each must end up with all its variants, none half-written).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg

from stackwright.local.chaos import ChaosError, DrillRow, FlowDrill, Outcome, Recovery
from stackwright.local.demokit import bearer
from stackwright.local.mailbox import read_maildir
from stackwright.spec import System

MiB = 1 << 20
#: The large upload the ``file`` fault interrupts (and the client then sends again).
BIG_MIB = 160
#: Photos that keep image-processing busy when it is killed.
PHOTOS = 3


def _jpeg(seed: int, size: tuple[int, int] = (48, 32)) -> bytes:
    """A small JPEG whose pixels depend on ``seed`` (every upload has its own bytes and sha256)."""
    from PIL import Image

    img = Image.new("RGB", size, (seed % 251, (seed // 251) % 251, 90))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _photo(seed: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.effect_noise((2400, 1800), 30 + seed).convert("RGB").save(buf, "JPEG", quality=88)
    return buf.getvalue()


@dataclass
class Sent:
    """One upload as the client made it: its user, name, bytes' sha256 and whether it is an image."""

    user: str
    sha256: str
    image: bool


@dataclass
class Phase:
    """One fault while uploads flow: what was sent, what the clients saw, how the process came back."""

    fault: str
    run: str
    sent: dict[int, Sent] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)
    recovery: Recovery | None = None
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    def acked(self) -> dict[str, Sent]:
        """file id -> what was sent, for every 201."""
        return {o.body["id"]: self.sent[o.index] for o in self.outcomes
                if o.status == 201 and isinstance(o.body, dict) and "id" in o.body}


class Drill(FlowDrill):
    """The files drills against a running copy of the system (``state`` from ``start_detached``)."""

    FAULTS = ("file", "image-processing", "postgres", "redis")

    def __init__(self, system: System, state: dict[str, Any], state_root: Path | None, *,
                 drain_timeout_s: float = 180.0, **timings: Any) -> None:
        # Draining waits for variants of every acknowledged image and an email per upload: longer than votes.
        super().__init__(system, state, state_root, drain_timeout_s=drain_timeout_s, **timings)
        self.variant_count = len([v for v in system.services["image-processing"].env.get(
            "VARIANTS", "thumb:256:jpeg,preview:1024:webp").split(",") if v.strip()])
        self.phases: list[Phase] = []

    # ------------------------------------------------------------------------------------------ helpers

    def _auth(self, user: str) -> dict[str, str]:
        return bearer(self.idp.mint(user, ttl_s=3600))

    async def _fetch(self, query: str, *args: Any) -> list[Any]:
        conn = await asyncpg.connect(self.db_url, timeout=3)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    def _bucket(self, name: str) -> Path:
        """The local folder of a bucket (the drill runs locally: its store URLs are file://)."""
        url = urlsplit(self.state["resources"][name])
        if url.scheme != "file":
            raise ChaosError(f"the files drills read the buckets from disk; {name} is {url.scheme}://")
        return Path(url.path)

    def _visible(self, bucket: str, prefix: str) -> list[Path]:
        """Objects a reader can see under ``prefix`` (temp files of unfinished writes are dot files)."""
        root = self._bucket(bucket) / prefix
        return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")) \
            if root.is_dir() else []

    async def _upload(self, session: aiohttp.ClientSession, user: str, name: str, data: Any,
                      sha256: str | None = None) -> tuple[int, Any]:
        headers = self._auth(user) | ({"x-content-sha256": sha256} if sha256 else {})
        async with session.post(f"{self.base}/files", params={"name": name}, data=data, headers=headers) as resp:
            try:
                return resp.status, await resp.json(content_type=None)
            except ValueError:
                return resp.status, None

    # ------------------------------------------------------------------------------------------ faults

    async def run_fault(self, session: aiohttp.ClientSession, fault: str, rate: float,
                        report: Callable[[str], None]) -> Phase:
        """Uploads flow at ``rate``; kill -9 ``fault`` after the warm-up; keep uploading until it is back."""
        phase = Phase(fault, f"{self.run_id}-{fault}")

        async def upload(i: int) -> tuple[int, Any]:
            image = i % 4 == 0
            data = _jpeg(i) if image else f"drill {phase.run} upload {i}\n".encode() * 8
            sent = Sent(f"chaos-{phase.run}-{i}", hashlib.sha256(data).hexdigest(), image)
            phase.sent[i] = sent
            return await self._upload(session, sent.user, f"u{i}.{'jpg' if image else 'txt'}", data, sent.sha256)

        alongside = (self._big_upload(session, phase, report) if fault == "file" else
                     self._photos(session, phase) if fault == "image-processing" else None)
        await self.flow_and_kill(phase, fault, rate, upload, report, alongside)
        return phase

    async def _big_upload(self, session: aiohttp.ClientSession, phase: Phase, report: Callable[[str], None]) -> None:
        """A BIG_MIB upload sent slowly enough to be in flight at the kill; then sent again, at full speed."""
        block = hashlib.sha256(phase.run.encode()).digest() * (MiB // 32)
        digest = hashlib.sha256()
        for _ in range(BIG_MIB):
            digest.update(block)
        user = f"chaos-{phase.run}-big"
        before = {p.name for p in self._visible("originals", "files")}

        async def slow() -> AsyncIterator[bytes]:
            for _ in range(BIG_MIB):
                yield block
                await asyncio.sleep(self.warmup_s * 2 / BIG_MIB)  # lasts twice the warm-up: the kill lands inside

        try:
            status, _ = await self._upload(session, user, "big.bin", slow(), digest.hexdigest())
            first = f"{status}"
        except (TimeoutError, aiohttp.ClientError) as exc:
            status, first = None, exc.__class__.__name__
        rows = await self._fetch("SELECT id FROM files WHERE owner_id = $1", user)
        appeared = {p.name for p in self._visible("originals", "files")} - before
        # Its own object would be BIG_MIB large: small uploads cut at the same kill may leave objects of their
        # own (counted by verify), which are not this upload's doing.
        known = {str(r["id"]) for r in await self._fetch("SELECT id FROM files")}
        unexplained = {k for k in appeared - known
                       if (self._bucket("originals") / "files" / k).stat().st_size == BIG_MIB * MiB}
        note = f"{BIG_MIB} MiB upload cut by the kill: client saw {first}, rows {len(rows)}, " \
               f"objects without a row {len(unexplained)}"
        if status == 201:
            note += " (it completed before the kill: not a mid-upload kill)"

        async def again() -> AsyncIterator[bytes]:
            for _ in range(BIG_MIB):
                yield block

        deadline = time.monotonic() + self.recover_timeout_s
        retry: tuple[int | None, Any] = (None, None)
        while time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError, aiohttp.ClientError):
                retry = await self._upload(session, user, "big.bin", again(), digest.hexdigest())
                if retry[0] == 201:
                    break
            await asyncio.sleep(0.5)
        ok = retry[0] == 201 and isinstance(retry[1], dict) and retry[1].get("sha256") == digest.hexdigest()
        phase.notes.append(f"{note}; retry {'201, sha256 matches' if ok else f'FAILED ({retry[0]})'}")
        report(f"  {phase.notes[-1]}")
        if not ok or rows or unexplained:
            phase.error = "the interrupted large upload left something behind or could not be retried"

    async def _photos(self, session: aiohttp.ClientSession, phase: Phase) -> None:
        """PHOTOS 2400x1800 photos uploaded at once, so image-processing is mid-render when it is killed."""
        for n in range(PHOTOS):
            data = _photo(n)
            sent = Sent(f"chaos-{phase.run}-photo{n}", hashlib.sha256(data).hexdigest(), True)
            index = -1 - n  # not an open-loop index
            phase.sent[index] = sent
            began = time.time()
            status, body = await self._upload(session, sent.user, f"photo{n}.jpg", data, sent.sha256)
            phase.outcomes.append(Outcome(index, began, status, body))

    async def wait_for_flow(self, phase: Phase) -> None:
        """Until an upload sent after the kill has been acknowledged (or the time is up)."""
        assert phase.recovery is not None
        deadline = time.monotonic() + self.recover_timeout_s
        while time.monotonic() < deadline:
            if any(o.status == 201 and o.sent_at >= phase.recovery.killed_at for o in phase.outcomes):
                return
            await asyncio.sleep(0.1)
        raise ChaosError(f"no upload sent after killing {phase.fault} was acknowledged within "
                         f"{self.recover_timeout_s:.0f}s")

    # ------------------------------------------------------------------------------------------ checks

    async def wait_settled(self, report: Callable[[str], None]) -> None:
        """Until every acknowledged image has its variants and every acknowledged upload its email."""
        acked = {fid: s for p in self.phases for fid, s in p.acked().items()}
        images = [uuid.UUID(f) for f, s in acked.items() if s.image]
        deadline = time.monotonic() + self.drain_timeout_s
        made, mailed = 0, 0
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                made = (await self._fetch("SELECT count(*) AS n FROM variants WHERE file_id = ANY($1::uuid[])",
                                          images))[0]["n"]
            mailed = len(self._mails(set(acked)))
            if made >= len(images) * self.variant_count and mailed >= len(acked):
                return
            await asyncio.sleep(0.5)
        report(f"  [red]not settled after {self.drain_timeout_s:.0f}s: {made} of "
               f"{len(images) * self.variant_count} variants, {mailed} of {len(acked)} emails")

    def _mails(self, ids: set[str]) -> Counter[str]:
        """Upload-complete emails per file id (the email links to /files/<id>)."""
        found: Counter[str] = Counter()
        for msg in read_maildir(Path(self.state["backing"]["smtp"]["maildir"])):
            if not str(msg["Subject"]).startswith("Upload complete"):
                continue
            body = msg.get_body(("plain",))
            text = body.get_content() if body is not None else ""
            for line in text.splitlines():
                if "/files/" in line and (fid := line.rsplit("/files/", 1)[1].strip()) in ids:
                    found[fid] += 1
        return found

    def _variant_ok(self, file_id: str, rows: list[Any]) -> tuple[bool, int]:
        """(every recorded variant is a complete image of its recorded size, visible objects of the file)."""
        from PIL import Image

        ok = True
        for r in rows:
            path = self._bucket("variants") / r["object_key"]
            try:
                data = path.read_bytes()
                with Image.open(io.BytesIO(data)) as img:
                    img.load()  # a truncated file raises here
                    ok = ok and len(data) == r["size"] and img.size == (r["width"], r["height"])
            except (OSError, ValueError):
                ok = False
        return ok, len(self._visible("variants", f"variants/{file_id}"))

    async def verify(self) -> list[DrillRow]:
        """One table row per fault: acknowledged, counted once, lost, duplicated, recovery times."""
        all_ids = {str(r["id"]) for r in await self._fetch("SELECT id FROM files")}
        orphans = [p.name for p in self._visible("originals", "files") if p.name not in all_ids]
        rows: list[DrillRow] = []
        for phase in self.phases:
            acked = phase.acked()
            users = [s.user for s in phase.sent.values()]
            stored = await self._fetch(
                "SELECT id::text AS id, owner_id, sha256, size, object_key, created_at FROM files "
                "WHERE owner_id = ANY($1::text[])", users)
            variants = await self._fetch(
                "SELECT file_id::text AS file_id, name, object_key, size, width, height, created_at FROM variants "
                "WHERE file_id = ANY($1::uuid[])", [uuid.UUID(r["id"]) for r in stored])
            by_id = {r["id"]: r for r in stored}
            mails = self._mails(set(acked))
            row = DrillRow(fault=phase.fault, acknowledged=len(acked))
            bad_bytes, bad_variants, missing_variants, missing_mail = 0, 0, 0, 0
            doubled: Counter[str] = Counter()
            for fid, sent in acked.items():
                r = by_id.get(fid)
                path = self._bucket("originals") / r["object_key"] if r else None
                if r is None or path is None or not path.is_file() or r["sha256"] != sent.sha256 \
                        or hashlib.sha256(path.read_bytes()).hexdigest() != sent.sha256:
                    bad_bytes += 1
                    continue
                row.counted += 1
                if sent.image:
                    mine = [v for v in variants if v["file_id"] == fid]
                    complete, objects = self._variant_ok(fid, mine)
                    missing_variants += len(mine) < self.variant_count
                    bad_variants += not complete
                    doubled["variant objects"] += max(0, objects - len(mine))
                missing_mail += mails[fid] == 0
                doubled["emails"] += max(0, mails[fid] - 1)
            row.lost = len(acked) - row.counted
            per_user = Counter(r["owner_id"] for r in stored if not r["owner_id"].endswith("-big"))
            doubled["files"] += sum(n - 1 for n in per_user.values())
            row.duplicated = sum(doubled.values())
            extra = {r["id"] for r in stored if not r["owner_id"].endswith("-big")} - set(acked)
            row.extra = len(extra)
            # A file stored but never acknowledged (killed after the commit) still gets its email: its messages
            # committed with the row (the outbox) and the restarted service relays them.
            extra_mails = self._mails(extra)
            missing_mail += sum(1 for fid in extra if extra_mails[fid] == 0)
            doubled["emails"] += sum(max(0, n - 1) for n in extra_mails.values())
            failures = Counter(str(o.status or o.error) for o in phase.outcomes if o.status != 201)
            row.failed = sum(failures.values())
            row.aggregates_ok = bad_variants == 0 and missing_variants == 0 and missing_mail == 0 \
                and phase.error is None
            if phase.recovery is not None:
                row.respawned_s, row.ready_s = phase.recovery.respawned_s, phase.recovery.ready_s
                killed = phase.recovery.killed_at
                after = [r["created_at"].timestamp() for r in stored
                         if r["id"] in acked and r["created_at"].timestamp() >= killed]
                row.flow_s = max(0.0, min(after) - killed) if after else None
            notes = list(phase.notes)
            if phase.fault == "image-processing" and phase.recovery is not None:
                # Photos whose variants were finished only after the kill: the job the worker died in, and any
                # queued behind it. None would mean the kill missed the work it is meant to interrupt.
                photos = {r["id"] for r in stored if "-photo" in r["owner_id"]}
                late = {v["file_id"] for v in variants if v["file_id"] in photos
                        and v["created_at"].timestamp() > phase.recovery.killed_at}
                notes.append(f"{len(late)} of {len(photos)} photos got their variants after the kill")
            if failures:
                notes.append("errors: " + ", ".join(f"{k} x{n}" for k, n in sorted(failures.items())))
            if row.duplicated:
                notes.append("duplicated: " + ", ".join(f"{k} x{n}" for k, n in sorted(doubled.items()) if n))
            if row.extra:
                notes.append(f"{row.extra} stored whose 201 never reached the client "
                             f"({sum(1 for fid in extra if extra_mails[fid])} of them emailed)")
            if bad_variants or missing_variants:
                notes.append(f"variants: {missing_variants} images incomplete, {bad_variants} with a broken object")
            if missing_mail:
                notes.append(f"{missing_mail} stored uploads without their email")
            if bad_bytes:
                notes.append(f"{bad_bytes} acknowledged files missing or with other bytes")
            if phase.error:
                notes.append(phase.error)
            row.note = "; ".join(notes)
            rows.append(row)
        # A kill -9 of file between the store's rename and the row's commit leaves an object without a row, which
        # the file service's leftovers sweep removes once LEFTOVER_AGE_S old. Only uploads the client saw fail
        # can leave one: more orphans than failed uploads in the file phase would be a bug.
        cut = sum(1 for p in self.phases if p.fault == "file" for o in p.outcomes if o.status != 201)
        if orphans and rows:
            rows[-1].note += f"{'; ' if rows[-1].note else ''}{len(orphans)} originals objects without a row"
            if len(orphans) <= cut:
                rows[-1].note += f" (at most one per failed upload of the file phase, {cut}: left for the sweep)"
            else:
                rows[-1].aggregates_ok = False
        return rows

    async def run(self, faults: list[str], *, rate: float = 40.0,
                  report: Callable[[str], None] = print) -> list[DrillRow]:
        """Run the faults in turn while uploads flow, wait for variants and emails, and check every upload."""
        self.check_faults(faults)
        connector = aiohttp.TCPConnector(limit=128)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
            for fault in faults:
                await self.run_fault(session, fault, rate, report)
        report("waiting for variants and emails …")
        await self.wait_settled(report)
        return await self.verify()
