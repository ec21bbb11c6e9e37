"""CPU pinning for benches that give the measured part CPUs of its own (stackwright.bench.affinity)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from stackwright.bench import affinity

# A child with three threads besides its main one; on "more" it starts a fourth, and prints its thread count.
CHILD = """
import sys, threading, time
def idle():
    while True:
        time.sleep(0.05)
for _ in range(3):
    threading.Thread(target=idle, daemon=True).start()
print("ready", flush=True)
sys.stdin.readline()
threading.Thread(target=idle, daemon=True).start()
print(threading.active_count(), flush=True)
sys.stdin.readline()
"""


def test_split_gives_the_measured_part_the_upper_half() -> None:
    assert affinity.split({0}) is None
    assert affinity.split({0, 1}) == ({1}, {0})
    assert affinity.split({0, 1, 2}) == ({2}, {0, 1})  # the odd one goes to the rest
    assert affinity.split({0, 1, 2, 3, 8, 9}) == ({3, 8, 9}, {0, 1, 2})


def test_describe_uses_the_cpuset_list_format() -> None:
    assert affinity.describe({1}) == "1"
    assert affinity.describe({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8"


@pytest.mark.skipif(len(affinity.usable()) < 2, reason="needs two usable CPUs to pin anything apart")
def test_pinning_sets_every_thread_and_later_ones_follow_and_isolated_restores() -> None:
    own, rest = affinity.split(affinity.usable()) or (set(), set())
    everything = own | rest
    children = [subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True) for _ in range(2)]
    measured, other = children
    try:
        for child in children:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        with affinity.isolated(lambda: [measured.pid], lambda: [other.pid], own, rest):
            tids = affinity.threads(measured.pid)
            assert len(tids) == 4
            assert all(affinity.allowed(t) == own for t in tids)
            assert all(affinity.allowed(t) == rest for t in affinity.threads(other.pid))
            affinity.pin_self(own)  # as the bench moves itself to the side it measures
            assert measured.stdin is not None and measured.stdout is not None
            measured.stdin.write("\n")
            measured.stdin.flush()
            assert measured.stdout.readline().strip() == "5"
            started = [t for t in affinity.threads(measured.pid) if t not in tids]
            assert len(started) == 1 and affinity.allowed(started[0]) == own  # inherited from its starter
        # Afterwards every thread may use all the CPUs again, this process' own too.
        for pid in (measured.pid, other.pid, os.getpid()):
            assert all(affinity.allowed(t) == everything for t in affinity.threads(pid))
        with pytest.raises(RuntimeError), affinity.isolated(lambda: [measured.pid], lambda: [other.pid], own, rest):
            affinity.pin_self(rest)
            raise RuntimeError("a bench that fails midway")
        for pid in (measured.pid, other.pid, os.getpid()):
            assert all(affinity.allowed(t) == everything for t in affinity.threads(pid))
    finally:
        for child in children:
            child.kill()
            child.wait()


def test_pinning_a_process_that_has_ended_is_no_error() -> None:
    """A PostgreSQL backend may end between being listed and being pinned."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    time.sleep(0.05)
    assert affinity.threads(child.pid) == []
    affinity.pin([child.pid], affinity.usable())
