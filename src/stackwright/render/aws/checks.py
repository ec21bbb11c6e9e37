"""Offline checkers over synthesized templates: cfn-lint and checkov (used by tests and ``render --check``).

Both run as subprocesses. cfn-lint comes with the ``aws`` extra; checkov lives in a virtualenv of its own,
the same one the Kubernetes checks use (:mod:`stackwright.render.checkov_env`), installed beforehand.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stackwright.spec.model import System


class CheckerMissing(RuntimeError):
    """A checker executable is not installed; the message says how to install it."""


def _hint(name: str, env_var: str) -> str:
    from stackwright.extras import install_command

    return f"{name} not found: {install_command('aws')} (or set ${env_var})"


@dataclass
class Finding:
    """One problem a checker reported."""

    check: str
    level: str
    file: str
    resource: str
    message: str

    def __str__(self) -> str:
        return f"{self.level} {self.check} {Path(self.file).name} {self.resource}: {self.message}"


@dataclass
class CheckResult:
    """What one checker said about a set of templates."""

    tool: str
    errors: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    passed: int = 0
    skipped: int = 0
    skipped_checks: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No errors (cfn-lint) / no failed checks (checkov)."""
        return not self.errors

    def summary(self) -> str:
        """One line of counts."""
        return (f"{self.tool}: {len(self.errors)} errors, {len(self.warnings)} warnings, {self.passed} passed, "
                f"{self.skipped} skipped")


def find_tool(name: str, env_var: str) -> str:
    """Path of a checker executable (``$env_var``, beside this interpreter, or on ``PATH``)."""
    candidates = [os.environ.get(env_var), str(Path(sys.executable).with_name(name)), shutil.which(name)]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise CheckerMissing(_hint(name, env_var))


def cfn_lint(templates: list[Path]) -> CheckResult:
    """Run cfn-lint on ``templates``; errors are findings of level Error."""
    exe = find_tool("cfn-lint", "CFN_LINT")
    proc = subprocess.run([exe, "--format", "json", *map(str, templates)], capture_output=True, text=True,
                          check=False)
    # Exit code is a bit mask: 2 errors, 4 warnings, 8 informational; anything else is a crash.
    if proc.returncode & ~0b1110:
        raise RuntimeError(f"cfn-lint failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    result = CheckResult(tool="cfn-lint")
    for match in json.loads(proc.stdout or "[]"):
        finding = Finding(check=match["Rule"]["Id"], level=match["Level"], file=match["Filename"],
                          resource="/".join(str(p) for p in match.get("Location", {}).get("Path", [])[:2]),
                          message=match["Message"])
        (result.errors if match["Level"] == "Error" else result.warnings).append(finding)
    return result


def checkov(templates: list[Path]) -> CheckResult:
    """Run checkov (CloudFormation framework, offline) on ``templates``; failed checks are errors.

    Raises :class:`stackwright.render.checkov_env.CheckovMissing` when checkov is not installed.
    """
    from stackwright.render.checkov_env import require_checkov

    exe = str(require_checkov())
    cmd = [exe, "--skip-download", "--framework", "cloudformation", "--output", "json", "--compact",
           "--file", *map(str, templates)]
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode not in (0, 1) or not proc.stdout.strip():
        raise RuntimeError(f"checkov failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    reports = json.loads(proc.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    result = CheckResult(tool="checkov")
    for report in reports:
        if "results" not in report:  # an empty report: nothing of this framework was found
            continue
        results = report["results"]
        for failed in results.get("failed_checks", []):
            result.errors.append(Finding(check=failed["check_id"], level="FAILED", file=failed["file_path"],
                                         resource=failed["resource"], message=failed["check_name"]))
        result.passed += report["summary"]["passed"]
        result.skipped += report["summary"]["skipped"]
        result.skipped_checks += [(s["check_id"], s["resource"]) for s in results.get("skipped_checks", [])]
    return result


def run_checks(system: System, out_dir: Path) -> list[Any]:
    """Synthesize ``system`` into ``out_dir/cdk.out`` and run cfn-lint and checkov on the templates.

    Returns :class:`stackwright.render.checks.CheckResult` objects, like the Kubernetes checks, so
    ``render --check`` can print them together. cfn-lint warnings do not fail the check; each one is
    listed in the result's ``warnings``. Raises :class:`stackwright.extras.MissingExtra` without the
    ``aws`` extra and :class:`stackwright.render.checkov_env.CheckovMissing` without checkov.
    """
    from stackwright.extras import require
    from stackwright.render.checks import CheckResult as BundleResult

    require("aws")
    from . import synth

    templates = synth(system, Path(out_dir) / "cdk.out")
    out = []
    lint = cfn_lint(templates)
    out.append(BundleResult(f"cfn-lint ({len(templates)} templates)", passed=len(templates), failed=len(lint.errors),
                            failures=[str(e) for e in lint.errors], warnings=[str(w) for w in lint.warnings],
                            note=f"{len(lint.warnings)} warnings"))
    scan = checkov(templates)
    out.append(BundleResult("checkov --skip-download (cloudformation)", passed=scan.passed, failed=len(scan.errors),
                            skipped=scan.skipped, failures=[str(e) for e in scan.errors],
                            note="skips with reasons: src/stackwright/render/aws/checkov_skips.yaml"))
    return out
