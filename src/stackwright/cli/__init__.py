"""The ``stackwright`` command. Each sub-command lives in its own module and registers itself here."""

from __future__ import annotations

import importlib
import sys

import typer

from .common import fail

app = typer.Typer(
    name="stackwright",
    help="Describe an EKS system once in system.yaml; run it locally, render its deployment, plan it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Modules that add commands to ``app``. A missing module is skipped so a partial checkout still runs.
COMMAND_MODULES = ["local_cmds", "render_cmd", "plan_cmd", "monitoring_cmds", "bench_cmds", "chaos_cmds", "queue_cmds",
                   "schema_cmd", "logs_cmd", "drill_cmds", "rollout_cmd"]


def _register() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{name}":
                continue
            raise
        module.register(app)


def main() -> None:
    """Entry point of the ``stackwright`` console script."""
    _register()
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


__all__ = ["app", "fail", "main"]
