"""Every command's ``--help``: on/off flags show no value placeholder (typer's rich help printed ``<bool>``)."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from stackwright.cli import _register, app

_register()
ROOT = typer.main.get_command(app)


def _paths(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and sub-command of the CLI, as the words that name it (the root is ``()``)."""
    found = [path]
    # typer 0.29 builds on its own copy of click: a group is whatever has sub-commands.
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        found += _paths(sub, (*path, name))
    return found


PATHS = _paths(ROOT)


def test_the_whole_cli_is_covered() -> None:
    names = {" ".join(p) for p in PATHS}
    assert {"up", "down", "status", "plan", "render", "drill region-failover", "queue dlq"} <= names


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "(root)")
def test_flags_show_no_value_placeholder(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "--help" in result.output
    assert "<bool>" not in result.output, result.output
    assert "<list[" not in result.output, result.output
    for line in result.output.splitlines():
        if "--help" in line:  # the flag every command has: nothing between it and its description
            assert line.split("--help", 1)[1].split()[:2] == ["Show", "this"], line


def test_options_that_take_a_value_still_show_its_type() -> None:
    result = CliRunner().invoke(app, ["up", "--help"], env={"COLUMNS": "200"})
    detach = next(line for line in result.output.splitlines() if "--detach" in line)
    port = next(line for line in result.output.splitlines() if "--port " in line)
    assert "<" not in detach and "<int range>" in port


def test_a_repeatable_option_shows_one_value_and_that_it_repeats() -> None:
    result = CliRunner().invoke(app, ["render", "--help"], env={"COLUMNS": "200"})
    only = next(line for line in result.output.splitlines() if "--only" in line)
    assert "<str> ..." in only, only


def test_help_prose_is_wrapped_by_the_console_not_the_source() -> None:
    # The chaos command's docstring breaks its second paragraph after "free port,"; at 200 columns the
    # sentence must read on one line.
    result = CliRunner().invoke(app, ["chaos", "--help"], env={"COLUMNS": "200"})
    assert "(fresh data, free port, short queue visibility timeout)" in result.output, result.output
