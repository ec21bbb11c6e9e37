"""Minting many tokens shows progress on a terminal and nothing on a pipe: the voting demo printed "minting
10,000 viewer tokens …" and then nothing for half a minute."""

from __future__ import annotations

import io
from pathlib import Path

import jwt
from rich.console import Console

from stackwright.local.demokit import DemoContext
from stackwright.spec import load_system

ROOT = Path(__file__).resolve().parents[2]


def _ctx(tmp_path: Path, console: Console) -> DemoContext:
    return DemoContext(system=load_system(ROOT / "systems" / "voting" / "system.yaml"), state={}, console=console,
                       key_file=tmp_path / "idp-key.pem", size=3, concurrency=1)


def test_minting_on_a_terminal_draws_a_bar_with_the_count(tmp_path: Path) -> None:
    out = io.StringIO()
    ctx = _ctx(tmp_path, Console(file=out, force_terminal=True, width=100))
    tokens = ctx.mint_many(["v-1", "v-2", "v-3"], ["viewer"], what="viewer tokens")
    assert [jwt.decode(t, options={"verify_signature": False})["sub"] for t in tokens] == ["v-1", "v-2", "v-3"]
    assert "minting viewer tokens" in out.getvalue() and "3/3" in out.getvalue()


def test_minting_to_a_pipe_prints_nothing(tmp_path: Path) -> None:
    out = io.StringIO()
    ctx = _ctx(tmp_path, Console(file=out, force_terminal=False, width=100))
    assert len(ctx.mint_many([f"v-{i}" for i in range(5)], ["viewer"])) == 5
    assert out.getvalue() == ""
