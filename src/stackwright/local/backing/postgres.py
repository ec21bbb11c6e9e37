"""A real PostgreSQL server from the binaries the ``pgserver`` wheel ships, data kept across restarts.

Postgres refuses to run as root, so under root the server runs as an unprivileged ``pgserver`` user
(the same one the pgserver package creates), switched to by ``subprocess`` itself (``user=``/``group=``:
no su/runuser wrapper, so the supervised pid *is* the postmaster). That user must be able to reach both
the binaries and the data directory, and as root both often sit under a home it cannot traverse
(``/root`` is 0700: a venv or a project there is common in containers and CI). Nobody's folder is
loosened for it; instead, as root:

* binaries it cannot reach are run from a copy in ``/var/lib/stackwright/pginstall-<pgserver version>/``
  (root-owned, world-traversable; with the wheel's bundled libraries, ``pgserver.libs``), copied once,
  atomically (a private temporary copy renamed into place), so concurrent runs neither race nor see half
  a copy;
* a data directory it cannot reach is kept in ``/var/lib/stackwright/pgdata/<hash of the requested
  path>/data`` and the requested path becomes a symlink to it (the pointer; the run's state records the
  real path too). Such a copy whose pointer is gone (a deleted project or pytest temp folder) is removed
  by a later relocation once it has been unused for a while.

Reachability is judged from the mode bits (owner, group, other) of every folder on the way; ACLs are
not consulted. Not as root (any platform) none of this applies: the server runs as the caller, in place.
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

SYSTEM_USER = "pgserver"
SHARED_ROOT = Path("/var/lib/stackwright")
# A relocated data directory whose pointer has vanished is only removed after this long, so a run that
# is creating its pointer right now is never swept away by another one.
_STALE_RELOCATION_S = 3600.0


class PostgresSetupError(RuntimeError):
    """The embedded server cannot be set up; the message says what to do."""


def pgserver_install() -> Path:
    """Folder holding pgserver's bundled build (bin/, lib/, share/)."""
    import importlib.util

    # Locate the package without importing it: its import has side effects (runtime-dir warnings).
    found = importlib.util.find_spec("pgserver")
    if found is None or found.origin is None:
        raise PostgresSetupError("pgserver is not installed; pass --postgres-url or pip install pgserver")
    return Path(found.origin).parent / "pginstall"


def bin_dir() -> Path:
    """Folder holding initdb/postgres: pgserver's bundled build."""
    return pgserver_install() / "bin"


def _pgserver_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pgserver")
    except PackageNotFoundError:
        return "unknown"


def _ensure_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", SYSTEM_USER], check=True, capture_output=True)
        return pwd.getpwnam(SYSTEM_USER)


def reachable_by(path: Path, user: pwd.struct_passwd) -> bool:
    """True if ``user`` may traverse every folder from / down to ``path`` (inclusive), by mode bits."""
    groups = {user.pw_gid} | {g.gr_gid for g in grp.getgrall() if user.pw_name in g.gr_mem}
    target = path.absolute()
    for folder in [*reversed(target.parents), target]:
        try:
            st = folder.stat()
        except OSError:
            return False
        if st.st_uid == user.pw_uid:
            bit = stat.S_IXUSR
        elif st.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def _shared_root(root: Path, user: pwd.struct_passwd) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    if not reachable_by(root, user):
        raise PostgresSetupError(f"{root} is not reachable by the '{user.pw_name}' user Postgres runs as; "
                                 f"make its parent folders world-traversable (chmod o+x) or run as a non-root user")
    return root


