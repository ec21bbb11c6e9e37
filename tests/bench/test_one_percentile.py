"""One percentile definition: the demos' latency summary and the benchmarks agree (nearest rank)."""

from __future__ import annotations

from stackwright.bench.stats import percentile
from stackwright.local.demokit import RunStats


def test_demo_and_bench_percentiles_agree() -> None:
    values = [float(i) for i in range(1, 101)]
    stats = RunStats(latencies=[v / 1000 for v in values])  # seconds in, milliseconds out
    for q in (50.0, 90.0, 99.0, 99.9, 100.0):
        assert stats.percentile(q) == percentile(values, q)
    assert percentile(values, 99.0) == 99.0  # nearest rank: 99 of 100 samples are <= 99
