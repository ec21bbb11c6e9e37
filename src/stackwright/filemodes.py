"""Permissions of the files stackwright writes: what ``open()`` would give, whatever the write path.

Writing through ``tempfile.mkstemp``/``mkdtemp`` (for atomic renames) creates 0600 files and 0700 folders,
so a plan or bundle written that way was unreadable to the rest of a team or a CI artifact step. Outputs
get the ordinary modes instead: 0666 / 0777 less the process umask (0644 / 0755 with the usual 022).
"""

from __future__ import annotations

import os
from pathlib import Path


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux), else set and restored."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """Mode of a new regular file: 0666 less the umask."""
    return 0o666 & ~current_umask()


def dir_mode() -> int:
    """Mode of a new folder: 0777 less the umask."""
    return 0o777 & ~current_umask()
