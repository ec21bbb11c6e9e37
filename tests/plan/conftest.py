"""Fixtures for plan tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackwright.spec import System, load_system
from tests.plan.specs import ROOT


@pytest.fixture(scope="session")
def voting() -> System:
    """The real voting spec."""
    return load_system(ROOT / "systems" / "voting")


@pytest.fixture(autouse=True)
def _no_bench(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Run from an empty folder so a real bench/per_replica.json in the repo does not change results."""
    monkeypatch.chdir(tmp_path)
