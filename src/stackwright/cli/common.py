"""Helpers shared by all commands: one-line errors, spec loading, the console."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from ..spec import SpecError, System, load_system

console = Console(stderr=True, highlight=False)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one line saying what is wrong and exit non-zero.

    The message is printed as text, never as console markup: spec errors quote regex patterns such as
    ``^[a-z][a-z0-9-]{0,40}$`` whose brackets the console would otherwise take for style tags.
    """
    console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


def load(system: str) -> System:
    """Load a system spec by name or path, or exit with a located one-line error."""
    try:
        return load_system(system, root=Path.cwd())
    except SpecError as exc:
        fail(str(exc))
