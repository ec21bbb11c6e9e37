"""The open-loop schedule shared by the benchmark's generator and the fault drills.

Open loop: request ``i`` is due at ``t0 + i / rate`` whatever happened to the earlier ones, so a stalled
server cannot slow the sender down and hide the stall (coordinated omission). :func:`open_loop` only
decides *when* each request is due and hands it to a ``fire`` callback; what firing means is the caller's:

* :mod:`stackwright.bench.loadgen` queues pre-rendered bytes for its raw connections (high rates, latency
  percentiles from the due time);
* :class:`OpenLoop` (the drills' sender, re-exported by :mod:`stackwright.local.chaos`) starts one task per
  request with any async request function and keeps a timestamped :class:`Outcome` per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

#: Shortest sleep between two batches, seconds. The event loop's timers have 1 ms resolution: sleeping
#: less would busy-wait and take CPU from the server on a small machine. Requests due within one tick go
#: out together; their lateness shows as send lag.
MIN_TICK_S = 0.001
_now = time.perf_counter  # loop.time() has only 1 ms resolution on uvloop


async def open_loop(rate: float, fire: Callable[[int, float], None], *, indices: Iterable[int] | None = None,
                    t0: float | None = None, stop: asyncio.Event | None = None,
                    flush: Callable[[], None] | None = None) -> int:
    """Call ``fire(i, due)`` for each request index when it is due, ``due = t0 + i / rate`` on the
    :func:`time.perf_counter` clock (``t0`` default: now), never waiting for earlier requests' answers.

    ``indices``: the requests to send, ascending (default 0, 1, 2, ... until ``stop`` is set); ``stop``: an
    event that ends the schedule early; ``flush``: called after each batch of due requests (the generator
    writes them out then). ``rate`` is in requests per second (> 0). Returns how many were fired."""
    if rate <= 0:
        raise ValueError(f"rate must be positive (got {rate})")
    interval = 1.0 / rate
    start = _now() if t0 is None else t0
    pending = iter(itertools.count() if indices is None else indices)
    upcoming = next(pending, None)
    fired = 0
    def stopped() -> bool:
        return stop is not None and stop.is_set()

    while upcoming is not None and not stopped():
        now = _now()
        while upcoming is not None and not stopped():
            due = start + upcoming * interval
            if due > now:
                break
            fire(upcoming, due)
            fired += 1
            upcoming = next(pending, None)
        if flush is not None:
            flush()
        if upcoming is None or stopped():
            break
        wait = max(start + upcoming * interval - _now(), MIN_TICK_S)
        if stop is None:
            await asyncio.sleep(wait)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
    return fired


@dataclass
class Outcome:
    """One request of an :class:`OpenLoop` run."""

    index: int
    sent_at: float  # wall clock (time.time()) when the request started
    status: int | None = None  # None: transport error / timeout
    body: Any = None
    latency_s: float = 0.0  # from the start of the request to its answer or error
    error: str | None = None  # the exception's class name when the request raised


@dataclass
class OpenLoop:
    """Send ``request(i)`` at ``rate`` requests per second until stopped, never waiting for earlier answers
    (the :func:`open_loop` schedule), keeping every request's :class:`Outcome` in :attr:`outcomes` (in index
    order). ``request`` returns ``(status, body)``; an exception it raises is recorded as the outcome's error."""

    rate: float
    request: Callable[[int], Awaitable[tuple[int, Any]]]
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def _one(self, i: int) -> None:
        out = Outcome(i, time.time())
        self.outcomes.append(out)
        t0 = time.perf_counter()
        try:
            out.status, out.body = await self.request(i)
        except Exception as exc:  # transport errors are outcomes, not failures of the drill
            out.error = exc.__class__.__name__
        out.latency_s = time.perf_counter() - t0

    def _fire(self, i: int, due: float) -> None:
        task = asyncio.create_task(self._one(i))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self) -> None:
        """Fire requests on schedule until :meth:`stop`, then wait for the ones in flight."""
        await open_loop(self.rate, self._fire, stop=self._stop)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def stop(self) -> None:
        """End the schedule; :meth:`run` returns once the requests in flight are answered."""
        self._stop.set()
