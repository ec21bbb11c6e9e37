"""``stackwright render SYSTEM --target eks --out DIR [--check]``: write the production deployment."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..spec import System
from .common import console, fail, load

TARGET_SETS = {"eks": ("k8s", "aws", "docker", "ci")}


def _parts(only: list[str], known: tuple[str, ...]) -> tuple[str, ...]:
    """``--only k8s --only aws`` and ``--only k8s,aws`` alike, in the order given; exits on an unknown part."""
    parts = tuple(dict.fromkeys(p.strip() for value in only for p in value.split(",") if p.strip()))
    unknown = [p for p in parts if p not in known]
    if unknown or not parts:
        fail(f"--only: unknown part {', '.join(map(repr, unknown)) or '(empty)'}; the parts are {', '.join(known)}")
    return parts


def register(app: typer.Typer) -> None:
    """Add the ``render`` and ``checkers`` commands to the CLI."""

    @app.command("render")
    def render(
        system: Annotated[str, typer.Argument(help="system name (systems/<name>) or path to a system.yaml")],
        target: Annotated[str, typer.Option("--target", "-t", help="deployment target (eks)")] = "eks",
        out: Annotated[Path | None, typer.Option("--out", "-o", help="output folder (default ./out/<system>)")] = None,
        only: Annotated[list[str] | None, typer.Option(
            "--only", help="render only these parts, repeated or comma-separated: k8s, aws, docker, ci")] = None,
        check: Annotated[bool, typer.Option(
            "--check", help="run kubernetes-validate, CRD schemas, checkov, and cfn-lint on the synthesized CDK app"
        )] = False,
    ) -> None:
        """Render Kubernetes (kustomize base + overlays), the AWS CDK app, Dockerfiles and CI for a system."""
        from ..render import RenderError, render_bundle

        if target not in TARGET_SETS:
            fail(f"unknown target {target!r}; use --target {' | '.join(TARGET_SETS)}")
        parts = _parts(only, TARGET_SETS[target]) if only else TARGET_SETS[target]
        spec = load(system)
        if check:
            # Before anything is written: a missing checker must not leave a bundle that was never checked.
            _prepare_checkers(parts)
        out_dir = out or Path("out") / spec.name
        notes: list[str] = []
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                      console=console, transient=True) as progress:
            task = progress.add_task(f"rendering {spec.name}", total=None)
            try:
                written = render_bundle(spec, out_dir, parts, report=notes.append,
                                        on_step=lambda s: progress.update(task, description=f"rendering {s}"))
            except RenderError as exc:
                fail(f"{spec.source or spec.name}: {exc}")
            except OSError as exc:  # the output folder cannot be written (a file, read-only, no space...)
                fail(f"cannot write the bundle to {out_dir}: {exc.strerror or exc}")
        for note in notes:
            console.print(f"[yellow]note:[/] {note}")
        console.print(f"[green]wrote[/] {len(written)} files to {out_dir}")
        if check:
            _check(spec, out_dir, parts)

    register_checkers(app)


def _prepare_checkers(parts: tuple[str, ...]) -> None:
    """Fail with the install command when a checker extra is missing; install checkov with progress."""
    from ..extras import MissingExtra, missing_modules
    from ..render.checkov_env import CheckovInstallFailed, checks_venv, find_checkov, install_checkov

    # Every missing extra in one message, so one install fixes it.
    missing = [MissingExtra(extra, gone) for extra in ("checks", *(("aws",) if "aws" in parts else ()))
               if (gone := missing_modules(extra))]
    if missing:
        fail("; ".join(str(m) for m in missing))
    if find_checkov() is None:
        console.print(f"installing checkov into {checks_venv()} (once; about 1-2 minutes)")
        with console.status("installing checkov") as status:
            try:
                install_checkov(progress=lambda line: status.update(f"installing checkov: {line[:100]}"))
            except CheckovInstallFailed as exc:
                fail(str(exc))


def register_checkers(app: typer.Typer) -> None:
    """Add the ``checkers`` command: where each third-party checker of ``render --check`` is, or install it."""

    @app.command("checkers")
    def checkers(
        install: Annotated[bool, typer.Option("--install", help="install checkov into its own virtualenv")] = False,
    ) -> None:
        """Show the checkers `render --check` runs and whether each is installed (--install gets checkov)."""
        from ..extras import install_command, missing_modules
        from ..render.checkov_env import CheckovInstallFailed, checks_venv, find_checkov, install_checkov

        if install and find_checkov() is None:
            console.print(f"installing checkov into {checks_venv()}")
            try:
                install_checkov(progress=lambda line: console.print(f"  {line}", soft_wrap=True))
            except CheckovInstallFailed as exc:
                fail(str(exc))
        missing_any = False
        for extra, what in (("checks", "kubernetes-validate, jsonschema"), ("aws", "aws-cdk-lib, cfn-lint")):
            missing = missing_modules(extra)
            missing_any |= bool(missing)
            state = "[green]installed[/]" if not missing else f"[red]missing[/]: {install_command(extra)}"
            console.print(f"{what}: {state}", soft_wrap=True)
        found = find_checkov()
        missing_any |= found is None
        console.print(f"checkov: [green]{found}[/]" if found else
                      "checkov: [red]missing[/]: stackwright checkers --install", soft_wrap=True)
        if missing_any:
            raise typer.Exit(1)


def _check(spec: System, out_dir: Path, parts: tuple[str, ...]) -> None:
    from ..render.checks import run_checks

    # Each step is printed as well as spun: a spinner shows nothing when the output is not a terminal (CI logs).
    step = "checking the manifests (kubernetes-validate, CRD schemas, checkov)"
    console.print(f"{step} …")
    with console.status(step):
        results = run_checks(out_dir)
    if "aws" in parts:
        from ..render.aws import node_notice
        from ..render.aws.checks import run_checks as run_aws_checks

        notice = node_notice()
        if notice:
            console.print(f"[yellow]note:[/] {notice}", soft_wrap=True)
        step = "synthesizing the CDK app and checking it (cfn-lint, checkov)"
        console.print(f"{step} …")
        # Synthesis goes next to the bundle, not into it, so the rendered folder stays as rendered.
        with console.status(step):
            results += run_aws_checks(spec, out_dir.parent / f".{out_dir.name}-cdk")
    table = Table(title=f"checks of {out_dir}")
    for column in ("check", "passed", "failed", "skipped", "result"):
        table.add_column(column, justify="left" if column in ("check", "result") else "right")
    for r in results:
        table.add_row(r.name, str(r.passed), str(r.failed), str(r.skipped),
                      "[green]ok[/]" if r.ok else "[red]FAILED[/]")
    console.print(table)
    for r in results:
        if r.note:
            console.print(f"[dim]{r.name}: {r.note}[/]")
        for line in r.warnings:
            console.print(f"[yellow]warning[/] {r.name}: {line}", soft_wrap=True)
        for line in r.failures[:20]:
            console.print(f"[red]✗[/] {r.name}: {line}", soft_wrap=True)
    if not all(r.ok for r in results):
        raise typer.Exit(1)
