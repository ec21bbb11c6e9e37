"""Tell whether the other end closed an idle connection before the event loop has read the close.

A keep-alive connection that sat idle may have been closed by the server (a restart, a keep-alive expiry)
without the loop having run the read callback yet. Sending a request that must not be re-sent (a queue send,
a POST) into it would fail after the fact; one non-blocking peek at the socket finds out first.
"""

from __future__ import annotations

import asyncio
import socket

# As a plain int: ``socket.MSG_PEEK | socket.MSG_DONTWAIT`` combines two IntFlag members in Python (enum's
# __or__ and a new member lookup), which py-spy showed costing more than the peek's syscall in the edge gateway
# (~2% of its samples at a few hundred proxied requests per second).
_PEEK = int(socket.MSG_PEEK | socket.MSG_DONTWAIT)


class PeerProbe:
    """A duplicate of a transport's socket descriptor, only ever used to peek (one syscall, ~1 µs)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = socket.fromfd(sock.fileno(), sock.family, sock.type)

    @classmethod
    def of(cls, transport: asyncio.BaseTransport) -> PeerProbe | None:
        """A probe for ``transport``'s socket, or None when it has none (then nothing can be told)."""
        sock = transport.get_extra_info("socket")
        return cls(sock) if sock is not None else None

    def peer_closed(self) -> bool:
        """True when the other end has closed the connection (EOF) or it failed."""
        try:
            return self._sock.recv(1, _PEEK) == b""
        except BlockingIOError:
            return False  # nothing to read: open
        except OSError:
            return True

    def close(self) -> None:
        """Close the duplicate descriptor (the connection itself is unaffected)."""
        self._sock.close()