def usable_install(install: Path, user: pwd.struct_passwd, shared_root: Path = SHARED_ROOT) -> Path:
    """``install`` if ``user`` can run its binaries, else a copy of it under ``shared_root`` it can.

    The wheel's binaries find their bundled libraries through an RPATH relative to themselves
    (``$ORIGIN/../../../pgserver.libs``, auditwheel's layout), so the copy keeps that layout:
    ``<copy>/pgserver/pginstall`` next to ``<copy>/pgserver.libs``.
    """
    if reachable_by(install / "bin", user):
        return install
    root = _shared_root(shared_root, user)
    target = root / f"pginstall-{_pgserver_version()}"
    copied = target / install.parent.name / install.name
    if (copied / "bin" / "postgres").exists():
        return copied
    libs = install.parent.parent / f"{install.parent.name}.libs"
    tmp = root / f".{target.name}.{os.getpid()}.{time.monotonic_ns()}.tmp"
    try:
        shutil.copytree(install, tmp / install.parent.name / install.name, symlinks=True)
        if libs.is_dir():
            shutil.copytree(libs, tmp / libs.name, symlinks=True)
        for folder in (tmp, tmp / install.parent.name):
            folder.chmod(0o755)
        try:
            # rename() of a folder onto an existing non-empty one fails, so exactly one copy wins.
            tmp.rename(target)
        except OSError:
            if not (copied / "bin" / "postgres").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return copied


def reachable_data_dir(data_dir: Path, user: pwd.struct_passwd, shared_root: Path = SHARED_ROOT) -> Path:
    """Where the cluster for ``data_dir`` can live so that ``user`` reaches it (see the module docstring)."""
    requested = data_dir.absolute()
    if requested.is_symlink():
        return requested.resolve()
    if reachable_by(requested.parent, user):
        return requested
    pgdata = _shared_root(shared_root, user) / "pgdata"
    pgdata.mkdir(exist_ok=True)
    _sweep_relocations(pgdata)
    home = pgdata / hashlib.sha256(str(requested).encode()).hexdigest()[:16]
    home.mkdir(exist_ok=True)
    home.chmod(0o755)
    (home / "origin").write_text(str(requested))
    real = home / "data"
    if requested.is_dir() and any(requested.iterdir()):
        # A cluster made before relocation existed: move it rather than start an empty one.
        shutil.move(str(requested), str(real))
    else:
        with contextlib.suppress(FileNotFoundError):
            requested.rmdir()
    requested.parent.mkdir(parents=True, exist_ok=True)
    requested.symlink_to(real, target_is_directory=True)
    return real


def _sweep_relocations(pgdata: Path) -> None:
    """Remove relocated clusters whose pointer no longer leads to them and that no server runs on."""
    now = time.time()
    for home in pgdata.iterdir():
        origin = home / "origin"
        try:
            if now - origin.stat().st_mtime < _STALE_RELOCATION_S:
                continue
            pointer = Path(origin.read_text())
        except OSError:
            continue
        if pointer.is_symlink() and pointer.resolve() == (home / "data").resolve():
            continue
        if postmaster_pid(home / "data") is not None:
            continue
        shutil.rmtree(home, ignore_errors=True)


