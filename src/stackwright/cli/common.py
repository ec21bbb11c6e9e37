"""Helpers shared by all commands: one-line errors, spec loading, the console."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import typer
import yaml
from rich.markup import escape

from .. import term
from ..spec import SpecError, System, load_system
from ..spec.load import find_system_file

# Progress, warnings and errors; results (tables) go to stdout through term.console().
console = term.console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one line saying what is wrong and exit non-zero.

    The message is printed as text, never as console markup: spec errors quote regex patterns such as
    ``^[a-z][a-z0-9-]{0,40}$`` whose brackets the console would otherwise take for style tags.
    """
    console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


def resolve(system: str, *, nowhere: Callable[[SpecError], NoReturn] | None = None) -> str | Path:
    """What a command's SYSTEM argument names: ``system`` itself when it is a path or a system under
    ``./systems``, else the system.yaml of the one run of that name started from any other folder (``up``
    records each run; see ``local.state.recorded_runs``), so ``status voting`` works wherever it is typed.
    Exits with one line when several runs have that name (which one is meant needs a path) or none does;
    ``nowhere(error)``, when given, is called instead for a bare name that no run answers to."""
    try:
        find_system_file(system, Path.cwd())
        return system
    except SpecError as exc:
        missing = exc
    if any(sep in system for sep in "/\\") or system.endswith((".yaml", ".yml")):
        fail(str(missing))  # a path is taken as written
    from ..local.state import recorded_runs

    runs = recorded_runs(system)
    if len(runs) == 1:
        return runs[0][0]
    if runs:
        fail(f"{len(runs)} runs of {system!r} are up, from different folders: "
             + ", ".join(f"{spec} (state in {root})" for spec, root in runs)
             + "; pass the path of the one you mean")
    if nowhere is not None:
        nowhere(missing)
    fail(str(missing))


def load(system: str) -> System:
    """Load a system spec by name or path (or by the name of a run started elsewhere, see :func:`resolve`),
    or exit with a located one-line error."""
    try:
        return load_system(resolve(system), root=Path.cwd())
    except SpecError as exc:
        fail(str(exc))


@dataclass(frozen=True)
class SystemIdentity:
    """Name and spec folder of a system whose spec does not load: enough to find its running processes."""

    name: str
    base_dir: Path


def load_for_local_run(system: str, *, not_running_code: int = 1) -> System | SystemIdentity:
    """The spec, or — when it has an error — just its name and folder with a one-line warning, so
    ``status``, ``down`` and ``logs`` still reach a system started before the spec was broken (its
    processes keep running whatever the file now says). A bare name with no system.yaml here and no run
    recorded anywhere is a system that is not running: says so and exits ``not_running_code``. Exits with
    an error only when a path names no system.yaml, or several runs share the name."""
    def not_running(_: SpecError) -> NoReturn:
        console.print(f"{escape(system)} is not running: no run of it is recorded, and no system.yaml for it is "
                      "here (hint: run from the project root, or pass a path)", soft_wrap=True)
        raise typer.Exit(not_running_code)

    found = resolve(system, nowhere=not_running)
    try:
        return load_system(found, root=Path.cwd())
    except SpecError as exc:
        error = exc
    try:
        path = find_system_file(found, Path.cwd())
    except SpecError as exc:
        fail(str(exc))
    name = path.parent.name
    try:  # the name: line alone; plain safe_load never expands aliases, so a hostile file stays cheap
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and isinstance(data.get("name"), str) and data["name"]:
            name = data["name"]
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError):
        pass
    console.print(f"[yellow]warning:[/] {escape(str(error))} (using the local run of {escape(name)!r} anyway)",
                  soft_wrap=True)
    return SystemIdentity(name=name, base_dir=path.parent)


def require_system_extras(spec: System) -> None:
    """Exit with one line, before anything starts, when the system cannot run here: a service's code folder
    or its ``app:`` module is missing (file:line), or the extras its services import (``extras:``) are not
    installed (with the install command)."""
    from ..extras import missing_for_system
    from ..spec.load import check_service_code

    try:
        check_service_code(spec)
    except SpecError as exc:
        fail(str(exc))
    problem = missing_for_system(spec.name, spec.extras)
    if problem:
        fail(problem)
