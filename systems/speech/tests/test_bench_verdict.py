"""The speech benchmark's latency verdict (systems/speech/bench.py), on fixed rows: no system runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stackwright.plugins import load_plugin
from stackwright.spec import load_system

SPEC = Path(__file__).resolve().parents[1] / "system.yaml"


def _rows(*p99s: float | None) -> dict[str, dict[str, Any]]:
    return {str(n): {"p99_s": p99} for n, p99 in enumerate(p99s, 1)}


def test_a_miss_at_a_smaller_count_caps_the_largest_n() -> None:
    largest = load_plugin(load_system(SPEC), "bench").largest_streams_within
    # The 13:05 run of 2026-11-30: N = 3 missed (2.51 s) and N = 4 met; the old verdict said N = 4.
    assert largest(_rows(0.81, 1.61, 2.51, 1.42), 2.0) == 2
    assert largest(_rows(0.41, 0.80, 1.01, 1.20), 2.0) == 4
    assert largest(_rows(2.03, 1.5), 2.0) == 0
    assert largest(_rows(0.5, None, 0.5), 2.0) == 1
