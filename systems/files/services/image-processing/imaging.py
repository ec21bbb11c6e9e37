"""The Pillow steps of image-processing, without the service around them (the bench calls them directly).

``render_variants`` decodes an image once and makes every variant from that one decode: the largest variant
from the original, each smaller one from the previous, larger result (a 1024 px image is a far cheaper
source for a 256 px thumbnail than the 2400 px original, and no visibly worse). The first step is Pillow's
``thumbnail`` on the not yet decoded image, so a JPEG much larger than the largest variant is decoded at
1/2, 1/4 or 1/8 scale (``Image.draft``: the scaling happens inside the JPEG decoder), never below twice the
variant's size (``reducing_gap=2``, Pillow's quality margin). The EXIF orientation is applied after that
first shrink, in place: the variants' box is a square, so the sizes come out the same.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

#: Output format name -> (Pillow format, content type).
FORMATS = {"jpeg": ("JPEG", "image/jpeg"), "webp": ("WEBP", "image/webp"), "png": ("PNG", "image/png")}
#: Encoder quality (JPEG and WebP, 0-100).
QUALITY = 82


@dataclass(frozen=True)
class VariantSpec:
    """One variant: ``name``, longest side in pixels, output format (a key of :data:`FORMATS`)."""

    name: str
    max_side: int
    fmt: str


def parse_variants(raw: str) -> list[VariantSpec]:
    """``thumb:256:jpeg,preview:1024:webp`` -> specs; ValueError on a malformed entry."""
    out = []
    for entry in filter(None, (e.strip() for e in raw.split(","))):
        name, side, fmt = entry.split(":")
        if fmt not in FORMATS or not name.replace("-", "").replace("_", "").isalnum() or int(side) < 16:
            raise ValueError(f"bad variant {entry!r} (name:max_side:jpeg|webp|png)")
        out.append(VariantSpec(name, int(side), fmt))
    return out


class Refused(Exception):
    """The image cannot or must not be processed (not an image, too many pixels)."""


def render_variants(data: bytes, specs: list[VariantSpec], *,
                    max_pixels: int) -> list[tuple[VariantSpec, bytes, int, int]]:
    """(spec, encoded bytes, width, height) of each variant of the image ``data``, in the order of ``specs``.

    Each variant fits in a ``max_side`` square (aspect kept, never enlarged), is turned upright from the
    EXIF orientation and carries pixels only (no EXIF, so no GPS location; no XMP, no ICC comments).
    Refused for an image over ``max_pixels`` (checked from the header, before any pixel is decoded) or a
    file Pillow cannot read. CPU-bound (Pillow releases the GIL while it decodes, resamples and encodes):
    run it in a thread.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = max_pixels  # Pillow raises DecompressionBombError at 2x; we check below
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > max_pixels:
                raise Refused(f"{im.width}x{im.height} exceeds {max_pixels} pixels")
            ordered = sorted(specs, key=lambda s: -s.max_side)
            # Before load: Pillow's thumbnail decodes a large JPEG at reduced scale (draft), then reduce()s
            # and resamples. The box is a square, so shrinking before turning upright gives the same size.
            im.thumbnail((ordered[0].max_side, ordered[0].max_side), Image.Resampling.LANCZOS)
            # In place, and on the small image: the EXIF orientation applied without another copy.
            ImageOps.exif_transpose(im, in_place=True)
            made: dict[str, tuple[bytes, int, int]] = {}
            source: Image.Image = im
            for spec in ordered:
                img = source
                if spec.max_side < max(source.size):
                    img = source.copy()
                    img.thumbnail((spec.max_side, spec.max_side), Image.Resampling.LANCZOS)
                source = img
                pil_format, _ = FORMATS[spec.fmt]
                if pil_format == "JPEG" and img.mode not in ("RGB", "L"):
                    img = img.convert("RGB")
                buf = io.BytesIO()
                # No exif=, no icc_profile=, no xmp=: the new file carries pixels only (no GPS location).
                img.save(buf, pil_format, quality=QUALITY)
                made[spec.name] = (buf.getvalue(), img.width, img.height)
            return [(s, *made[s.name]) for s in specs]
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise Refused(str(exc)) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise Refused(f"not a readable image: {exc}") from None
