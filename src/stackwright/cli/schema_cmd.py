"""``stackwright schema``: the JSON Schema of system.yaml, for editors and CI linting."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import console, fail


def register(app: typer.Typer) -> None:
    """Add the ``schema`` command to the CLI."""

    @app.command("schema")
    def schema(
        out: Annotated[Path | None, typer.Option("--out", "-o", help="write to this file instead of stdout")] = None,
    ) -> None:
        """Print the JSON Schema of system.yaml (editors validate and complete a spec with it)."""
        from ..spec.schema import json_schema_text

        text = json_schema_text()
        if out is None:
            typer.echo(text, nl=False)
            return
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text)
        except OSError as exc:
            fail(f"cannot write {out}: {exc.strerror or exc}")
        console.print(f"wrote {out}")
