"""A real SMTP server for local runs: aiosmtpd with its Maildir handler, so every message a service
sends is kept as one file under the system's state folder (read back by
:func:`stackwright.local.mailbox.read_mailbox`). It listens on 127.0.0.1 only and relays nothing."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

#: Largest message accepted, in bytes (aiosmtpd's SIZE extension; its own default is 32 MiB).
MAX_MESSAGE_BYTES = 10 * 1024 * 1024


class LocalSMTP:
    """Owns the Maildir folder; builds the ``aiosmtpd`` command line for the supervisor to run."""

    def __init__(self, maildir: Path, port: int) -> None:
        self.maildir = maildir.resolve()
        self.port = port

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        # -n: do not try to setuid to "nobody" (we are not root, or must not drop to it as root).
        return [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{self.port}",
                "-s", str(MAX_MESSAGE_BYTES), "-c", "aiosmtpd.handlers.Mailbox", str(self.maildir)]


async def smtp_ready(port: int) -> bool:
    """True once the server answers with its 220 greeting."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1.0)
    except OSError:  # TimeoutError is an OSError
        return False
    try:
        greeting = await asyncio.wait_for(reader.readline(), 1.0)
        return greeting.startswith(b"220")
    finally:
        writer.close()
