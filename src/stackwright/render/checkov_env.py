"""checkov's own virtualenv: where it lives, finding it, and installing it (once, visibly, safely).

checkov pins dependencies that clash with the project's (an old boto3, ``packaging<24``), so it cannot
share our environment. It lives in a virtualenv of its own under the user's cache folder
(``$XDG_CACHE_HOME/stackwright/checkov-<version>``, ``~/.cache`` by default), or wherever
``STACKWRIGHT_CHECKS_VENV`` points. Nothing creates it behind the user's back: ``render --check``,
``stackwright checkers --install`` and the test suite install it with progress output.

Installing is safe against concurrent use (two test sessions, a test and a ``render --check``): an
exclusive lock on a file beside the folder serialises installers, a folder is only used once a marker
file says its install finished, and a finished folder is never cleared.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

CHECKOV_VERSION = "3.3.30"
_MARKER = ".stackwright-complete"


class CheckovMissing(RuntimeError):
    """checkov is not installed; ``str()`` says how to install it."""


class CheckovInstallFailed(RuntimeError):
    """pip could not install checkov; ``str()`` holds the end of pip's output."""


def checks_venv() -> Path:
    """Folder of checkov's virtualenv (``$STACKWRIGHT_CHECKS_VENV`` wins)."""
    env = os.environ.get("STACKWRIGHT_CHECKS_VENV")
    if env:
        return Path(env)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "stackwright" / f"checkov-{CHECKOV_VERSION}"


def _bin(folder: Path, name: str) -> Path:
    return folder / ("Scripts" if os.name == "nt" else "bin") / name


def _complete(folder: Path) -> bool:
    return (folder / _MARKER).is_file() and _bin(folder, "checkov").is_file()


def find_checkov() -> Path | None:
    """The checkov executable: ``$CHECKOV``, the finished checks venv, next to this Python, or on ``PATH``."""
    if os.environ.get("CHECKOV"):
        given = Path(os.environ["CHECKOV"])
        return given if given.is_file() else None
    if _complete(checks_venv()):
        return _bin(checks_venv(), "checkov")
    beside = Path(sys.executable).with_name("checkov")
    if beside.is_file():
        return beside
    found = shutil.which("checkov")
    return Path(found) if found else None


def install_hint() -> str:
    """One sentence telling the user how to get checkov."""
    return (f"checkov {CHECKOV_VERSION} is not installed; run `stackwright checkers --install` "
            f"(installs it into {checks_venv()}, ~1-2 min) or set CHECKOV to an executable")


def require_checkov() -> Path:
    """The checkov executable, or :class:`CheckovMissing` with the install command."""
    found = find_checkov()
    if found is None:
        raise CheckovMissing(install_hint())
    return found


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as handle:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; concurrent installs there are the user's risk
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _stream(cmd: list[str], progress: Callable[[str], None] | None) -> tuple[int, list[str]]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail: list[str] = []
    out: IO[str] = proc.stdout  # type: ignore[assignment]
    for line in out:
        line = line.rstrip()
        if not line:
            continue
        tail = [*tail[-19:], line]
        if progress is not None:
            progress(line)
    return proc.wait(), tail


def install_checkov(progress: Callable[[str], None] | None = None) -> Path:
    """Create checkov's virtualenv and install the pinned checkov into it; return the executable.

    ``progress`` receives a line for each step and each line pip prints. Needs the package index.
    Raises :class:`CheckovInstallFailed` when pip fails (the half-made folder is removed).
    """
    folder = checks_venv()
    with _exclusive(folder.with_name(folder.name + ".lock")):
        # Another process may have finished the install while this one waited for the lock.
        if _complete(folder):
            return _bin(folder, "checkov")
        if folder.exists():
            shutil.rmtree(folder)  # an install that died part way; nobody uses an unfinished folder
        if progress is not None:
            progress(f"creating {folder}")
        venv.EnvBuilder(with_pip=True).create(folder)
        code, tail = _stream([str(_bin(folder, "python")), "-m", "pip", "install", "--progress-bar", "off",
                              f"checkov=={CHECKOV_VERSION}"], progress)
        if code != 0:
            shutil.rmtree(folder, ignore_errors=True)
            raise CheckovInstallFailed(f"pip install checkov=={CHECKOV_VERSION} failed ({code}): "
                                       + " | ".join(tail[-3:]))
        (folder / _MARKER).write_text(CHECKOV_VERSION + "\n")
    return _bin(folder, "checkov")
