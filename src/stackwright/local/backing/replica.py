"""Physical streaming replicas of a :class:`~.postgres.LocalPostgres`, for regions and DR drills.

One machine plays several regions: the primary region's server is an ordinary ``LocalPostgres``; every
other region gets a :class:`LocalReplica`, a ``pg_basebackup`` of the primary (``-X stream``, with its
own physical replication slot so the primary keeps the WAL it has not received yet) that starts as a hot
standby streaming from the primary. The binaries are pgserver's (``pg_basebackup``, ``pg_rewind``), run
as the same unprivileged user and from the same reachable copy as the primary (see ``postgres.py``).

What it offers, all against real servers:

* :func:`replication_conf` - settings a primary needs before its first start (``hot_standby``, slots,
  ``wal_log_hints`` so a failed primary can be ``pg_rewind``-ed instead of copied again);
* :class:`LocalReplica` - ``init()`` clones the primary, ``command()`` runs the standby;
* :func:`promote` - ``pg_promote()``, the standby becomes a writable primary on a new timeline;
* :func:`lag` - how far a standby is behind: bytes of WAL not replayed and seconds since the last
  replayed commit when bytes are outstanding (0 when caught up);
* :func:`set_synchronous` - which standbys a commit waits for (``synchronous_standby_names``);
* :func:`rebuild_as_replica` - turn a failed old primary into a standby of the new one: ``pg_rewind``
  first, a fresh base backup when rewinding is impossible.

The replication user is ``postgres`` over 127.0.0.1 with trust (initdb's default pg_hba.conf already
admits replication from 127.0.0.1 with ``--auth=trust``): nothing here listens beyond loopback.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from .postgres import SHARED_ROOT, LocalPostgres, _ensure_user, reachable_data_dir

#: Settings written into a primary's postgresql.auto.conf before its first start. ``wal_log_hints`` lets
#: pg_rewind resynchronise a crashed primary with the promoted standby; slots keep WAL for each standby;
#: ``wal_keep_size`` keeps the WAL since the divergence point, which a rewound old primary replays from
#: the new one (its slot there is created only after the failover, too late to hold that WAL).
REPLICATION_CONF = ("hot_standby = on\nmax_replication_slots = 10\nwal_log_hints = on\nwal_keep_size = 512MB\n"
                    "hot_standby_feedback = on\nwal_receiver_status_interval = 1s\n")


class ReplicationError(RuntimeError):
    """A replica could not be made, promoted or rebuilt; the message carries the tool's output."""


def replication_conf(pg: LocalPostgres) -> None:
    """Make ``pg`` (initialised, not yet started) ready to serve streaming standbys. Idempotent."""
    conf = pg.data_dir / "postgresql.auto.conf"
    text = conf.read_text() if conf.exists() else ""
    if "wal_log_hints" not in text:
        with conf.open("a") as f:
            f.write(REPLICATION_CONF)


def without_socket(argv: list[str]) -> list[str]:
    """``argv`` of a ``postgres`` command with Unix sockets turned off (``-k ''``): TCP only."""
    out = list(argv)
    if "-k" in out:
        out[out.index("-k") + 1] = ""
    return out


def slot_name(region: str) -> str:
    """Replication slot (and application_name) of a region's standby: [a-z0-9_] only, as Postgres wants."""
    return "region_" + "".join(c if c.isalnum() else "_" for c in region.lower())


def _run(argv: list[str], pg: LocalPostgres, what: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, cwd="/",
                          **pg._demote())  # type: ignore[call-overload]
    if done.returncode != 0:
        raise ReplicationError(f"{what} failed ({done.returncode}): {(done.stderr or done.stdout).strip()}")
    return done  # type: ignore[no-any-return]


