"""Image processing: makes the variants the spec names (``VARIANTS``) of each uploaded image.

``VARIANTS`` is ``name:max_side:format`` entries, comma separated (e.g. ``thumb:256:jpeg,preview:1024:webp``):
each variant fits in a ``max_side`` square, keeps the aspect ratio, is turned upright from the EXIF
orientation and written without any metadata (EXIF, so GPS location, XMP, ICC comments are not copied).
An image over ``MAX_IMAGE_PIXELS`` (a decompression bomb: small file, huge canvas) is refused before its
pixels are decoded, and so is a file Pillow cannot read; both are recorded as failed and acked (retrying
cannot help).

Exactly-once effect on at-least-once delivery: each variant is written to the variants bucket atomically
(temp + rename locally, a single PUT on S3) under a key derived from the file id and variant name, then
recorded in Postgres with ``ON CONFLICT DO NOTHING``; the message is acked after both. A worker killed
mid-job leaves at most an unrecorded complete object that the redelivered job overwrites with the same
bytes: no half-written variant is ever visible and none is recorded twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from imaging import FORMATS, Refused, VariantSpec, parse_variants, render_variants

from stackwright.runtime import Service, consume

svc = Service(title="image-processing")
db = svc.postgres("db")
originals = svc.store("originals")
variants = svc.store("variants")
jobs = svc.queue("variant-jobs")
app = svc.app

log = logging.getLogger("files.image-processing")

MAX_IMAGE_PIXELS = int(svc.settings.get("MAX_IMAGE_PIXELS", "50000000") or 50_000_000)
#: Files larger than this are not opened at all (the upload limit is larger; an image this big is hostile).
MAX_IMAGE_BYTES = int(svc.settings.get("MAX_IMAGE_BYTES", str(100 << 20)) or 100 << 20)
VARIANTS = parse_variants(svc.settings.get("VARIANTS", "thumb:256:jpeg,preview:1024:webp") or "")


def variant_key(file_id: str, spec: VariantSpec) -> str:
    return f"variants/{file_id}/{spec.name}.{spec.fmt}"


async def process(file_id: str) -> str:
    """Make and record every missing variant of one file; returns what happened (for the log)."""
    row = await db.pool.fetchrow("SELECT object_key, size FROM files WHERE id = $1", uuid.UUID(file_id))
    if row is None:
        return "gone"  # purged before we got to it
    have = {r["name"] for r in await db.pool.fetch("SELECT name FROM variants WHERE file_id = $1",
                                                   uuid.UUID(file_id))}
    todo = [s for s in VARIANTS if s.name not in have]
    if not todo:
        return "done already"
    if row["size"] > MAX_IMAGE_BYTES:
        return f"refused: {row['size']} bytes"
    began = time.perf_counter()
    try:
        data = await originals.get(row["object_key"])
    except KeyError:
        return "original missing"
    read = time.perf_counter()
    try:
        made, cpu_s = await asyncio.to_thread(_timed_render, data, todo)
    except Refused as exc:
        log.warning("file %s: %s", file_id, exc)
        return f"refused: {exc}"
    rendered = time.perf_counter()
    for spec, blob, width, height in made:
        key = variant_key(file_id, spec)
        await variants.put(key, blob, FORMATS[spec.fmt][1])
        await db.pool.execute(
            """INSERT INTO variants (file_id, name, object_key, content_type, size, width, height)
               VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (file_id, name) DO NOTHING""",
            uuid.UUID(file_id), spec.name, key, FORMATS[spec.fmt][1], len(blob), width, height)
    # Where a job's time goes (the bench compares the render with Pillow called directly).
    return (f"made {', '.join(s.name for s in todo)}: read {(read - began) * 1000:.0f} ms, render "
            f"{(rendered - read) * 1000:.0f} ms ({cpu_s * 1000:.0f} ms CPU), store and record "
            f"{(time.perf_counter() - rendered) * 1000:.0f} ms")


def _timed_render(data: bytes, todo: list[VariantSpec]) -> tuple[list[tuple[VariantSpec, bytes, int, int]], float]:
    """render_variants and the CPU seconds its thread spent (less than the wall time on a busy machine)."""
    cpu = time.thread_time()
    made = render_variants(data, todo, max_pixels=MAX_IMAGE_PIXELS)
    return made, time.thread_time() - cpu


async def handle(messages: list[Any]) -> None:
    for m in messages:
        outcome = await process(str(m.body["file_id"]))
        log.info("file %s: %s", m.body["file_id"], outcome)


@svc.background
async def run() -> None:
    # One image at a time per process: variants are CPU-bound, more replicas (KEDA on queue depth) add CPUs.
    await consume(jobs, handle, batch_size=1, wait_seconds=1.0)
