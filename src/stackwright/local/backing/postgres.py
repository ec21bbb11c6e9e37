"""A real PostgreSQL server from the binaries the ``pgserver`` wheel ships, data kept across restarts.

Postgres refuses to run as root, so under root the server runs as an unprivileged ``pgserver`` user
(the same one the pgserver package creates).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
from pathlib import Path

SYSTEM_USER = "pgserver"


def bin_dir() -> Path:
    """Folder holding initdb/postgres: pgserver's bundled build."""
    import importlib.util

    # Locate the package without importing it: its import has side effects (runtime-dir warnings).
    found = importlib.util.find_spec("pgserver")
    if found is None or found.origin is None:
        raise RuntimeError("pgserver is not installed; pass --postgres-url or pip install pgserver")
    return Path(found.origin).parent / "pginstall" / "bin"


def _ensure_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", SYSTEM_USER], check=True, capture_output=True)
        return pwd.getpwnam(SYSTEM_USER)


class LocalPostgres:
    """Owns a data directory; builds the ``postgres`` command line for the supervisor to run."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.as_root = os.geteuid() == 0

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def database_url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _demote(self) -> dict[str, object]:
        if not self.as_root:
            return {}
        user = _ensure_user()
        return {"user": user.pw_uid, "group": user.pw_gid}

    def init(self) -> bool:
        """Create the cluster if the data dir is empty. Returns True when it was created now."""
        if (self.data_dir / "PG_VERSION").exists():
            return False
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.as_root:
            user = _ensure_user()
            _open_path_for(self.data_dir)
            shutil.chown(self.data_dir, user.pw_uid, user.pw_gid)
        subprocess.run(
            [str(bin_dir() / "initdb"), "-D", str(self.data_dir), "-U", "postgres", "--auth=trust",
             "--encoding=UTF8", "--no-instructions"],
            check=True, capture_output=True, text=True, **self._demote(),  # type: ignore[arg-type]
        )
        with (self.data_dir / "postgresql.auto.conf").open("a") as conf:
            # Local-dev durability: keep fsync on (chaos drills kill -9 the server) but batch commits.
            conf.write("max_connections = 300\nshared_buffers = 128MB\nsynchronous_commit = on\n"
                       "wal_level = replica\nmax_wal_senders = 5\nlisten_addresses = '127.0.0.1'\n")
        return True

    def command(self) -> list[str]:
        """argv that runs the server in the foreground."""
        return [str(bin_dir() / "postgres"), "-D", str(self.data_dir), "-p", str(self.port), "-k", str(self.data_dir)]

    def process_kwargs(self) -> dict[str, object]:
        """Extra arguments for spawning the server process (drop root)."""
        return self._demote()

    def before_start(self) -> None:
        """Run before every (re)start by the supervisor."""
        if self.as_root:
            # The server user must still be able to reach the data dir: something may have tightened a
            # parent since init (pytest re-chmods /tmp/pytest-of-<user> to 0700 at each session start).
            _open_path_for(self.data_dir)
        self.clear_stale_pid()

    def clear_stale_pid(self) -> None:
        """A kill -9 leaves postmaster.pid behind; postgres copes, but only if that pid is not reused."""
        pid_file = self.data_dir / "postmaster.pid"
        if pid_file.exists():
            try:
                pid = int(pid_file.read_text().split()[0])
                os.kill(pid, 0)
            except (ValueError, ProcessLookupError, IndexError):
                pid_file.unlink(missing_ok=True)
            except PermissionError:
                pass


def _open_path_for(path: Path) -> None:
    # The unprivileged server user must be able to traverse every parent folder.
    for parent in [*reversed(path.parents)]:
        if parent == Path("/"):
            continue
        mode = parent.stat().st_mode
        if mode & 0o011 != 0o011:
            with contextlib.suppress(PermissionError):
                parent.chmod(mode | 0o011)