class LocalReplica(LocalPostgres):
    """A hot standby of the server on ``primary_port``, streaming through slot :func:`slot_name` (region).

    ``init()`` clones the primary once (an existing standby data directory is kept, and resumes streaming
    from where it stopped); ``command()``/``process_kwargs()``/``before_start()`` are the primary's.
    """

    def __init__(self, data_dir: Path, port: int, *, primary_port: int, region: str,
                 install: Path | None = None, shared_root: Path = SHARED_ROOT) -> None:
        super().__init__(data_dir, port, install=install, shared_root=shared_root)
        self.primary_port = primary_port
        self.region = region
        self.slot = slot_name(region)

    def command(self) -> list[str]:
        """argv of the standby: TCP on 127.0.0.1 only, no Unix socket in the data directory (pg_rewind copies
        a source's data directory file by file and cannot read a socket there)."""
        return without_socket(super().command())

    def init(self) -> bool:
        """Clone the primary with ``pg_basebackup -R -X stream -C -S slot``. True when cloned now."""
        if self.as_root:
            self.data_dir = reachable_data_dir(self.requested_dir, _ensure_user(), self.shared_root)
        if (self.data_dir / "PG_VERSION").exists():
            return False
        self._fresh_dir()
        argv = [str(self.bin_dir / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(self.primary_port),
                "-U", "postgres", "-D", str(self.data_dir), "-R", "-X", "stream", "-S", self.slot,
                "-c", "fast"]  # an immediate checkpoint: a spread one makes the clone wait minutes
        try:
            _run([*argv, "-C"], self, "pg_basebackup")
        except ReplicationError as exc:
            if "already exists" not in str(exc):
                raise
            # The slot survives a deleted standby (a previous run): reuse it rather than fail.
            self._fresh_dir()
            _run(argv, self, "pg_basebackup")
        self.follow(self.primary_port)
        return True

    def _fresh_dir(self) -> None:
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)
        self.data_dir.mkdir(parents=True)
        self.data_dir.chmod(0o700)  # Postgres refuses a data directory others can read
        if self.as_root:
            user = _ensure_user()
            shutil.chown(self.data_dir, user.pw_uid, user.pw_gid)

    def follow(self, primary_port: int) -> None:
        """Point this (stopped) standby at the primary on ``primary_port``: standby.signal + conninfo.

        Later lines of postgresql.auto.conf win, so appending is enough; application_name is the slot name,
        the name ``synchronous_standby_names`` refers to.
        """
        self.primary_port = primary_port
        (self.data_dir / "standby.signal").touch()
        with (self.data_dir / "postgresql.auto.conf").open("a") as conf:
            conf.write(f"primary_conninfo = '{conninfo(primary_port, self.region)}'\n"
                       f"primary_slot_name = '{self.slot}'\n")
        if self.as_root:
            user = _ensure_user()
            for path in (self.data_dir / "standby.signal", self.data_dir / "postgresql.auto.conf"):
                shutil.chown(path, user.pw_uid, user.pw_gid)


async def promote(url: str, *, wait_s: int = 30) -> None:
    """Promote the standby at ``url`` (``pg_promote(wait => true)``); raises ReplicationError if it did not."""
    conn = await asyncpg.connect(url, timeout=5)
    try:
        if not await conn.fetchval("SELECT pg_is_in_recovery()"):
            return  # already a primary
        if not await conn.fetchval("SELECT pg_promote(true, $1)", wait_s):
            raise ReplicationError(f"{url}: not promoted within {wait_s} s")
    finally:
        await conn.close()


async def received_lsn(url: str) -> int:
    """How much WAL the standby at ``url`` has received (bytes since 0/0; its replay position when it
    streams no more): the standby with the greatest one is the most advanced, the one to promote."""
    conn = await asyncpg.connect(url, timeout=3)
    try:
        return int(await conn.fetchval(
            "SELECT pg_wal_lsn_diff(coalesce(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), '0/0')::bigint"))
    finally:
        await conn.close()


async def create_slot(url: str, slot: str) -> None:
    """Create physical replication slot ``slot`` on the primary at ``url`` unless it exists."""
    conn = await asyncpg.connect(url, timeout=5)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", slot):
            await conn.execute("SELECT pg_create_physical_replication_slot($1)", slot)
    finally:
        await conn.close()


async def set_synchronous(url: str, standbys: list[str], *, count: int = 1) -> None:
    """Make commits on the primary at ``url`` wait until ``count`` of ``standbys`` (slot names) have the WAL
    (``ANY count (...)``, quorum commit); an empty list makes commits asynchronous again."""
    await _alter_system(url, "synchronous_standby_names", f"ANY {count} ({', '.join(standbys)})" if standbys else "")


async def _alter_system(url: str, setting: str, value: str) -> None:
    """``ALTER SYSTEM SET setting = 'value'`` on the server at ``url``, then reload its configuration."""
    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute(f"ALTER SYSTEM SET {setting} = '{value}'")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()


