"""The bundle as a whole: deterministic output, golden snapshots, all-or-nothing writes, the CLI.

Regenerate the golden files after an intended change with ``STACKWRIGHT_UPDATE_GOLDEN=1 pytest tests/render``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stackwright.cli import _register, app
from stackwright.render import RenderError, render_bundle, render_files
from stackwright.render.checks import CHECKOV_VERSION, checkov_skips
from stackwright.spec import SpecError, System, load_system

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).with_name("golden")
#: Key files snapshotted (the monitoring content is left out: it belongs to stackwright.monitoring).
GOLDEN_FILES = [
    "k8s/base/services/vote.yaml",
    "k8s/base/services/worker.yaml",
    "k8s/base/ingress.yaml",
    "k8s/base/network-policies.yaml",
    "k8s/base/kustomization.yaml",
    "k8s/overlays/eu-west-1-staging/kustomization.yaml",
    "k8s/overlays/eu-west-1-staging/patches/configmap-vote-config.yaml",
    "k8s/migrations/migrations.yaml",
    "docker/vote.Dockerfile",
    "ci/deploy.yml",
]
TARGETS = ("k8s", "docker", "ci")


@pytest.fixture(scope="module")
def voting() -> System:
    return load_system("voting", root=ROOT)


@pytest.fixture(scope="module")
def files(voting: System) -> dict[str, str]:
    return render_files(voting, TARGETS)


def test_render_is_deterministic(voting: System, files: dict[str, str], tmp_path: Path) -> None:
    again = render_files(load_system("voting", root=ROOT), TARGETS)
    assert again == files
    written = render_bundle(voting, tmp_path / "a", TARGETS)
    render_bundle(voting, tmp_path / "b", TARGETS)
    for path in written:
        rel = path.relative_to(tmp_path / "a")
        assert path.read_bytes() == (tmp_path / "b" / rel).read_bytes() == files[rel.as_posix()].encode()


@pytest.mark.parametrize("rel", GOLDEN_FILES)
def test_golden(files: dict[str, str], rel: str) -> None:
    golden = GOLDEN / rel
    if os.environ.get("STACKWRIGHT_UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(files[rel], encoding="utf-8")
    assert golden.is_file(), f"no golden file {golden}; run with STACKWRIGHT_UPDATE_GOLDEN=1"
    assert files[rel] == golden.read_text(encoding="utf-8"), (
        f"{rel} changed; if intended, regenerate with STACKWRIGHT_UPDATE_GOLDEN=1")


def test_no_literal_secret_or_latest_anywhere(files: dict[str, str]) -> None:
    for rel, text in files.items():
        assert "kind: Secret\n" not in text, rel
        assert ":latest" not in text, rel
        assert not re.search(r"(?i)(?<![\w-])(password|token)\s*[:=]\s*\S+", text), rel


def test_dockerfiles(files: dict[str, str], voting: System) -> None:
    for name, svc in voting.services.items():
        text = files[f"docker/{name}.Dockerfile"]
        froms = re.findall(r"^FROM (\S+)", text, re.M)
        assert len(froms) == 2 and all(re.fullmatch(r"python:3\.11\.\d+-slim-\w+", f) for f in froms)
        assert "USER 10001:10001" in text and "HEALTHCHECK" in text
        assert f"COPY systems/voting/services/{name}/ /app/" in text
        assert "requirements.txt" in text and f'"{svc.app}"' in text and f'"{svc.port}"' in text
        assert "ARG " not in text and "ENV " in text


def test_bad_spec_writes_nothing(tmp_path: Path) -> None:
    spec = tmp_path / "system.yaml"
    text = (ROOT / "systems/voting/system.yaml").read_text()
    spec.write_text(text.replace("uses: [db, cache, votes, audit]", "uses: [db, cache, votse, audit]"))
    (tmp_path / "migrations").mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("untouched")
    with pytest.raises(SpecError, match="votse"):
        load_system(spec)
    _register()
    result = CliRunner().invoke(app, ["render", str(spec), "--out", str(out / "bundle")])
    assert result.exit_code != 0
    assert "votse" in result.output and "system.yaml:" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert not list(tmp_path.glob(".*tmp"))


def test_render_error_keeps_previous_bundle(voting: System, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    render_bundle(voting, out, TARGETS)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    broken = voting.model_copy(deep=True)
    broken.monitoring.prometheus = False  # the canary's analysis needs Prometheus
    with pytest.raises(RenderError, match="canary"):
        render_bundle(broken, out, TARGETS)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_refuses_to_replace_a_foreign_folder(voting: System, tmp_path: Path) -> None:
    (tmp_path / "notes.md").write_text("mine")
    with pytest.raises(RenderError, match="not a stackwright bundle"):
        render_bundle(voting, tmp_path, TARGETS)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.md"]


def test_cli_render_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, checkov_exe: Path,
                          checks_extra: None) -> None:
    monkeypatch.chdir(ROOT)
    _register()
    out = tmp_path / "voting"
    result = CliRunner().invoke(app, ["render", "voting", "--target", "eks", "--out", str(out),
                                      "--only", "k8s", "--only", "docker", "--check"])
    assert result.exit_code == 0, result.output
    assert "kubernetes-validate" in result.output and "checkov" in result.output and "FAILED" not in result.output
    assert (out / "k8s/base/kustomization.yaml").is_file() and (out / "docker/vote.Dockerfile").is_file()


def test_skips_are_explained_and_checkers_are_pinned() -> None:
    skips = checkov_skips()
    assert skips and all(len(reason) > 80 for reason in skips.values())
    assert re.fullmatch(r"\d+\.\d+\.\d+", CHECKOV_VERSION)
    pyproject = (ROOT / "pyproject.toml").read_text()
    for pin in ("kubernetes-validate==", "jsonschema==", "aws-cdk-lib==", "cfn-lint=="):
        assert f'"{pin}' in pyproject, pin


@pytest.mark.parametrize(("umask", "dir_mode", "file_mode"), [(0o022, 0o755, 0o644), (0o027, 0o750, 0o640)])
def test_bundle_permissions_respect_the_umask(tmp_path: Path, umask: int, dir_mode: int, file_mode: int) -> None:
    """The bundle is built in a mkdtemp folder (0700) and renamed: it must end with ordinary modes."""
    from stackwright.render.bundle import write_files

    old = os.umask(umask)
    try:
        written = write_files({"README.md": "x\n", "k8s/base/a.yaml": "a: 1\n"}, tmp_path / "out")
    finally:
        os.umask(old)
    assert (tmp_path / "out").stat().st_mode & 0o777 == dir_mode
    assert (tmp_path / "out" / "k8s").stat().st_mode & 0o777 == dir_mode
    assert {p.stat().st_mode & 0o777 for p in written} == {file_mode}
