"""Gunicorn settings for running the vendored peer outside Docker (see README.md here).

The peer's app connects to ``Redis(host="redis")`` with the default port: inside docker-compose a container
named ``redis``. Here each gunicorn worker, after the fork and before the app is imported, points that host
at the local Redis whose port is in ``PEER_REDIS_PORT``. Nothing else about the peer changes; its Dockerfile
CMD (workers, keep-alive, logging) is given on the gunicorn command line by ``launch.py``.
"""

from __future__ import annotations

import os
from typing import Any


def post_fork(server: Any, worker: Any) -> None:
    """Make ``Redis(host="redis")`` reach 127.0.0.1:$PEER_REDIS_PORT in this worker."""
    del server, worker
    import redis

    port = int(os.environ["PEER_REDIS_PORT"])
    original = redis.Redis.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("host") == "redis":
            kwargs["host"], kwargs["port"] = "127.0.0.1", port
        original(self, *args, **kwargs)

    redis.Redis.__init__ = init  # type: ignore[method-assign]
