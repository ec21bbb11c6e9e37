"""Optional parts of stackwright (the extras of ``pyproject.toml``) and how to install a missing one.

The core (spec, local run, render to files, plan) needs only the base dependencies. Two parts are
optional because they are heavy: ``aws`` (synthesizing the CDK app needs aws-cdk-lib, which brings a
Node.js runtime through jsii, plus cfn-lint) and ``checks`` (the Kubernetes schema checkers of
``render --check``). A command that needs one calls :func:`require` first, so a user without it gets
one line naming the packages and the exact install command instead of an ``ImportError``. Other extras
hold what some system's services import; a system lists them under ``extras:`` in its system.yaml and
the commands that start it check them with :func:`missing_for_system`.
"""

from __future__ import annotations

import importlib.util
import re
from importlib import metadata

#: extra name -> (import names that must be present, what the extra is for)
EXTRAS: dict[str, tuple[tuple[str, ...], str]] = {
    "aws": (("aws_cdk", "constructs", "cfnlint"), "synthesizing and linting the AWS CDK app"),
    "checks": (("jsonschema", "kubernetes_validate"), "checking rendered Kubernetes manifests"),
}


class MissingExtra(RuntimeError):
    """An optional part is not installed; ``str()`` is one line with the install command."""

    def __init__(self, extra: str, missing: list[str]) -> None:
        self.extra = extra
        self.missing = missing
        purpose = EXTRAS[extra][1]
        super().__init__(f"{purpose} needs the '{extra}' extra ({', '.join(missing)} not installed): "
                         f"{install_command(extra)}")


def missing_modules(extra: str) -> list[str]:
    """Import names of ``extra`` that cannot be imported here (empty when the extra is installed)."""
    modules, _ = EXTRAS[extra]
    return [m for m in modules if importlib.util.find_spec(m) is None]


def require(extra: str) -> None:
    """Raise :class:`MissingExtra` unless every module of ``extra`` is importable."""
    missing = missing_modules(extra)
    if missing:
        raise MissingExtra(extra, missing)


def requirements(extra: str) -> list[str]:
    """The pinned requirements of ``extra`` as the installed package declares them (e.g. ``cfn-lint==1.58.0``).

    Read from the package metadata so ``pyproject.toml`` stays the one place the pins live.
    """
    try:
        declared = metadata.requires("stackwright") or []
    except metadata.PackageNotFoundError:
        return []
    marker = re.compile(r"""extra\s*==\s*["']""" + re.escape(extra) + r"""["']""")
    return sorted(r.split(";")[0].strip() for r in declared if marker.search(r))


def missing_distributions(extra: str) -> list[str]:
    """Distributions ``extra`` pins (package metadata) that are not installed here, e.g. ``["pillow"]``;
    for an extra the installed package does not declare, ``[extra]`` itself (nothing can install it)."""
    pins = requirements(extra)
    if not pins:
        return [extra]
    missing = []
    for pin in pins:
        name = re.split(r"[\s\[<>=!~;]", pin, maxsplit=1)[0]
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
    return missing


def missing_for_system(system_name: str, extras: list[str]) -> str | None:
    """One line naming what a system's declared ``extras`` lack and how to install it, or None when all are
    installed. Extras are checked by their pinned distributions, so no import name needs listing."""
    problems = []
    for extra in extras:
        gone = missing_distributions(extra)
        if gone == [extra]:
            problems.append(f"'{extra}' is not an extra of this stackwright")
        elif gone:
            problems.append(f"the '{extra}' extra ({', '.join(gone)} not installed): {install_command(extra)}")
    if not problems:
        return None
    return f"the {system_name} system's services need " + "; ".join(problems)


def install_command(extra: str) -> str:
    """The shell command that installs ``extra`` into the running interpreter's environment."""
    pins = requirements(extra)
    if pins:
        return "pip install " + " ".join(f"'{p}'" if any(c in p for c in "<>=!~") else p for p in pins)
    return f"pip install -e '.[{extra}]'"
