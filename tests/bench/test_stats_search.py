"""Percentile math, the sustained-rate criteria and the max-rate search (no network, no timing)."""

from __future__ import annotations

import math

import pytest

from stackwright.bench.search import Criteria, find_max_rate, round_rate
from stackwright.bench.stats import StepResult, percentile, percentiles


def test_nearest_rank_percentiles() -> None:
    values = list(range(1, 101))  # 1..100
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 99.9) == 100
    assert percentile(values, 100) == 100
    assert percentile([7.0], 50) == 7.0
    assert math.isnan(percentile([], 50))
    # Nearest rank never interpolates: every answer is an observed sample.
    assert percentile([1, 2, 3, 4], 50) == 2
    assert percentile([1, 2, 3, 4], 51) == 3
    with pytest.raises(ValueError):
        percentile(values, 0)


def test_percentiles_of_unsorted_values_are_labelled() -> None:
    got = percentiles([5, 1, 4, 2, 3] * 200)
    assert got == {"p50": 3, "p90": 5, "p99": 5, "p99.9": 5}


def _step(offered: float, achieved: float, p99: float, sent: int = 1000, ok: int | None = None) -> StepResult:
    return StepResult(offered_rps=offered, duration_s=5, sent=sent, completed=sent, ok=sent if ok is None else ok,
                      achieved_rps=achieved, latency_ms={"p50": p99 / 3, "p99": p99})


def test_criteria_name_the_broken_rule() -> None:
    c = Criteria(max_p99_ms=50, max_error_rate=0.001, min_achieved_ratio=0.95)
    assert c.judge(_step(1000, 990, 10)) == (True, "held")
    held, why = c.judge(_step(1000, 900, 10))
    assert not held and "achieved" in why
    held, why = c.judge(_step(1000, 1000, 10, sent=1000, ok=990))
    assert not held and "error rate" in why
    held, why = c.judge(_step(1000, 1000, 80))
    assert not held and "p99" in why
    assert not c.judge(_step(1000, 1000, math.nan))[0]
    assert not c.judge(StepResult(offered_rps=10, duration_s=1))[0]


def _server(capacity: float):
    """A fake server: fine below capacity, queueing (p99 explodes, throughput caps) above it."""
    calls: list[float] = []

    def run(rate: float) -> StepResult:
        calls.append(rate)
        if rate <= capacity:
            return _step(rate, rate, 5 + 20 * rate / capacity)
        return _step(rate, capacity, 2000)

    return run, calls


@pytest.mark.parametrize("capacity", [180.0, 1234.0, 9000.0])
def test_search_finds_the_capacity_from_a_rough_estimate(capacity: float) -> None:
    run, calls = _server(capacity)
    search = find_max_rate(run, capacity * 1.05, Criteria())
    assert 0.8 * capacity <= search.max_rate <= capacity
    assert search.best is not None and search.best.offered_rps == search.max_rate
    assert all(s.passed == (s.offered_rps <= capacity) for s in search.steps)
    assert len(calls) <= 10  # a bounded number of steps
    repeated = [r for r in set(calls) if calls.count(r) > 1]
    assert all(calls.count(r) == 2 for r in repeated)  # only latency-only breaks are confirmed, once


def test_search_keeps_rising_past_an_underestimate() -> None:
    run, calls = _server(5000.0)
    search = find_max_rate(run, 1000.0, Criteria())
    assert 0.8 * 5000 <= search.max_rate <= 5000
    assert calls[:7] == [600, 800, 900, 1000, 1100, 1250, 1600]  # the fractions, then x1.3 steps


def _spiky_server():
    spiked: set[float] = set()

    def run(rate: float) -> StepResult:
        if rate == 800 and rate not in spiked:  # one stall elsewhere on the machine
            spiked.add(rate)
            return _step(rate, rate, 90)
        return _step(rate, rate, 10) if rate <= 1000 else _step(rate, 1000, 900)

    return run


def test_a_single_latency_spike_is_confirmed_before_it_counts() -> None:
    search = find_max_rate(_spiky_server(), 1000.0, Criteria(), confirm=True)
    assert search.max_rate == 1000
    assert [s.offered_rps for s in search.steps].count(800) == 2
    assert "confirm" in search.steps[1].reason
    assert find_max_rate(_spiky_server(), 1000.0, Criteria(), confirm=False).max_rate == 700  # bisected 600-800


def test_search_steps_down_when_the_estimate_was_far_too_high() -> None:
    run, calls = _server(100.0)
    search = find_max_rate(run, 1000.0, Criteria())
    assert 0 < search.max_rate <= 100
    assert calls[0] == 600  # first try: 60% of the estimate
    assert calls == sorted(calls, reverse=True)[: len(calls)] or search.max_rate > 0


def test_search_reports_zero_when_nothing_holds() -> None:
    search = find_max_rate(lambda r: _step(r, 0, 9999), 500.0, Criteria(), max_down=2)
    assert search.max_rate == 0 and search.best is None
    assert len(search.steps) == 3


def test_round_rate() -> None:
    assert round_rate(1234) == 1250
    assert round_rate(123.4) == 120
    assert round_rate(7.4) == 7
    assert round_rate(0.2) == 1
