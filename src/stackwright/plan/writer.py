"""Write ARCHITECTURE.md (and architecture.json, SVGs) atomically: everything is built before anything is written."""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Literal

from ..filemodes import file_mode
from .diagrams import render_svg
from .document import to_json, to_markdown
from .model import Plan

MARKDOWN = "ARCHITECTURE.md"
JSON = "architecture.json"


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes 0600 files; the document is meant to be shared, so give it open()'s mode.
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_plan(plan: Plan, out: Path, fmt: Literal["md", "json"] = "md", *, svg: bool = True) -> list[Path]:
    """Render every file in memory, then write each with an atomic rename. Returns the paths written."""
    files: dict[str, str] = {}
    if svg:
        diagrams = []
        for d in plan.diagrams:
            text = render_svg(d)
            if text is not None:
                name = f"{d.name}.svg"
                files[name] = text
                d = replace(d, svg=name)
            diagrams.append(d)
        plan = replace(plan, diagrams=diagrams)
    files[MARKDOWN] = to_markdown(plan)
    if fmt == "json":
        files[JSON] = to_json(plan)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in sorted(files):
        _atomic_write(out / name, files[name])
        written.append(out / name)
    return written
