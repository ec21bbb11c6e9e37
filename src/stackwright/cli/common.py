"""Helpers shared by all commands: one-line errors, spec loading, the console."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console

from ..spec import SpecError, System, load_system

console = Console(stderr=True, highlight=False)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one line saying what is wrong and exit non-zero."""
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(code)


def load(system: str) -> System:
    """Load a system spec by name or path, or exit with a located one-line error."""
    try:
        return load_system(system, root=Path.cwd())
    except SpecError as exc:
        fail(str(exc))