def conninfo(primary_port: int, region: str) -> str:
    """``primary_conninfo`` of region ``region``'s standby following the server on ``primary_port``."""
    return f"host=127.0.0.1 port={primary_port} user=postgres application_name={slot_name(region)}"


async def _set_conninfo(replica_url: str, value: str) -> None:
    await _alter_system(replica_url, "primary_conninfo", value)


async def partition(replica_url: str) -> None:
    """Cut the standby at ``replica_url`` off from its primary, as a broken inter-region link would: its WAL
    receiver stops (empty ``primary_conninfo``) while it keeps serving reads. Undo with :func:`heal`."""
    await _set_conninfo(replica_url, "")


async def heal(replica_url: str, primary_port: int, region: str) -> None:
    """Reconnect a partitioned standby; it resumes from its slot, so nothing in between is skipped."""
    await _set_conninfo(replica_url, conninfo(primary_port, region))


@dataclass(frozen=True)
class Lag:
    """How far one standby is behind its primary.

    ``bytes``: WAL written on the primary and not yet replayed on the standby (None when the primary is
    unreachable); ``seconds``: 0 when caught up, else the age of the last transaction the standby replayed
    (None when it has replayed none yet); ``streaming``: the standby's WAL receiver is connected.
    """

    bytes: int | None
    seconds: float | None
    streaming: bool
    in_recovery: bool


async def lag(replica_url: str, primary_url: str | None) -> Lag:
    """Measure the standby at ``replica_url`` against the primary at ``primary_url`` (either may be down:
    an unreachable primary gives ``bytes=None``; an unreachable standby raises OSError/asyncpg errors)."""
    conn = await asyncpg.connect(replica_url, timeout=3)
    try:
        row = await conn.fetchrow(
            "SELECT pg_is_in_recovery() AS rec, pg_last_wal_replay_lsn()::text AS replay,"
            " extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 AS age,"
            " (SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming') AS streaming")
    finally:
        await conn.close()
    assert row is not None
    if not row["rec"]:
        return Lag(bytes=0, seconds=0.0, streaming=False, in_recovery=False)
    behind: int | None = None
    if primary_url is not None:
        with contextlib.suppress(OSError, asyncpg.PostgresError, TimeoutError):
            p = await asyncpg.connect(primary_url, timeout=3)
            try:
                behind = int(await p.fetchval(
                    "SELECT greatest(pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn), 0)::bigint",
                    row["replay"]))
            finally:
                await p.close()
    seconds = 0.0 if behind == 0 else row["age"]
    return Lag(bytes=behind, seconds=seconds, streaming=bool(row["streaming"]), in_recovery=True)


def rebuild_as_replica(old: LocalPostgres, *, new_primary_port: int, region: str) -> tuple[LocalReplica, str]:
    """Turn the stopped, failed old primary ``old`` into a standby of the server on ``new_primary_port``.

    ``pg_rewind`` first (rewinds only the blocks that diverged after the promotion; it recovers a crashed
    target itself); if that fails, a fresh base backup. Returns the replica and ``"pg_rewind"`` or
    ``"basebackup"``. The caller creates the slot on the new primary (:func:`create_slot`) beforehand.
    """
    replica = LocalReplica(old.requested_dir, old.port, primary_port=new_primary_port, region=region,
                           install=old._install, shared_root=old.shared_root)
    replica.data_dir = old.data_dir
    # A server killed with its Unix socket in the data directory left the socket behind; the standby runs
    # without one (LocalReplica.command), and pg_rewind would later read it as a file when this is its source.
    for stale in old.data_dir.glob(".s.PGSQL.*"):
        stale.unlink(missing_ok=True)
    try:
        _run([str(replica.bin_dir / "pg_rewind"), "--target-pgdata", str(old.data_dir),
              f"--source-server=host=127.0.0.1 port={new_primary_port} user=postgres dbname=postgres"],
             replica, "pg_rewind")
        replica.follow(new_primary_port)
        return replica, "pg_rewind"
    except ReplicationError as exc:
        rewind_error = str(exc)
        shutil.rmtree(old.data_dir, ignore_errors=True)
        replica.init()
        return replica, f"basebackup ({rewind_error[-300:]})"


__all__ = [
    "Lag",
    "LocalReplica",
    "ReplicationError",
    "create_slot",
    "lag",
    "promote",
    "rebuild_as_replica",
    "received_lsn",
    "replication_conf",
    "set_synchronous",
    "slot_name",
]
