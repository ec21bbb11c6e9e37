"""Image variants: the spec's sizes and formats, EXIF location stripped, decompression bombs refused."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image

from .conftest import Files

pytestmark = pytest.mark.integration

GPS_IFD = 0x8825


def jpeg_with_gps(size: tuple[int, int] = (1600, 1200)) -> bytes:
    img = Image.new("RGB", size, (30, 120, 200))
    exif = Image.Exif()
    exif[0x010F] = "TestCam"  # Make
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    gps = exif.get_ifd(GPS_IFD)
    gps.update({1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)})
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif)
    data = buf.getvalue()
    assert Image.open(io.BytesIO(data)).getexif().get_ifd(GPS_IFD)  # the test image really has a location
    return data


def wait_variants(files: Files, headers: dict[str, str], file_id: str, n: int = 2) -> list[dict[str, Any]]:
    def ready() -> list[dict[str, Any]] | None:
        v = files.client.get(f"/files/{file_id}", headers=headers).json()["variants"]
        return v if len(v) >= n else None

    return list(files.wait_until(ready, timeout_s=60))


def test_variants_are_made_upright_and_without_location(files: Files) -> None:
    _, alice = files.user("alice")
    f = files.upload(alice, jpeg_with_gps(), name="holiday.jpg")
    assert f["content_type"] == "image/jpeg"
    variants = {v["name"]: v for v in wait_variants(files, alice, f["id"])}
    assert set(variants) == {"thumb", "preview"}
    # EXIF orientation 6: the 1600x1200 landscape is shown as a 1200x1600 portrait.
    assert (variants["thumb"]["width"], variants["thumb"]["height"]) == (192, 256)
    assert (variants["preview"]["width"], variants["preview"]["height"]) == (768, 1024)
    thumb = files.client.get(f"/files/{f['id']}/variants/thumb", headers=alice)
    preview = files.client.get(f"/files/{f['id']}/variants/preview", headers=alice)
    assert thumb.headers["content-type"] == "image/jpeg" and preview.headers["content-type"] == "image/webp"
    for resp in (thumb, preview):
        img = Image.open(io.BytesIO(resp.content))
        exif = img.getexif()
        assert not exif.get_ifd(GPS_IFD) and GPS_IFD not in exif
        assert b"TestCam" not in resp.content
    assert Image.open(io.BytesIO(preview.content)).format == "WEBP"
    # Stored in the variants bucket, not next to the originals.
    keys = [k for k in files.visible_objects("variants") if f["id"] in k]
    assert sorted(keys) == [f"variants/{f['id']}/preview.webp", f"variants/{f['id']}/thumb.jpeg"]


def test_decompression_bomb_is_refused_and_the_worker_carries_on(files: Files) -> None:
    _, alice = files.user("alice")
    buf = io.BytesIO()
    Image.new("1", (12000, 12000)).save(buf, "PNG")  # 144 M pixels in a file of a few hundred KB
    assert len(buf.getvalue()) < 1 << 20
    pid = files.pid("image-processing")
    bomb = files.upload(alice, buf.getvalue(), name="bomb.png")
    # GIF magic (so sniffed as image/gif and queued), then garbage: unreadable, refused the same way.
    fake = files.upload(alice, b"GIF89a" + bytes(range(256)) * 4, name="fake.gif")
    assert fake["content_type"] == "image/gif"
    # One job at a time, in order: once the next image has its variants, the bomb's job is done.
    after = files.upload(alice, jpeg_with_gps((400, 300)), name="after.jpg")
    wait_variants(files, alice, after["id"])
    assert files.client.get(f"/files/{bomb['id']}", headers=alice).json()["variants"] == []
    assert files.client.get(f"/files/{fake['id']}", headers=alice).json()["variants"] == []
    assert files.pid("image-processing") == pid  # refused, not crashed
    assert files.client.get(f"/files/{bomb['id']}/variants/thumb", headers=alice).status_code == 404
