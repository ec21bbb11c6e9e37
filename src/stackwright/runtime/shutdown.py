"""Graceful shutdown state: once SIGTERM arrives, readiness fails so load balancers stop sending traffic."""

from __future__ import annotations

_draining = False


def start_draining() -> None:
    """Mark this process as shutting down (readiness answers 503 from now on)."""
    global _draining
    _draining = True


def is_draining() -> bool:
    return _draining


def reset() -> None:
    """Back to serving (an app starting up in this process is not draining)."""
    global _draining
    _draining = False
