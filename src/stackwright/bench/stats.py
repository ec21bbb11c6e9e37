"""Latency statistics: nearest-rank percentiles over recorded samples, and one step's summary."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (the smallest value with at least ``q``% of samples at or below it).

    ``sorted_values`` must be sorted ascending. Returns NaN for no samples. Nearest rank never
    interpolates, so p99.9 of 1,000 samples is the largest one — an observed latency, not a blend.
    """
    n = len(sorted_values)
    if n == 0:
        return float("nan")
    if not 0 < q <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {q}")
    rank = math.ceil(q / 100.0 * n - 1e-9)
    return float(sorted_values[min(n, max(1, rank)) - 1])


def percentiles(values: Sequence[float], qs: Sequence[float] = PERCENTILES) -> dict[str, float]:
    """``{"p50": ..., "p99.9": ...}`` of unsorted values."""
    ordered = sorted(values)
    return {_label(q): percentile(ordered, q) for q in qs}


def _label(q: float) -> str:
    return f"p{q:g}"


@dataclass
class StepResult:
    """One fixed-rate step: what was offered, what came back, and how long it took (from intended send)."""

    offered_rps: float
    duration_s: float
    sent: int = 0
    completed: int = 0
    ok: int = 0
    errors: int = 0  # transport errors and timeouts
    statuses: dict[str, int] = field(default_factory=dict)
    achieved_rps: float = 0.0  # good responses per second over the measured window
    throughput_rps: float = 0.0  # good responses per second from the first due time to the last good answer
    latency_ms: dict[str, float] = field(default_factory=dict)
    max_latency_ms: float = float("nan")
    send_lag_ms: dict[str, float] = field(default_factory=dict)  # generator lateness vs. schedule
    connections: int = 0
    cpu_ms_per_request: dict[str, float] = field(default_factory=dict)  # per server process
    cpu_percent: dict[str, float] = field(default_factory=dict)
    generator_cpu_percent: float = float("nan")
    passed: bool | None = None
    reason: str = ""
    samples: list[str] = field(default_factory=list)  # a few bodies of unexpected answers

    @property
    def error_rate(self) -> float:
        return 0.0 if self.sent == 0 else (self.sent - self.ok) / self.sent

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["error_rate"] = round(self.error_rate, 6)
        return _clean(out)


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf become None, floats rounded to 3 places."""
    if isinstance(value, float):
        return None if not math.isfinite(value) else round(value, 3)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value
