"""Free TCP ports on the loopback interface."""

from __future__ import annotations

import socket

# Ports this process has handed out: a run picks every process' ports before any of them binds, and the OS may
# offer a port again as soon as the probing socket is closed (in CI an api was given 36311 as both its port and
# its platform port, and exited "--platform-port must differ from --port" until `up` gave up).
_handed_out: set[int] = set()


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it) and that this process has not handed out before.

    Raises OSError when 1,000 tries found none (the ephemeral range is exhausted)."""
    for _ in range(1000):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise OSError("no free TCP port on 127.0.0.1 that this process has not handed out already")


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0
