"""The open-loop schedule shared by the benchmark generator and the drills' sender."""

from __future__ import annotations

import asyncio
import time

import pytest

from stackwright.bench.openloop import open_loop


async def test_fires_each_index_at_its_due_time_without_waiting() -> None:
    fired: list[tuple[int, float]] = []
    t0 = time.perf_counter()
    count = await open_loop(200.0, lambda i, due: fired.append((i, due)), indices=range(3, 40, 4), t0=t0)
    assert count == 10
    assert [i for i, _ in fired] == list(range(3, 40, 4))
    # The due time is the schedule's, not when the callback happened to run (no coordinated omission).
    assert [due for _, due in fired] == [t0 + i * (1.0 / 200.0) for i in range(3, 40, 4)]


async def test_unbounded_schedule_ends_on_stop() -> None:
    stop = asyncio.Event()
    fired: list[int] = []

    def fire(i: int, due: float) -> None:
        fired.append(i)
        if i == 25:
            stop.set()

    assert await open_loop(1000.0, fire, stop=stop) == 26
    assert fired == list(range(26))


async def test_refuses_a_rate_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match="rate must be positive"):
        await open_loop(0.0, lambda i, due: None, indices=[0])
