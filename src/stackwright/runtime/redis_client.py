"""The Redis client services get from ``svc.redis()``: simple commands on one multiplexed connection, the rest
(pipelines, pub/sub, blocking reads, registered scripts, INFO, ...) on redis-py, behind one object.

Services keep writing redis-py code (``await cache.get(k)``, ``cache.pubsub()``, ``cache.pipeline()``); the
commands a request path issues most are the ones served by :class:`MultiplexedRedis`, about 15x cheaper in CPU.

Every command fails with a TimeoutError (a 503 from the service) when Redis has not answered within
``REDIS_TIMEOUT_S`` (default 5 s), so a blocking command (BLPOP, XREAD ... BLOCK) must block for less than that
(:func:`block_ms`); pub/sub's blocking reads (``listen()``, ``get_message(timeout=None)``) are exempt in redis-py.
"""

from __future__ import annotations

from typing import Any

from .redis_mux import COMMAND_TIMEOUT_S, CONNECT_TIMEOUT_S, MultiplexedRedis

# Same names, arguments and return values as redis-py's (decode_responses=True).
FAST_COMMANDS = ("ping", "get", "set", "delete", "exists", "expire", "incr", "hgetall", "hincrby", "sadd", "scard",
                 "xadd", "xlen", "eval", "evalsha")


def redis_py_options(command_timeout_s: float = COMMAND_TIMEOUT_S, *, retries: int, backoff_cap_s: float
                     ) -> dict[str, Any]:
    """Keyword arguments for a redis-py connection pool made by the runtime: a Redis that stops answering
    (a stopped or wedged process, a dropped network path) fails a command after ``command_timeout_s``
    seconds (``socket_timeout``; connecting: :data:`CONNECT_TIMEOUT_S`) with redis-py's ``TimeoutError``,
    which the service answers as 503 problem+json, where a command without a timeout waited forever.

    ``retries`` attempts (exponential backoff up to ``backoff_cap_s`` seconds) ride out a restart, whose
    errors are ``ConnectionError`` (connection closed or refused). A timed-out command is not repeated:
    redis-py's Retry retries timeouts too unless told otherwise, which turned one 5 s timeout into 30 s and
    more (measured against a SIGSTOPped Redis). Blocking reads must block for less than ``command_timeout_s``
    (see :func:`block_ms`)."""
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError

    return {
        "socket_timeout": command_timeout_s,
        "socket_connect_timeout": min(CONNECT_TIMEOUT_S, command_timeout_s),
        "retry": Retry(ExponentialBackoff(cap=backoff_cap_s, base=0.05), retries=retries,
                       supported_errors=(RedisConnectionError,)),
        "retry_on_error": [RedisConnectionError],
    }


def block_ms(wait_seconds: float, command_timeout_s: float = COMMAND_TIMEOUT_S) -> int:
    """The BLOCK (milliseconds) of a blocking read (XREADGROUP, BLPOP, ...) that waits up to ``wait_seconds``,
    capped one second below the socket timeout (at least half of it) so the server answers, empty, before
    the client gives up on the connection: a caller asking for longer gets its empty answer sooner."""
    cap_s = max(command_timeout_s - 1.0, command_timeout_s / 2)
    return max(0, int(min(wait_seconds, cap_s) * 1000))


class RedisClient:
    """``fast`` serves :data:`FAST_COMMANDS`; every other attribute is redis-py's (``full``).

    Without ``fast`` (a URL the multiplexed client does not speak, e.g. ``unix://``) everything is redis-py's.
    ``fast`` may be shared (one connection per Redis per process) and is closed by its owner, not here.
    """

    def __init__(self, full: Any, fast: MultiplexedRedis | None) -> None:
        self.fast = fast
        self.full = full
        if fast is not None:
            for name in FAST_COMMANDS:
                setattr(self, name, getattr(fast, name))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.full, name)

    async def aclose(self) -> None:
        """Close the redis-py pool."""
        await self.full.aclose()
