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


def register(app: typer.Typer) -> None:
    """Add the ``render`` command to the CLI."""

    @app.command("render")
    def render(
        system: Annotated[str, typer.Argument(help="system name (systems/<name>) or path to a system.yaml")],
        target: Annotated[str, typer.Option("--target", "-t", help="deployment target (eks)")] = "eks",
        out: Annotated[Path | None, typer.Option("--out", "-o", help="output folder (default ./out/<system>)")] = None,
        only: Annotated[list[str] | None, typer.Option(
            "--only", help="render only these parts: k8s, aws, docker, ci")] = None,
        check: Annotated[bool, typer.Option(
            "--check", help="run kubernetes-validate, CRD schemas, checkov, and cfn-lint on the synthesized CDK app"
        )] = False,
    ) -> None:
        """Render Kubernetes (kustomize base + overlays), the AWS CDK app, Dockerfiles and CI for a system."""
        from ..render import RenderError, render_bundle

        if target not in TARGET_SETS:
            fail(f"unknown target {target!r}; use --target {' | '.join(TARGET_SETS)}")
        parts = tuple(only) if only else TARGET_SETS[target]
        spec = load(system)
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
        for note in notes:
            console.print(f"[yellow]note:[/] {note}")
        console.print(f"[green]wrote[/] {len(written)} files to {out_dir}")
        if check:
            _check(spec, out_dir, parts)


def _check(spec: System, out_dir: Path, parts: tuple[str, ...]) -> None:
    from ..render.checks import run_checks

    with console.status("checking (kubernetes-validate, CRD schemas, checkov)"):
        results = run_checks(out_dir)
    if "aws" in parts:
        from ..render.aws.checks import run_checks as run_aws_checks

        # Synthesis goes next to the bundle, not into it, so the rendered folder stays as rendered.
        with console.status("synthesizing the CDK app and checking it (cfn-lint, checkov)"):
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
        for line in r.failures[:20]:
            console.print(f"[red]✗[/] {r.name}: {line}", soft_wrap=True)
    if not all(r.ok for r in results):
        raise typer.Exit(1)
