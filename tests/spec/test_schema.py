"""``stackwright schema``: the exported JSON Schema accepts every system's spec and refuses what the loader
refuses for shape reasons (unknown keys, wrong types)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from stackwright.cli import _register, app
from stackwright.spec.schema import json_schema

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted(ROOT.glob("systems/*/system.yaml"))


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.parent.name)
def test_every_system_validates(spec: Path) -> None:
    jsonschema.Draft202012Validator(json_schema()).validate(yaml.safe_load(spec.read_text()))


def test_shape_mistakes_are_refused() -> None:
    validator = jsonschema.Draft202012Validator(json_schema())
    doc = yaml.safe_load((ROOT / "systems/fastapi-app/system.yaml").read_text())
    doc["servicez"] = {}
    assert any("servicez" in e.message for e in validator.iter_errors(doc))
    doc = yaml.safe_load((ROOT / "systems/fastapi-app/system.yaml").read_text())
    doc["environments"] = "prod"
    assert list(validator.iter_errors(doc))


def test_cli_prints_and_writes_the_same_schema(tmp_path: Path) -> None:
    _register()
    printed = CliRunner().invoke(app, ["schema"])
    assert printed.exit_code == 0, printed.output
    assert json.loads(printed.stdout)["title"] == "stackwright system.yaml"
    out = tmp_path / "s" / "system.schema.json"
    written = CliRunner().invoke(app, ["schema", "--out", str(out)])
    assert written.exit_code == 0 and out.read_text() == printed.stdout
