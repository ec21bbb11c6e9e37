"""Fixtures for the render tests: checkov, installed once with progress when it is missing."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.optional import require_extra

from stackwright.render.checkov_env import checks_venv, find_checkov, install_checkov, install_hint


@pytest.fixture(scope="session")
def checkov_exe(request: pytest.FixtureRequest) -> Iterator[Path]:
    """The checkov executable. Installed into its own virtualenv (with a line of progress) if missing;
    ``STACKWRIGHT_NO_INSTALL=1`` skips the tests that need it instead."""
    found = find_checkov()
    if found is None:
        if os.environ.get("STACKWRIGHT_NO_INSTALL"):
            pytest.skip(install_hint())
        reporter = request.config.pluginmanager.getplugin("terminalreporter")
        capture = request.config.pluginmanager.getplugin("capturemanager")
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"installing checkov into {checks_venv()} for the checker tests (once, ~1-2 min)")
            found = install_checkov(progress=lambda _line: reporter.write("."))
            reporter.write_line(f" done: {found}")
    yield found


@pytest.fixture(scope="session")
def checks_extra() -> None:
    """Skip (fail under CI) unless the 'checks' extra (kubernetes-validate, jsonschema) is installed."""
    require_extra("checks")
