"""Which CPUs processes may run on (Linux ``sched_setaffinity``): for a bench that gives the part it measures
CPUs of its own, as production gives it machines of its own, and the load generator and the rest others.

Affinity is per thread; a thread inherits it from the thread that starts it. Pinning a process here sets every
thread it has now, so the threads it starts later follow. Processes a pinned one starts later (PostgreSQL's
backends) inherit it too.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator


def usable() -> set[int]:
    """The CPUs this process may run on (its cpuset in a container)."""
    return set(os.sched_getaffinity(0))


def split(cpus: set[int]) -> tuple[set[int], set[int]] | None:
    """``cpus`` in two halves, ``(own, rest)``: the measured part gets the upper half (the odd one out goes to
    ``rest``, where the load generator, the edge and the databases share). None for fewer than 2 CPUs."""
    ordered = sorted(cpus)
    if len(ordered) < 2:
        return None
    half = len(ordered) // 2
    return set(ordered[-half:]), set(ordered[:-half])


def threads(pid: int) -> list[int]:
    """The thread ids of a process (empty if it is gone)."""
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []


def allowed(tid: int) -> set[int]:
    """The CPUs one thread may run on."""
    return set(os.sched_getaffinity(tid))


def pin(pids: Iterable[int], cpus: set[int]) -> None:
    """Let every thread of each process in ``pids`` run only on ``cpus``. A thread or process that ended
    meanwhile is skipped; any other refusal is raised (``PermissionError``: not ours; ``OSError`` EINVAL: none
    of ``cpus`` is one the process may use)."""
    for pid in pids:
        for tid in threads(pid):
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(tid, cpus)


def pin_self(cpus: set[int]) -> None:
    """:func:`pin` for this process."""
    pin([os.getpid()], cpus)


@contextlib.contextmanager
def isolated(alone: Callable[[], Iterable[int]], others: Callable[[], Iterable[int]], own: set[int],
             rest: set[int]) -> Iterator[None]:
    """Run the block with the processes ``alone()`` lists on ``own`` and those ``others()`` lists on ``rest``;
    afterwards every process they list then (PostgreSQL may have started backends meanwhile) and this one may
    use all of :func:`usable` again, whatever happened."""
    everything = usable() | own | rest
    try:
        pin(alone(), own)
        pin(others(), rest)
        yield
    finally:
        pin([*alone(), *others(), os.getpid()], everything)


def describe(cpus: set[int]) -> str:
    """``{0, 1, 2, 5}`` -> ``"0-2,5"`` (the cpuset list format)."""
    ordered = sorted(cpus)
    runs: list[str] = []
    start = prev = None
    for c in [*ordered, None]:
        if c is not None and prev is not None and c == prev + 1:
            prev = c
            continue
        if start is not None:
            runs.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = c
    return ",".join(runs)

