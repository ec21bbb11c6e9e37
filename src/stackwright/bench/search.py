"""Finding the maximum sustainable rate: offered rates go up until a step breaks the criteria.

A step *holds* when (1) at least 95% of the offered rate came back as expected answers, (2) no more than
0.1% of requests failed (unexpected status, transport error, timeout) and (3) p99 latency, measured from
the intended send time, stayed at or under the threshold. The search starts from an estimate C of the
capacity (the caller's short ramp), tries rising fractions of C, keeps rising while steps hold, and bisects
once between the last rate that held and the first that broke.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .stats import StepResult

UP = (0.6, 0.8, 0.9, 1.0, 1.1, 1.25)
GROW = 1.3  # past the last fraction, keep multiplying by this while steps hold
DOWN = 0.65  # factor when even the first rate breaks
CONFIRM_ABOVE = 0.8  # a break is run again when the step still delivered this share of the offered rate


@dataclass(frozen=True)
class Criteria:
    """When a fixed-rate step counts as sustained."""

    max_p99_ms: float = 50.0
    max_error_rate: float = 0.001
    min_achieved_ratio: float = 0.95

    def judge(self, step: StepResult) -> tuple[bool, str]:
        """(held, reason) for one step; the reason names the first broken criterion."""
        if step.sent == 0:
            return False, "nothing was sent"
        if step.achieved_rps < self.min_achieved_ratio * step.offered_rps:
            return False, (f"achieved {step.achieved_rps:,.0f}/s < {self.min_achieved_ratio:.0%} of offered "
                           f"{step.offered_rps:,.0f}/s")
        if step.error_rate > self.max_error_rate:
            return False, f"error rate {step.error_rate:.2%} > {self.max_error_rate:.1%}"
        p99 = step.latency_ms.get("p99", math.nan)
        if not p99 <= self.max_p99_ms:
            return False, f"p99 {p99:,.1f} ms > {self.max_p99_ms:g} ms"
        return True, "held"

    def describe(self) -> str:
        return (f"achieved >= {self.min_achieved_ratio:.0%} of offered, errors <= {self.max_error_rate:.1%}, "
                f"p99 <= {self.max_p99_ms:g} ms (from intended send time)")

    def to_dict(self) -> dict[str, Any]:
        return {"max_p99_ms": self.max_p99_ms, "max_error_rate": self.max_error_rate,
                "min_achieved_ratio": self.min_achieved_ratio}


@dataclass
class Search:
    """The steps tried and the best rate that held."""

    capacity_estimate: float
    steps: list[StepResult] = field(default_factory=list)
    max_rate: float = 0.0

    @property
    def best(self) -> StepResult | None:
        held = [s for s in self.steps if s.passed]
        return max(held, key=lambda s: s.offered_rps) if held else None


def round_rate(rate: float) -> float:
    """Rates shown to people: 2 significant figures below 1,000, else multiples of 50."""
    if rate < 1000:
        return float(max(1, round(rate, -1 if rate >= 100 else 0)))
    return float(round(rate / 50) * 50)


def find_max_rate(run: Callable[[float], StepResult], capacity: float, criteria: Criteria, *,
                  up: tuple[float, ...] = UP, max_up: int = 12, max_down: int = 4, bisect: int = 1,
                  confirm: bool = True) -> Search:
    """Search upward from ``capacity`` (a probe's estimate) with ``run(rate) -> StepResult``.

    Tries ``up`` fractions of the estimate in order, then keeps multiplying by ``GROW`` (at most
    ``max_up`` rising steps in all) until a step breaks; if the very first breaks, steps down by ``DOWN``
    (at most ``max_down`` times), or to 90% of what the broken step delivered when that is lower;
    finally bisects ``bisect`` times between the best rate that held and the lowest that broke.

    With ``confirm``, a step that broke but still delivered >= 80% of the offered rate is run once more and
    the second result counts: on a shared machine one stall (a slow fsync, a neighbour's burst) can spoil
    a step's p99 or throughput, while a rate really past capacity breaks again. Clear overloads (< 80%
    delivered) are not repeated. Both runs are recorded.
    """
    search = Search(capacity_estimate=capacity)
    tried: dict[float, bool] = {}

    def attempt(rate: float) -> bool:
        rate = round_rate(rate)
        if rate in tried:
            return tried[rate]
        step = run(rate)
        step.passed, step.reason = criteria.judge(step)
        search.steps.append(step)
        if confirm and not step.passed and step.achieved_rps >= CONFIRM_ABOVE * step.offered_rps:
            step.reason += " (run again to confirm)"
            step = run(rate)
            step.passed, step.reason = criteria.judge(step)
            step.reason += " (confirmation run)"
            search.steps.append(step)
        tried[rate] = bool(step.passed)
        return tried[rate]

    rate = capacity
    for i in range(max_up):
        rate = capacity * up[i] if i < len(up) else rate * GROW
        if not attempt(rate):
            break
    if not any(tried.values()):
        rate = capacity * up[0]
        for _ in range(max_down):
            # What the broken step did deliver is a better hint than a fixed factor.
            delivered = search.steps[-1].achieved_rps * 0.9 if search.steps else 0.0
            rate = min(rate * DOWN, delivered) if delivered > 0 else rate * DOWN
            if attempt(rate):
                break
    for _ in range(bisect):
        held = [r for r, ok in tried.items() if ok]
        broke = [r for r, ok in tried.items() if not ok and (not held or r > max(held))]
        if not held or not broke:
            break
        low, high = max(held), min(broke)
        middle = round_rate((low + high) / 2)
        if middle in (low, high) or (high - low) / high < 0.04:
            break
        attempt(middle)
    held = [r for r, ok in tried.items() if ok]
    search.max_rate = max(held) if held else 0.0
    return search
