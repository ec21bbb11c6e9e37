"""The ``stackwright`` command. Each sub-command lives in its own module and registers itself here."""

from __future__ import annotations

import importlib
import sys

import typer

from .common import fail


def _flags_take_no_value_in_help() -> None:
    """Show no value placeholder after an on/off flag in ``--help``.

    typer 0.29's rich help prints every option's type, so flags read ``--detach <bool>`` and
    ``--help <bool>`` as if they took a value (its plain-text help already leaves flags bare). Every option
    of every command, and the ``--help`` option click adds, is a ``TyperOption``, so this one override on
    that class covers the whole CLI. Idempotent; a typer without the method is left as it is."""
    from typer.core import TyperOption

    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None or getattr(shown, "flags_bare", False):
        return

    def display_type_rich(self: TyperOption, ctx: typer.Context) -> str | None:
        return None if self.is_flag else shown(self, ctx)

    display_type_rich.flags_bare = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_take_no_value_in_help()

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
