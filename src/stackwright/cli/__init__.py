"""The ``stackwright`` command. Each sub-command lives in its own module and registers itself here."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import typer
from rich.markup import escape

from .common import console, fail


def _help_shows_values_not_python_types() -> None:
    """In ``--help``, show no value placeholder after an on/off flag and no Python type after a repeatable one.

    typer 0.29's rich help prints every parameter's type, so flags read ``--detach <bool>`` and
    ``--help <bool>`` as if they took a value (its plain-text help already leaves flags bare), and a
    repeatable option or argument reads ``<list[str]>``; that now reads ``<str> ...``. Every option of every
    command (and the ``--help`` click adds) is a ``TyperOption``, every argument a ``TyperArgument``, so one
    override on each class covers the whole CLI. Idempotent; a typer without the method is left as it is."""
    from typer.core import TyperArgument, TyperOption

    for cls in (TyperOption, TyperArgument):
        shown = getattr(cls, "display_type_rich", None)
        if shown is None or getattr(shown, "values_not_types", False):
            continue
        # An argument's name already ends in "..." when it repeats; an option's does not.
        cls.display_type_rich = _values_not_types(shown, " ..." if cls is TyperOption else "")  # type: ignore[method-assign]


def _values_not_types(shown: Any, repeats: str) -> Any:
    def display_type_rich(self: Any, ctx: typer.Context) -> str | None:
        if getattr(self, "is_flag", False):
            return None
        text = shown(self, ctx)
        if text and text.startswith("<list[") and text.endswith("]>"):
            return f"<{text[6:-2]}>{repeats}"
        return text

    display_type_rich.values_not_types = True  # type: ignore[attr-defined]
    return display_type_rich


_help_shows_values_not_python_types()

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
    _reflow_help(app)


def _reflow_help(group: typer.Typer) -> None:
    """Join the lines of each paragraph of every command's help into one line.

    typer 0.29's rich help keeps a docstring's single line breaks after its first paragraph, so text wrapped
    at the source's width came out broken mid-sentence at any other width; the console wraps it instead."""
    import inspect

    for command in group.registered_commands:
        doc = command.help or inspect.getdoc(command.callback) or ""
        command.help = "\n\n".join(" ".join(p.split()) for p in doc.split("\n\n")) or None
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            _reflow_help(sub.typer_instance)


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
