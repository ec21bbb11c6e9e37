"""As root, Postgres runs as the unprivileged ``pgserver`` user. A venv (so pgserver's binaries) and a project
in a home that user cannot traverse (/root is 0700) must still work, without loosening that home."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from stackwright.local.backing import LocalPostgres
from stackwright.local.backing.postgres import pgserver_install
from stackwright.local.ports import free_port, port_in_use

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="only root runs Postgres as another user")]


@pytest.fixture
def shared() -> Iterator[Path]:
    """Stands in for /var/lib/stackwright: a root-owned folder the server user can reach (pytest's own
    temp folders sit in the 0700 /tmp/pytest-of-root)."""
    path = Path(tempfile.mkdtemp(prefix="stackwright-shared-", dir="/tmp"))
    path.chmod(0o755)
    yield path / "stackwright"
    shutil.rmtree(path, ignore_errors=True)


def _copy_pgserver(site_packages: Path) -> Path:
    """pgserver as pip lays it out: the package (pginstall inside) next to the libraries auditwheel bundled."""
    source = pgserver_install()
    shutil.copytree(source, site_packages / "pgserver" / "pginstall", symlinks=True)
    libs = source.parent.parent / "pgserver.libs"
    if libs.is_dir():
        shutil.copytree(libs, site_packages / "pgserver.libs", symlinks=True)
    return site_packages / "pgserver" / "pginstall"


async def _select_one(url: str) -> int:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        return int(await conn.fetchval("SELECT 1"))
    finally:
        await conn.close()


def test_binaries_and_data_in_an_untraversable_home_still_run_without_loosening_it(tmp_path: Path,
                                                                                   shared: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o700)
    install = _copy_pgserver(home / "venv" / "site-packages")
    project_data = home / "project" / ".stackwright" / "sys" / "postgres"

    pg = LocalPostgres(project_data, free_port(), install=install, shared_root=shared)
    assert pg.init()
    assert stat.S_IMODE(home.stat().st_mode) == 0o700, "the home was loosened"
    assert pg.bin_dir.is_relative_to(shared) and pg.data_dir.is_relative_to(shared)
    assert project_data.is_symlink() and project_data.resolve() == pg.data_dir  # the pointer

    proc = subprocess.Popen(pg.command(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=pg.data_dir,
                            **pg.process_kwargs())  # type: ignore[call-overload]
    try:
        deadline = time.monotonic() + 60
        while not port_in_use(pg.port):
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.1)
        # The port opens before the server has finished starting ("the database system is starting up").
        while True:
            try:
                assert asyncio.run(_select_one(pg.url)) == 1
                break
            except asyncpg.exceptions.CannotConnectNowError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)

    # A second run finds the same copy and the same cluster through the pointer.
    again = LocalPostgres(project_data, free_port(), install=install, shared_root=shared)
    assert not again.init() and again.data_dir == pg.data_dir and again.bin_dir == pg.bin_dir


def test_concurrent_runs_share_one_complete_copy_of_the_binaries(tmp_path: Path, shared: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from stackwright.local.backing.postgres import _ensure_user, usable_install

    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    home.chmod(0o700)
    install = _copy_pgserver(home / "site-packages")
    user = _ensure_user()
    with ThreadPoolExecutor(4) as pool:
        copies = set(pool.map(lambda _: usable_install(install, user, shared), range(4)))
    assert len(copies) == 1
    (copy,) = copies
    assert (copy / "bin" / "postgres").exists()
    assert [p.name for p in shared.iterdir()] == [copy.parents[1].name]  # no half-copies left behind
