"""A missing optional part (an extra, or checkov) gives one line with the install command, never a
traceback, and writes nothing. The absence is real: the CLI runs in a child interpreter where the
extra's modules cannot be imported (``sys.modules[name] = None`` is Python's own "not importable")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stackwright.extras import install_command, requirements
from stackwright.render.checkov_env import find_checkov

ROOT = Path(__file__).resolve().parents[2]


def _cli(args: list[str], *, hide: tuple[str, ...] = (), env: dict[str, str] | None = None,
         cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    code = ("import sys\n"
            f"for name in {hide!r}: sys.modules[name] = None\n"
            "from stackwright.cli import main\n"
            f"sys.argv = ['stackwright', *{args!r}]\n"
            "main()\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "COLUMNS": "400", **(env or {})}, timeout=300)


@pytest.mark.parametrize(("hidden", "extra", "args"), [
    (("kubernetes_validate",), "checks", ["--only", "k8s"]),
    (("jsonschema",), "checks", ["--only", "k8s"]),
    (("aws_cdk",), "aws", []),
    (("cfnlint",), "aws", []),
])
def test_render_check_without_an_extra_says_how_to_install_it(tmp_path: Path, hidden: tuple[str, ...], extra: str,
                                                             args: list[str]) -> None:
    out = tmp_path / "bundle"
    proc = _cli(["render", "fastapi-app", "--out", str(out), "--check", *args], hide=hidden)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert f"'{extra}' extra" in lines[0] and install_command(extra) in lines[0]
    assert not out.exists(), "a check that cannot run must not leave an unchecked bundle behind"


def test_install_command_carries_the_pins_of_pyproject() -> None:
    assert sorted(r.split("==")[0] for r in requirements("aws")) == ["aws-cdk-lib", "cfn-lint", "constructs"]
    assert all("==" in r for r in requirements("checks"))
    assert install_command("checks").startswith("pip install 'jsonschema==")


def test_checkers_reports_a_missing_checkov_without_installing_it(tmp_path: Path) -> None:
    empty = tmp_path / "no-checkov"
    env = {"STACKWRIGHT_CHECKS_VENV": str(empty), "PATH": "/usr/bin:/bin"}
    proc = _cli(["checkers"], env=env)
    beside = Path(sys.executable).with_name("checkov").is_file()
    if beside:
        pytest.skip("a checkov is installed next to this interpreter, so it cannot be missing here")
    assert proc.returncode == 1
    assert "checkov: missing: stackwright checkers --install" in proc.stderr
    assert not empty.exists(), "checkov must not be installed behind the user's back"


def test_an_unfinished_checks_venv_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An install that died part way leaves a folder with an executable but without the marker.
    folder = tmp_path / "venv"
    (folder / "bin").mkdir(parents=True)
    (folder / "bin" / "checkov").write_text("#!/bin/sh\nexit 0\n")
    monkeypatch.setenv("STACKWRIGHT_CHECKS_VENV", str(folder))
    monkeypatch.delenv("CHECKOV", raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    found = find_checkov()
    assert found != folder / "bin" / "checkov"
