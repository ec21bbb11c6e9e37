"""Render a whole deployment bundle into a folder, all or nothing.

Every renderer returns ``{relative path: text}``. Nothing touches the disk until all of them have
succeeded; then the files go to a temporary folder next to the output, which replaces the output in
one rename. A failure therefore leaves the output folder exactly as it was.
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath

from ..filemodes import dir_mode
from ..spec import System
from .errors import RenderError

TARGETS = ("k8s", "aws", "docker", "ci")
MARKER = ".stackwright-bundle"


def _aws_renderer() -> Callable[[System], dict[str, str]] | None:
    try:
        module = importlib.import_module("stackwright.render.aws")
    except ModuleNotFoundError as exc:
        if exc.name in ("stackwright.render.aws",):
            return None
        raise
    return getattr(module, "render_aws", None)


def render_files(system: System, targets: Iterable[str] = TARGETS,
                 report: Callable[[str], None] | None = None,
                 on_step: Callable[[str], None] | None = None) -> dict[str, str]:
    """All files of the bundle as ``relative path -> text`` (nothing written).

    ``report`` gets one-line notes (e.g. a skipped target), ``on_step`` the name of each target as it starts.
    """
    from .ci import render_ci
    from .docker import render_docker
    from .k8s import render_k8s
    from .readme import render_readme

    targets = list(dict.fromkeys(targets))
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        raise RenderError(f"unknown render target {unknown[0]!r} (targets: {', '.join(TARGETS)})")
    files: dict[str, str] = {}
    notes: list[str] = []
    for target in targets:
        if on_step is not None:
            on_step(target)
        if target == "k8s":
            part = render_k8s(system)
        elif target == "docker":
            part = render_docker(system)
        elif target == "ci":
            part = render_ci(system)
        else:
            render_aws = _aws_renderer()
            if render_aws is None:
                message = "aws: skipped, the AWS CDK renderer (stackwright.render.aws) is not available yet"
                notes.append(message)
                if report is not None:
                    report(message)
                continue
            part = {f"aws/{k}" if not k.startswith("aws/") else k: v for k, v in render_aws(system).items()}
        for rel, text in part.items():
            _check_path(rel)
            if rel in files:
                raise RenderError(f"two renderers both write {rel}")
            files[rel] = text
    files["README.md"] = render_readme(system, files, notes)
    files[MARKER] = f"system: {system.name}\ntargets: {', '.join(targets)}\n"
    return files


def _check_path(rel: str) -> None:
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts or not rel:
        raise RenderError(f"renderer produced an unsafe path: {rel!r}")


def write_files(files: dict[str, str], out_dir: Path) -> list[Path]:
    """Write ``files`` into ``out_dir`` atomically (temp folder + rename); returns the written paths."""
    out_dir = Path(out_dir).absolute()
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / MARKER).is_file():
        raise RenderError(f"{out_dir} exists and is not a stackwright bundle; choose another --out or empty it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        # mkdtemp makes a 0700 folder; the bundle gets an ordinary folder's mode (umask respected).
        tmp.chmod(dir_mode())
        for rel, text in sorted(files.items()):
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "w", encoding="utf-8", newline="\n") as fh:
                fh.write(text)
        old: Path | None = None
        if out_dir.exists():
            old = out_dir.parent / f"{tmp.name}.old"
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return [out_dir / rel for rel in sorted(files)]


def render_bundle(system: System, out_dir: str | Path, targets: Iterable[str] = TARGETS,
                  report: Callable[[str], None] | None = None,
                  on_step: Callable[[str], None] | None = None) -> list[Path]:
    """Render ``targets`` of ``system`` into ``out_dir``; on any error nothing is written.

    ``report`` receives one-line notes (e.g. a target that was skipped), ``on_step`` each target's name
    as it starts. Returns the written files.
    """
    files = render_files(system, targets, report, on_step)
    return write_files(files, Path(out_dir))
