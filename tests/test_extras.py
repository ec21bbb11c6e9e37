"""A system's declared extras are checked by the distributions the installed package pins for them."""

from __future__ import annotations

import pytest

from stackwright import extras


def test_missing_distributions_are_named_with_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    pins = {"files": ["pillow==13.0.0", "surely-not-installed-dist==0.0.1"], "aws": ["constructs==10.8.1"]}
    monkeypatch.setattr(extras, "requirements", lambda extra: pins.get(extra, []))
    line = extras.missing_for_system("files", ["files", "aws"])
    assert line is not None
    assert "the 'files' extra (surely-not-installed-dist not installed)" in line  # pillow is installed
    assert "pip install" in line and "aws" not in line
    assert extras.missing_for_system("files", ["aws"]) is None
    assert "'nope' is not an extra" in (extras.missing_for_system("x", ["nope"]) or "")
