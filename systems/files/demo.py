"""`stackwright demo files`: two users upload (one large file, streamed), share a folder, search, fetch an
image variant, revoke, and get notified by email (and bob, who opted in, by SMS); every step is checked and
shown in a table."""

from __future__ import annotations

import asyncio
import hashlib
import io
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx

from stackwright.local.demokit import DemoContext
from stackwright.local.mailbox import read_mailbox
from stackwright.local.smsbox import read_sms

SIZE_HELP = "MiB of the large upload"
DEFAULT_SIZE = 64


def _photo() -> bytes:
    from PIL import Image

    img = Image.effect_noise((1600, 1200), 60).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


async def _wait(check: Any, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := await check():
            return value
        await asyncio.sleep(0.3)
    return None


async def run(ctx: DemoContext) -> bool:
    """Run the scenario against the running system; True when every step behaved as it should."""
    console, idp = ctx.console, ctx.idp()
    tag = uuid.uuid4().hex[:6]
    alice_id, bob_id = f"alice-{tag}", f"bob-{tag}"
    alice = {"authorization": f"Bearer {idp.mint(alice_id)}"}
    bob = {"authorization": f"Bearer {idp.mint(bob_id)}"}
    steps: list[tuple[str, bool, str]] = []

    def step(name: str, ok: bool, detail: str) -> None:
        steps.append((name, ok, detail))
        console.print(f"{'ok ' if ok else 'FAIL'} {name}: {detail}")

    size = max(1, ctx.size) << 20
    block = hashlib.sha256(tag.encode()).digest() * 32768  # 1 MiB, not all zeros

    async def big_body() -> AsyncIterator[bytes]:
        sent = 0
        while sent < size:
            piece = block[: size - sent]
            sent += len(piece)
            yield piece

    expected = hashlib.sha256()
    for _ in range(size // len(block)):
        expected.update(block)
    expected.update(block[: size % len(block)])

    async with httpx.AsyncClient(base_url=ctx.state["gateway"], timeout=300) as c:
        folder = (await c.post("/folders", json={"name": f"Project {tag}"}, headers=alice)).json()
        began = time.monotonic()
        big = await c.post("/files", params={"name": "dataset.bin", "folder_id": folder["id"]}, content=big_body(),
                           headers=alice)
        secs = time.monotonic() - began
        ok = big.status_code == 201 and big.json()["sha256"] == expected.hexdigest()
        step("large upload", ok, f"{size >> 20} MiB in {secs:.1f} s, sha256 {'matches' if ok else big.text[:80]}")
        word = f"aurora{tag}"
        doc = (await c.post("/files", params={"name": "plan.txt", "folder_id": folder["id"], "tags": "plan"},
                            content=f"launch plan for project {word}\n".encode(), headers=alice)).json()
        photo = (await c.post("/files", params={"name": "site.jpg", "folder_id": folder["id"]}, content=_photo(),
                              headers=alice)).json()
        private = (await c.post("/files", params={"name": "diary.txt"}, content=b"private", headers=alice)).json()
        step("uploads", photo.get("content_type") == "image/jpeg" and doc.get("content_type") == "text/plain",
             f"plan.txt ({doc.get('content_type')}), site.jpg ({photo.get('content_type')}), diary.txt")

        # A number from the US range reserved for fiction (555-01xx): the local SNS endpoint texts nobody anyway.
        bob_phone = "+1415555" + f"{int(tag, 16) % 100:04d}"
        opted = await c.put("/me/notifications", json={"phone": bob_phone, "sms": {"share": True}}, headers=bob)
        step("bob opts into SMS on shares", opted.status_code == 200, f"{opted.status_code} {opted.json()}")
        shared = await c.post("/shares", json={"resource_type": "folder", "resource_id": folder["id"],
                                               "principal_type": "user", "principal_id": bob_id, "role": "viewer"},
                              headers=alice)
        step("share folder with bob (viewer)", shared.status_code == 201, f"{shared.status_code}")

        async def found() -> list[Any] | None:
            r = await c.get("/search", params={"q": word}, headers=bob)
            hits = r.json().get("results", []) if r.status_code == 200 else []
            return hits or None

        hits = await _wait(found) or []
        step("bob searches the text", [h["id"] for h in hits] == [doc["id"]],
             f"q={word}: {[h['name'] for h in hits]}")

        async def thumb() -> httpx.Response | None:
            r = await c.get(f"/files/{photo['id']}/variants/thumb", headers=bob)
            return r if r.status_code == 200 else None

        t = await _wait(thumb)
        step("bob fetches the thumbnail", t is not None and t.headers["content-type"] == "image/jpeg",
             f"{len(t.content)} bytes" if t is not None else "no thumbnail")
        part = await c.get(f"/files/{big.json()['id']}/content", headers={**bob, "range": "bytes=0-1023"})
        step("bob reads a range of the large file", part.status_code == 206 and part.content == block[:1024],
             f"{part.status_code} {part.headers.get('content-range')}")
        other = await c.get(f"/files/{private['id']}/content", headers=bob)
        step("bob asks for alice's unshared file", other.status_code == 404, f"{other.status_code}")

        revoked = await c.delete(f"/shares/folder/{folder['id']}/user/{bob_id}", headers=alice)
        after = await c.get(f"/files/{doc['id']}/content", headers=bob)
        step("alice revokes; bob's next request", revoked.status_code == 204 and after.status_code == 404,
             f"revoke {revoked.status_code}, then {after.status_code}")

    state_root = ctx.key_file.parent.parent

    async def mail() -> tuple[int, int] | None:
        box = read_mailbox(state_root, "files")
        to_alice = sum(1 for m in box if m["To"].startswith(f"{alice_id}@"))
        to_bob = sum(1 for m in box if m["To"].startswith(f"{bob_id}@"))
        return (to_alice, to_bob) if to_alice >= 4 and to_bob >= 1 else None

    got = await _wait(mail) or (0, 0)
    step("email notifications", got == (4, 1), f"alice: {got[0]} upload-complete, bob: {got[1]} share")

    async def texts() -> list[dict[str, Any]] | None:
        return [s for s in read_sms(state_root, "files") if s["phone_number"] == bob_phone] or None

    sms = await _wait(texts) or []
    step("SMS notification", len(sms) == 1 and alice_id in sms[0]["message"],
         f"{len(sms)} to bob's {bob_phone}: {sms[0]['message'] if sms else '-'}")

    # Each step printed its line as it finished: the end says only how many held, and which did not.
    failed = [name for name, ok, _ in steps if not ok]
    console.print(f"{len(steps) - len(failed)} of {len(steps)} steps ok"
                  + (f"; failed: {', '.join(failed)}" if failed else ""))
    return not failed
