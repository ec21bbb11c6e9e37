"""Streaming memory, and kill -9 of the file service mid-upload and of image-processing mid-job."""

from __future__ import annotations

import asyncio
import hashlib
import io
import threading
import time
from collections.abc import Iterator

import httpx
import psutil
import pytest
from PIL import Image

from stackwright.local.chaos import kill_and_recover

from .conftest import Files

pytestmark = pytest.mark.integration

MiB = 1 << 20


def test_256_mib_upload_streams_in_bounded_memory(files: Files) -> None:
    """Straight to the file service (the local gateway buffers request bodies: that is measured in bench.py)."""
    _, alice = files.user("alice")
    proc = psutil.Process(files.pid("file"))
    before = proc.memory_info().rss
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, proc.memory_info().rss)
            time.sleep(0.02)

    block = bytes(range(256)) * 4096  # 1 MiB, not all zeros
    expected = hashlib.sha256()
    for _ in range(256):
        expected.update(block)

    def body() -> Iterator[bytes]:
        for _ in range(256):
            yield block

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        resp = httpx.post(f"{files.service_url('file')}/files", params={"name": "big.bin"}, content=body(),
                          headers=alice, timeout=300)
    finally:
        done.set()
        sampler.join()
    assert resp.status_code == 201, resp.text
    assert resp.json()["size"] == 256 * MiB
    assert resp.json()["sha256"] == expected.hexdigest()
    growth = peak - before
    print(f"file service RSS growth during a 256 MiB upload: {growth / MiB:.1f} MiB")
    assert growth < 64 * MiB, f"file service RSS grew {growth / MiB:.1f} MiB during a 256 MiB upload"
    # Download streams too: read it back in pieces and compare the hash.
    got = hashlib.sha256()
    with httpx.stream("GET", f"{files.service_url('file')}/files/{resp.json()['id']}/content", headers=alice,
                      timeout=300) as dl:
        for chunk in dl.iter_bytes():
            got.update(chunk)
    assert got.hexdigest() == expected.hexdigest()


@pytest.mark.chaos
def test_kill_file_service_mid_upload_leaves_nothing_and_retry_works(files: Files) -> None:
    sub, alice = files.user("alice")
    before = files.visible_objects("originals")
    sent = threading.Event()
    outcome: dict[str, object] = {}

    def body() -> Iterator[bytes]:
        for i in range(200):
            if i == 20:
                sent.set()  # 20 MiB are through: the kill lands mid-upload
                time.sleep(1.0)
            yield b"\x01" * MiB

    def upload() -> None:
        try:
            outcome["resp"] = httpx.post(f"{files.service_url('file')}/files", params={"name": "cut.bin"},
                                         content=body(), headers=alice, timeout=60)
        except httpx.HTTPError as exc:
            outcome["error"] = exc

    t = threading.Thread(target=upload)
    t.start()
    assert sent.wait(60)
    asyncio.run(kill_and_recover("files", files.state_root, "file"))
    t.join(120)
    assert "error" in outcome or outcome["resp"].status_code >= 500  # type: ignore[union-attr]
    assert files.visible_objects("originals") == before  # no partial object
    assert files.sql("SELECT count(*) AS n FROM files WHERE owner_id = $1", sub)[0]["n"] == 0
    # The client retries: one file, whole.
    retry = files.client.post("/files", params={"name": "cut.bin"}, content=b"\x01" * (4 * MiB), headers=alice)
    assert retry.status_code == 201
    assert files.sql("SELECT count(*) AS n FROM files WHERE owner_id = $1", sub)[0]["n"] == 1


@pytest.mark.chaos
def test_kill_image_processing_mid_job_redoes_it(files: Files) -> None:
    _, alice = files.user("alice")
    # Noise is slow to decode and resize: the job takes long enough for the kill to land inside it.
    img = Image.effect_noise((5000, 4000), 80).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95)
    f = files.upload(alice, buf.getvalue(), name="noise.jpg")
    time.sleep(0.5)
    # Not done when killed: whatever was in progress must be redone by the restarted worker.
    assert files.sql("SELECT count(*) AS n FROM variants WHERE file_id = $1::uuid", f["id"])[0]["n"] == 0
    asyncio.run(kill_and_recover("files", files.state_root, "image-processing"))

    def made() -> bool:
        return files.sql("SELECT count(*) AS n FROM variants WHERE file_id = $1::uuid", f["id"])[0]["n"] == 2

    files.wait_until(made, timeout_s=90)
    rows = files.sql("SELECT name, size FROM variants WHERE file_id = $1::uuid ORDER BY name", f["id"])
    assert [r["name"] for r in rows] == ["preview", "thumb"]  # each once
    for r in rows:
        resp = files.client.get(f"/files/{f['id']}/variants/{r['name']}", headers=alice)
        assert len(resp.content) == r["size"]
        Image.open(io.BytesIO(resp.content)).load()  # whole, decodable files
