"""Reconcile a reference cost estimate (``reference_cost:`` in the spec, e.g. the seed's) with itself and the plan.

A design often starts from someone's cost table. Plan checks it the way a reviewer would:

* each line with ``factors`` (the reference's own arithmetic) against its stated amount;
* each section's stated total against the sum of its stated lines;
* the stated total against the sum of the stated sections, and against the sum of the lines;
* each section against this plan's figure for the same cost ``categories``.

The corrected total is the sum of the sections, each taken as the sum of its lines where it lists lines
(else as stated): what the reference's own lines add up to.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal

from ..spec import System
from .model import CostReport

#: Differences below this many dollars are rounding in the reference (it states "~$1,093").
TOLERANCE_USD = 5.0


@dataclass(frozen=True)
class LineCheck:
    """One reference line whose stated amount is not what its own factors give."""

    section: str
    item: str
    stated: float
    computed: float


@dataclass(frozen=True)
class SectionRow:
    """One reference section: stated, the sum of its lines, and the plan's figure for its categories."""

    name: str
    stated: float
    lines_sum: float | None  # None: the section lists no lines
    plan_usd: Decimal | None  # None: no categories mapped
    categories: tuple[str, ...]

    @property
    def corrected(self) -> float:
        """What the section adds up to by its own lines (its stated figure when it lists none)."""
        return self.stated if self.lines_sum is None else self.lines_sum

    @property
    def consistent(self) -> bool:
        return self.lines_sum is None or abs(self.lines_sum - self.stated) <= TOLERANCE_USD


@dataclass
class ReferenceReport:
    """The reconciliation of ``reference_cost`` (see the module doc)."""

    source: str
    stated_total: float
    sections: list[SectionRow]
    line_checks: list[LineCheck] = field(default_factory=list)
    plan_total: Decimal = Decimal("0.00")

    @property
    def sections_total(self) -> float:
        """Sum of the sections as stated."""
        return sum(s.stated for s in self.sections)

    @property
    def corrected_total(self) -> float:
        """Sum of the sections by their own lines."""
        return sum(s.corrected for s in self.sections)

    def issues(self) -> list[str]:
        """Where the reference contradicts itself, one sentence each."""
        out = [f"{c.section} / {c.item}: states {usd(c.stated)}, its own arithmetic gives {usd(c.computed)}"
               for c in self.line_checks]
        out += [f"{s.name}: states {usd(s.stated)}, its lines add up to {usd(s.lines_sum)}"
                for s in self.sections if not s.consistent and s.lines_sum is not None]
        if abs(self.sections_total - self.stated_total) > TOLERANCE_USD:
            out.append(f"the total states {usd(self.stated_total)}, its sections as stated add up to "
                       f"{usd(self.sections_total)}")
        if abs(self.corrected_total - self.stated_total) > TOLERANCE_USD:
            out.append(f"corrected total (every section by its own lines): {usd(self.corrected_total)}")
        return out


def usd(value: float) -> str:
    """``-$1,390`` / ``$20,546``: whole dollars, the sign before the symbol."""
    return f"{'-' if value < 0 else ''}${abs(value):,.0f}"


def reconcile(system: System, cost: CostReport) -> ReferenceReport | None:
    """The reconciliation of the spec's ``reference_cost`` against itself and ``cost``; None without one."""
    ref = system.reference_cost
    if ref is None:
        return None
    rows: list[SectionRow] = []
    checks: list[LineCheck] = []
    for section in ref.sections:
        for line in section.lines:
            if line.factors:
                computed = math.prod(line.factors)
                if abs(computed - line.stated) > TOLERANCE_USD:
                    checks.append(LineCheck(section.name, line.item, line.stated, round(computed, 2)))
        lines_sum = sum(ln.stated for ln in section.lines) if section.lines else None
        plan = sum((cost.subtotal(category=c) for c in section.categories), Decimal("0.00")) \
            if section.categories else None
        rows.append(SectionRow(section.name, section.stated, lines_sum, plan, tuple(section.categories)))
    return ReferenceReport(ref.source, ref.stated_total, rows, checks, cost.total_usd)
