"""The ``stackwright`` command. Each sub-command lives in its own module and registers itself here."""

from __future__ import annotations

import importlib
import sys

import typer
from rich.markup import escape

from .common import console, fail


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


def _parser_errors() -> tuple[type[Exception], type[Exception], type[Exception], type[Exception]]:
    """click's error classes as this typer raises them: ``(ClickException, UsageError, NoArgsIsHelpError,
    Abort)``. typer 0.2x runs a copy of click of its own (``typer._click``) whose classes are not click's;
    older typers use click itself (before click 8.2 there is no NoArgsIsHelpError: help exits by itself)."""
    try:
        from typer._click import exceptions as errors
        from typer.exceptions import Abort
    except ImportError:
        from click import exceptions as errors  # type: ignore[no-redef]
        from click.exceptions import Abort  # type: ignore[assignment]

    class _Never(Exception):
        pass

    return (errors.ClickException, errors.UsageError, getattr(errors, "NoArgsIsHelpError", _Never),  # type: ignore[return-value]
            Abort)


def usage_error_line(exc: Exception) -> str:
    """One line for an error of click's own parsing (a bad option value, an unknown option, a missing one).

    Typer prints these in a multi-line box with the command's usage; the CLI's rule is one line per error,
    so the message (whose newlines, e.g. before click's "Did you mean", become spaces) is followed by where
    to read the command's options."""
    message = " ".join(exc.format_message().split())  # type: ignore[attr-defined]
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, _parser_errors()[1]) and ctx is not None:
        message += f" (see '{ctx.command_path} --help')"
    return message


def main(args: list[str] | None = None) -> None:
    """Entry point of the ``stackwright`` console script.

    click runs in non-standalone mode so that its parsing errors come back here as exceptions and every
    command's are printed the same way, in one line (exit 2), instead of typer's box."""
    _register()
    click_error, _, no_args_is_help, abort = _parser_errors()
    try:
        code = app(args=args, prog_name="stackwright", standalone_mode=False)
    except no_args_is_help as exc:  # bare ``stackwright`` (or a group): its help, as before
        exc.show()  # type: ignore[attr-defined]
        sys.exit(exc.exit_code)  # type: ignore[attr-defined]
    except click_error as exc:
        console.print(f"[bold red]error:[/] {escape(usage_error_line(exc))}", soft_wrap=True)
        sys.exit(exc.exit_code)  # type: ignore[attr-defined]
    except abort:
        console.print("aborted")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    # Non-standalone click returns the code of a typer.Exit instead of exiting (and a command's own return
    # value, which is None for every command here).
    sys.exit(code if isinstance(code, int) and not isinstance(code, bool) else 0)


__all__ = ["app", "fail", "main"]
