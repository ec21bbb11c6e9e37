"""Findings: problems with the spec, collected from every section, de-duplicated and ordered by severity."""

from __future__ import annotations

from collections.abc import Iterable

from .model import SEVERITY_ORDER, Finding

AREA_ORDER = {"capacity": 0, "failure": 1, "cost": 2, "monitoring": 3, "spec": 4}


def collect(*groups: Iterable[Finding]) -> list[Finding]:
    """All findings, without duplicates, ordered by severity, then area, then message."""
    seen: set[Finding] = set()
    out: list[Finding] = []
    for group in groups:
        for finding in group:
            if finding not in seen:
                seen.add(finding)
                out.append(finding)
    return sorted(out, key=lambda f: (SEVERITY_ORDER[f.severity], AREA_ORDER.get(f.area, 9), f.where, f.message))


def has_high(findings: Iterable[Finding]) -> bool:
    """Whether any finding is high severity (``--strict`` fails on these)."""
    return any(f.severity == "high" for f in findings)
