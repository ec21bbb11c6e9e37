"""stackwright.term: colour and table width follow the stream (terminal, pipe or file) and the environment."""

from __future__ import annotations

import io
import sys
from typing import Any

import pytest

from stackwright import term
from stackwright.local.supervisor import Supervisor


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _plain_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FORCE_COLOR", "NO_COLOR", "COLUMNS", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TERM", "xterm")


@pytest.mark.parametrize(("stream", "env", "expected"), [
    (io.StringIO(), {}, False),
    (_Tty(), {}, True),
    (io.StringIO(), {"FORCE_COLOR": "1"}, True),
    (_Tty(), {"NO_COLOR": "1"}, False),
    (_Tty(), {"TERM": "dumb"}, False),
])
def test_colour_only_on_a_terminal_unless_asked(monkeypatch: pytest.MonkeyPatch, stream: Any,
                                                env: dict[str, str], expected: bool) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert term.colour(stream) is expected


def test_a_table_to_a_pipe_is_neither_cut_at_80_columns_nor_coloured(monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.table import Table

    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    table = Table(title="t")
    for col in ("process", "url", "dependencies"):
        table.add_column(col)
    row = ("api-0", "http://127.0.0.1:41234", "cache failing: ConnectionError, db ok, queue ok, search ok")
    table.add_row(*row, style="green")
    term.console().print(table)
    text = out.getvalue()
    assert "\x1b[" not in text
    (line,) = [line for line in text.splitlines() if "api-0" in line]
    assert all(cell in line for cell in row) and len(line) > 80
    assert term.width(out) == term.WIDE
    monkeypatch.setenv("COLUMNS", "100")  # an explicit width is honoured
    assert term.width(out) is None and term.console().width == 100


def test_up_labels_its_log_lines_in_colour_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    supervisor = Supervisor(tmp_path, echo=True)
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert "\x1b[" not in supervisor._label("api", "32")
    monkeypatch.setattr(sys, "stdout", _Tty())
    assert supervisor._label("api", "32").startswith("\x1b[32mapi")


@pytest.mark.parametrize("stderr", [False, True])
def test_a_long_message_to_a_pipe_stays_one_line(monkeypatch: pytest.MonkeyPatch, stderr: bool) -> None:
    # The bench prints a scenario's findings as one paragraph (~900 characters for speech's wer); wrapped at
    # WIDE, a log of it broke mid-sentence.
    out = io.StringIO()
    monkeypatch.setattr(sys, "stderr" if stderr else "stdout", out)
    message = " ".join(f"word{i}" for i in range(200))
    term.console(stderr=stderr).print(message)
    assert out.getvalue() == message + "\n"
    monkeypatch.setattr(sys, "stderr" if stderr else "stdout", _Tty())  # a terminal still wraps
    assert not term.console(stderr=stderr).soft_wrap
