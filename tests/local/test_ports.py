"""free_port never hands out one port twice in a process: a run picks all its ports before any is bound, and
the OS offers a just-probed port again (CI at 553506e: fastapi-app's api got 36311 as both its port and its
platform port and never started)."""

from __future__ import annotations

import socket

from stackwright.local.ports import free_port


def test_ports_handed_out_are_never_repeated() -> None:
    # ~28,000 ephemeral ports: 2,000 draws of the OS' pick repeat one almost surely (birthday bound), and did
    # before this rule.
    ports = [free_port() for _ in range(2000)]
    assert len(set(ports)) == len(ports)


def test_a_port_handed_out_is_free() -> None:
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", port))
