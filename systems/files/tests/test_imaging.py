"""image-processing's Pillow steps on their own (no system needed): sizes, orientation, metadata, formats."""

from __future__ import annotations

import importlib.util
import io
import sys
from pathlib import Path
from types import ModuleType

import pytest
from PIL import Image

from .test_images import GPS_IFD, jpeg_with_gps

IMAGING = Path(__file__).resolve().parents[1] / "services" / "image-processing" / "imaging.py"


@pytest.fixture(scope="module")
def imaging() -> ModuleType:
    spec = importlib.util.spec_from_file_location("files_test_imaging", IMAGING)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def test_large_rotated_jpeg_gives_upright_variants_in_spec_order(imaging: ModuleType) -> None:
    # 4800x3600 with EXIF orientation 6: decoded at reduced scale (draft), shown as a portrait.
    specs = imaging.parse_variants("thumb:256:jpeg,preview:1024:webp")
    made = imaging.render_variants(jpeg_with_gps((4800, 3600)), specs, max_pixels=50_000_000)
    assert [m[0].name for m in made] == ["thumb", "preview"]
    sizes = {m[0].name: (m[2], m[3]) for m in made}
    assert sizes == {"thumb": (192, 256), "preview": (768, 1024)}
    for spec, blob, width, height in made:
        with Image.open(io.BytesIO(blob)) as img:
            img.load()
            assert img.size == (width, height)
            assert img.format == {"jpeg": "JPEG", "webp": "WEBP"}[spec.fmt]
            assert not img.getexif().get_ifd(GPS_IFD)
            # The pixels survive the chain: the test image is one colour (30, 120, 200).
            r, g, b = img.convert("RGB").getpixel((width // 2, height // 2))[:3]
            assert abs(r - 30) < 12 and abs(g - 120) < 12 and abs(b - 200) < 12
        assert b"TestCam" not in blob


def test_small_image_is_not_enlarged_and_alpha_becomes_rgb_for_jpeg(imaging: ModuleType) -> None:
    buf = io.BytesIO()
    Image.new("RGBA", (100, 40), (255, 0, 0, 128)).save(buf, "PNG")
    specs = imaging.parse_variants("thumb:256:jpeg,preview:1024:png")
    made = {m[0].name: m for m in imaging.render_variants(buf.getvalue(), specs, max_pixels=1_000_000)}
    assert (made["thumb"][2], made["thumb"][3]) == (100, 40)
    assert Image.open(io.BytesIO(made["thumb"][1])).mode == "RGB"
    assert Image.open(io.BytesIO(made["preview"][1])).mode == "RGBA"


def test_bomb_and_garbage_are_refused(imaging: ModuleType) -> None:
    specs = imaging.parse_variants("thumb:256:jpeg")
    buf = io.BytesIO()
    Image.new("1", (3000, 3000)).save(buf, "PNG")
    with pytest.raises(imaging.Refused, match="exceeds"):
        imaging.render_variants(buf.getvalue(), specs, max_pixels=1_000_000)
    with pytest.raises(imaging.Refused, match="not a readable image"):
        imaging.render_variants(b"GIF89a" + bytes(200), specs, max_pixels=1_000_000)