def postmaster_pid(data_dir: Path) -> int | None:
    """The pid in ``postmaster.pid`` if that process is alive, else None."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return pid


def _serves(pid: int, data_dir: Path) -> bool | None:
    """Whether ``pid`` is a postmaster of ``data_dir``: it chdirs there. None when that cannot be told.

    Linux reads ``/proc/<pid>/cwd``; other platforms ask psutil if it is installed, else cannot tell.
    """
    try:
        if sys.platform.startswith("linux"):
            cwd = os.readlink(f"/proc/{pid}/cwd")
        else:
            import psutil  # type: ignore[import-untyped]

            cwd = psutil.Process(pid).cwd()
    except ImportError:
        return None
    except Exception:  # gone, or (psutil) not allowed to look: not ours to touch
        return False
    return Path(cwd).resolve() == data_dir.resolve()


def stop_stray(data_dir: Path, *, timeout_s: float = 30.0, shared_root: Path = SHARED_ROOT) -> int | None:
    """Stop a Postgres still serving ``data_dir`` that nobody supervises (left by a killed runner).

    Uses ``pg_ctl stop -m fast`` (as the server user when root: pg_ctl refuses root), then SIGKILL if it
    is still there. Returns the pid stopped, or None if no server was running there.
    """
    data_dir = data_dir.resolve()
    pid = postmaster_pid(data_dir)
    if pid is None or not _serves(pid, data_dir):
        return None  # unknown (None) too: never signal a process we cannot tell is this server
    demote: dict[str, int] = {}
    install = pgserver_install()
    if os.geteuid() == 0:
        user = _ensure_user()
        install = usable_install(install, user, shared_root)
        demote = {"user": user.pw_uid, "group": user.pw_gid}
    subprocess.run([str(install / "bin" / "pg_ctl"), "stop", "-D", str(data_dir), "-m", "fast", "-w",
                    "-t", str(int(timeout_s))], capture_output=True, cwd=str(data_dir), check=False,
                   **demote)  # type: ignore[call-overload]
    if postmaster_pid(data_dir) == pid and _serves(pid, data_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pid


class LocalPostgres:
    """Owns a data directory; builds the ``postgres`` command line for the supervisor to run.

    ``install`` (default: pgserver's build) and ``shared_root`` (default /var/lib/stackwright) are for
    tests; under root, ``data_dir`` may end up elsewhere (module docstring): use ``self.data_dir``.
    """

    def __init__(self, data_dir: Path, port: int, *, install: Path | None = None,
                 shared_root: Path = SHARED_ROOT) -> None:
        self.requested_dir = data_dir.absolute()
        self.data_dir = data_dir.resolve()
        self.port = port
        self.as_root = os.geteuid() == 0
        self.shared_root = shared_root
        self._install = install
        self._bin: Path | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def database_url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    @property
    def bin_dir(self) -> Path:
        """Folder of the binaries this server runs from (a reachable copy when needed, see above)."""
        if self._bin is None:
            install = self._install or pgserver_install()
            if self.as_root:
                install = usable_install(install, _ensure_user(), self.shared_root)
            self._bin = install / "bin"
        return self._bin

    def _demote(self) -> dict[str, object]:
        if not self.as_root:
            return {}
        user = _ensure_user()
        return {"user": user.pw_uid, "group": user.pw_gid}

    def init(self) -> bool:
        """Create the cluster if the data dir is empty. Returns True when it was created now."""
        if self.as_root:
            self.data_dir = reachable_data_dir(self.requested_dir, _ensure_user(), self.shared_root)
        if (self.data_dir / "PG_VERSION").exists():
            return False
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.as_root:
            user = _ensure_user()
            shutil.chown(self.data_dir, user.pw_uid, user.pw_gid)
        subprocess.run(
            [str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres", "--auth=trust",
             "--encoding=UTF8", "--no-instructions"],
            check=True, capture_output=True, text=True, cwd=str(self.data_dir),
            **self._demote(),  # type: ignore[arg-type]
        )
        with (self.data_dir / "postgresql.auto.conf").open("a") as conf:
            # Local-dev durability: keep fsync on (chaos drills kill -9 the server) but batch commits.
            # 600 connections: per-tenant pools of several services (an Aurora db.r6g.large writer allows 1,802).
            conf.write("max_connections = 600\nshared_buffers = 128MB\nsynchronous_commit = on\n"
                       "wal_level = replica\nmax_wal_senders = 5\nlisten_addresses = '127.0.0.1'\n")
        return True

    def command(self) -> list[str]:
        """argv that runs the server in the foreground."""
        return [str(self.bin_dir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port),
                "-k", str(self.data_dir)]

    def process_kwargs(self) -> dict[str, object]:
        """Extra arguments for spawning the server process (drop root)."""
        return self._demote()

    def before_start(self) -> None:
        """Run before every (re)start by the supervisor."""
        self.clear_stale_pid()

    def clear_stale_pid(self) -> None:
        """Make way for a new server after an unclean end.

        A postmaster.pid whose process is gone is left to Postgres, which replaces it. One whose pid now
        belongs to another program is removed (Postgres would refuse to start: "lock file already
        exists"). One whose server still runs unsupervised (its runner was killed) is stopped via pg_ctl.
        """
        pid = postmaster_pid(self.data_dir)
        if pid is None:
            return
        serves = _serves(pid, self.data_dir)
        if serves:
            stop_stray(self.data_dir, shared_root=self.shared_root)
        elif serves is False:
            (self.data_dir / "postmaster.pid").unlink(missing_ok=True)
