"""Offline checks of a rendered bundle: Kubernetes schemas (strict, built-in kinds), CRD schemas for the
operator kinds, and checkov on the Kubernetes manifests and Dockerfiles.

The schema checkers come with the ``checks`` extra; checkov runs from a virtualenv of its own
(:mod:`stackwright.render.checkov_env`), which callers install beforehand with progress output.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from ..extras import require
from .checkov_env import CHECKOV_VERSION, CheckovMissing, find_checkov, install_checkov, require_checkov
from .k8s.kustomize import build_kustomization
from .yamlio import load_all

__all__ = ["CHECKOV_VERSION", "CheckResult", "CheckovMissing", "find_checkov", "install_checkov", "run_checkov",
           "run_checks", "validate_schemas"]

KUBERNETES_VERSION = "1.33"
SCHEMA_DIR = Path(__file__).with_name("schemas")
SKIPS_FILE = Path(__file__).with_name("checkov_skips.yaml")


@dataclass
class CheckResult:
    """Outcome of one checker over the bundle."""

    name: str
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    failures: list[str] = field(default_factory=list)
    #: findings that do not fail the check (e.g. cfn-lint warnings), printed by ``render --check``
    warnings: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return self.failed == 0


# ------------------------------------------------------------------ documents


def k8s_documents(out_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Every object of the rendered ``k8s/`` tree: the base, each overlay as built, the migrations."""
    root = Path(out_dir) / "k8s"
    docs: dict[str, list[dict[str, Any]]] = {}
    if (root / "base" / "kustomization.yaml").is_file():
        docs["base"] = build_kustomization(root / "base")
    for folder in sorted((root / "overlays").glob("*/")):
        docs[f"overlays/{folder.name}"] = build_kustomization(folder)
    if (root / "migrations" / "kustomization.yaml").is_file():
        docs["migrations"] = build_kustomization(root / "migrations")
    return docs


# ------------------------------------------------------------------ schemas


@cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """``(apiVersion, kind) -> openAPIV3Schema`` of every vendored CRD schema."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(SCHEMA_DIR.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        out[(doc["apiVersion"], doc["kind"])] = doc["openAPIV3Schema"]
    return out


def _where(label: str, doc: dict[str, Any]) -> str:
    return f"{label}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def validate_schemas(documents: dict[str, list[dict[str, Any]]]) -> tuple[CheckResult, CheckResult]:
    """kubernetes-validate (strict) on built-in kinds and jsonschema on CRD kinds.

    Raises :class:`stackwright.extras.MissingExtra` when the ``checks`` extra is not installed.
    """
    require("checks")
    import jsonschema
    import kubernetes_validate

    builtin = CheckResult(f"kubernetes-validate --strict (k8s {KUBERNETES_VERSION})")
    crds = CheckResult("CRD schemas (jsonschema)")
    schemas = crd_schemas()
    validators = {k: jsonschema.Draft7Validator(v) for k, v in schemas.items()}
    unknown: set[str] = set()
    for label, docs in documents.items():
        for doc in docs:
            k = (doc["apiVersion"], doc["kind"])
            if k in validators:
                errors = sorted(validators[k].iter_errors(doc), key=lambda e: list(e.absolute_path))
                if errors:
                    crds.failed += 1
                    crds.failures += [f"{_where(label, doc)}: {'/'.join(map(str, e.absolute_path))}: {e.message}"
                                      for e in errors[:5]]
                else:
                    crds.passed += 1
                continue
            if "." in doc["apiVersion"].split("/")[0] and not doc["apiVersion"].endswith(".k8s.io/v1") \
                    and doc["apiVersion"].split("/")[0] not in _BUILTIN_GROUPS:
                crds.skipped += 1
                unknown.add(f"{doc['apiVersion']} {doc['kind']}")
                continue
            try:
                kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
                builtin.passed += 1
            except kubernetes_validate.ValidationError as exc:
                builtin.failed += 1
                builtin.failures.append(f"{_where(label, doc)}: {'.'.join(map(str, exc.path))}: {exc.message}")
            except kubernetes_validate.SchemaNotFoundError:
                builtin.failed += 1
                builtin.failures.append(f"{_where(label, doc)}: no Kubernetes schema for {doc['apiVersion']}")
    if unknown:
        crds.note = "no vendored schema for: " + ", ".join(sorted(unknown))
    return builtin, crds


_BUILTIN_GROUPS = frozenset({
    "networking.k8s.io", "policy", "autoscaling", "apps", "batch", "rbac.authorization.k8s.io",
    "storage.k8s.io", "scheduling.k8s.io", "coordination.k8s.io", "discovery.k8s.io",
})


# ------------------------------------------------------------------ checkov


def checkov_skips() -> dict[str, str]:
    """``check id -> reason`` from checkov_skips.yaml (the one place skips are declared)."""
    data = yaml.safe_load(SKIPS_FILE.read_text())
    return {s["id"]: s["reason"] for s in data["skips"]}


def _json_values(text: str) -> list[Any]:
    """checkov prints one JSON value per framework, sometimes several back to back."""
    decoder, values, i = json.JSONDecoder(), [], 0
    while True:
        rest = text[i:].lstrip()
        if not rest:
            return values
        value, end = decoder.raw_decode(rest)
        values += value if isinstance(value, list) else [value]
        i = len(text) - len(rest) + end


def run_checkov(root: Path, *, skip_paths: tuple[str, ...] = ("overlays",)) -> CheckResult:
    """checkov (kubernetes + dockerfile frameworks, offline) over a rendered bundle in one run.

    Raises :class:`CheckovMissing` (with the install command) when checkov is not installed.
    """
    result = CheckResult("checkov --skip-download (kubernetes, dockerfile)")
    exe = require_checkov()
    cmd = [str(exe), "--skip-download", "--quiet", "--compact", "-o", "json", "-d", str(root),
           "--framework", "kubernetes", "dockerfile", "--skip-check", ",".join(sorted(checkov_skips()))]
    for p in skip_paths:
        cmd += ["--skip-path", p]
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    try:
        reports = _json_values(proc.stdout)
    except json.JSONDecodeError:
        reports = []
    reports = [r for r in reports if isinstance(r, dict) and "summary" in r]
    if not reports or proc.returncode not in (0, 1):
        result.failed += 1
        result.failures.append(f"checkov exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-500:]}")
        return result
    for report in reports:
        summary = report["summary"]
        result.passed += summary.get("passed", 0)
        result.failed += summary.get("failed", 0) + summary.get("parsing_errors", 0)
        result.skipped += summary.get("skipped", 0)
        for f in report.get("results", {}).get("failed_checks", []):
            result.failures.append(f"{f['check_id']} {f['check_name']}: {f.get('file_path')} {f.get('resource')}")
    frameworks = sorted({r.get("check_type", "?") for r in reports})
    result.note = f"frameworks: {', '.join(frameworks)}; skipped by checkov_skips.yaml: {len(checkov_skips())} checks"
    return result


# ------------------------------------------------------------------ all together


def run_checks(out_dir: Path) -> list[CheckResult]:
    """Every check over a rendered bundle, in a fixed order.

    Raises :class:`stackwright.extras.MissingExtra` or :class:`CheckovMissing` when a checker is absent.
    """
    out_dir = Path(out_dir)
    results: list[CheckResult] = []
    documents = k8s_documents(out_dir)
    if documents:
        results += validate_schemas(documents)
    if (out_dir / "k8s").is_dir() or (out_dir / "docker").is_dir():
        results.append(run_checkov(out_dir))
    return results


def load_documents(path: Path) -> list[dict[str, Any]]:
    """All YAML documents of one file."""
    return load_all(Path(path).read_text())
