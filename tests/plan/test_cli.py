"""The plan command: files written, --strict exit codes, determinism, atomic failure."""

from __future__ import annotations

import json
import re
from pathlib import Path

import typer
import yaml
from typer.testing import CliRunner

from stackwright.cli.plan_cmd import register
from tests.plan.specs import ROOT, SEED_003

app = typer.Typer()


@app.callback()
def _root() -> None:
    """Stands in for the stackwright app (commands as sub-commands)."""


register(app)
runner = CliRunner()
VOTING = str(ROOT / "systems" / "voting")


def spec_file(tmp_path: Path, data: dict) -> str:
    path = tmp_path / "spec" / "system.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_strict_fails_on_high_findings(tmp_path: Path) -> None:
    result = runner.invoke(app, ["plan", VOTING, "--out", str(tmp_path / "a"), "--strict", "--no-svg"])
    assert result.exit_code == 1, result.output
    assert (tmp_path / "a" / "ARCHITECTURE.md").is_file()  # the document is still written


def test_without_strict_high_findings_exit_zero(tmp_path: Path) -> None:
    result = runner.invoke(app, ["plan", VOTING, "--out", str(tmp_path / "a"), "--no-svg"])
    assert result.exit_code == 0, result.output


def test_strict_passes_without_high_findings(tmp_path: Path) -> None:
    result = runner.invoke(app, ["plan", spec_file(tmp_path, SEED_003), "--out", str(tmp_path / "o"), "--strict",
                                 "--no-svg"])
    assert result.exit_code == 0, result.output


def test_json_has_the_same_numbers_and_output_is_deterministic(tmp_path: Path) -> None:
    for out in ("one", "two"):
        result = runner.invoke(app, ["plan", VOTING, "--out", str(tmp_path / out), "--format", "json", "--no-svg"])
        assert result.exit_code == 0, result.output
    for name in ("ARCHITECTURE.md", "architecture.json"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    data = json.loads((tmp_path / "one" / "architecture.json").read_text())
    md = (tmp_path / "one" / "ARCHITECTURE.md").read_text()
    total = data["summary"]["monthly_cost_usd"]
    assert f"${total:,.2f}" in md
    assert round(sum(line["monthly_usd"] for line in data["cost"]["lines"]), 2) == total
    assert data["summary"]["findings"]["high"] == md.count("| HIGH |")


def test_failure_writes_nothing(tmp_path: Path) -> None:
    data = {**SEED_003, "cluster": {"node_pools": [{"name": "general", "instance_types": ["t3.medium"]}]},
            "resources": {"cache": {"kind": "redis", "node_type": "cache.x9.huge"}},
            "services": {"api": {"routes": [{"path": "/"}], "uses": ["cache"]}}}
    out = tmp_path / "out"
    result = runner.invoke(app, ["plan", spec_file(tmp_path, data), "--out", str(out), "--no-svg"])
    assert result.exit_code == 2
    # A type without a price is a spec error at load now: located, naming the type and what is priced.
    assert re.search(r"system\.yaml:\d+: resources\.cache\.node_type: .*'cache\.x9\.huge' has no price", result.output)
    assert "cache.r6g.large" in result.output and "Traceback" not in result.output
    assert not out.exists() or not any(out.iterdir())


def test_bad_spec_is_a_located_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["plan", spec_file(tmp_path, {**SEED_003, "slo": {"peak_rps": -1}}),
                                 "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "slo.peak_rps" in result.output
    assert not (tmp_path / "o").exists()
