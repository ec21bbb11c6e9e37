"""The AWS side of ``stackwright render --target eks``: a CDK app (Python) built from the spec.

* :func:`render_aws` returns the files of the generated app (``aws/app.py``, ``aws/system.yaml``,
  ``aws/cdk.json``, ``aws/cdk.context.json``, ``aws/requirements.txt``, ``aws/README.md``). The app is
  tiny: it loads the copied ``system.yaml`` and calls :func:`build_app` from this package, whose
  construct library (:mod:`stackwright.render.aws.constructs`) does the work.
* :func:`synth` synthesizes the CloudFormation templates offline (no AWS account, no CDK CLI).
* :mod:`stackwright.deploy` decides the physical names, placement, subnets and scale the Kubernetes side
  and the plan share.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from stackwright.spec.model import System

from .files import render_aws

# jsii starts a Node process; quiet its banner about the Node version before aws_cdk is imported (the CLI says
# it in one line instead: node_notice). The banner goes to stderr as Python bytes reprs, eleven lines of them.
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION", "1")

#: The oldest Node major that jsii (aws-cdk-lib's runtime) still supports; Node 20 left its support on 2026-10-30
#: (jsii's own end-of-life banner, which names that date).
SUPPORTED_NODE_MAJOR = 22


def node_major() -> int | None:
    """The major version of the ``node`` on PATH, or None if there is none (or it cannot say)."""
    try:
        out = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=10, check=False).stdout
        return int(out.strip().lstrip("v").split(".", 1)[0])
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def node_notice() -> str | None:
    """One line when the Node that will run the CDK synthesis is older than jsii supports (synthesis still
    works), else None. Also keeps jsii's own multi-line banner about it off stderr."""
    major = node_major()
    if major is None or major >= SUPPORTED_NODE_MAJOR:
        return None
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", str(major))
    return (f"Node {major} is past the CDK runtime's (jsii) support; synthesis still works, but install Node "
            f"{SUPPORTED_NODE_MAJOR} or later to stay supported")

if TYPE_CHECKING:
    from aws_cdk import App

    from .stacks import Stacks

__all__ = ["build_app", "render_aws", "synth"]


def build_app(system: System, environment: str | None = None, account: str | None = None,
              outdir: str | None = None) -> tuple[App, Stacks]:
    """Build the CDK app of ``system`` (see :func:`stackwright.render.aws.stacks.build_app`).

    ``aws_cdk`` is imported here, not at package import, so rendering files needs no Node process.
    """
    from .stacks import build_app as _build

    return _build(system, environment=environment, account=account, outdir=outdir)


def synth(system: System, outdir: Path | str, environment: str | None = None) -> list[Path]:
    """Synthesize the CloudFormation templates of ``system`` into ``outdir``; return their paths in deploy order.

    Runs fully offline: the placeholder account and the pre-filled AZ context stand in for lookups.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    app, stacks = build_app(system, environment=environment, outdir=str(outdir))
    app.synth()
    return [outdir / stack.template_file for stack in stacks.all()]
