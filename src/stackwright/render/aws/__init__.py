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
from pathlib import Path
from typing import TYPE_CHECKING

from stackwright.spec.model import System

from .files import render_aws

# jsii starts a Node process; quiet its banner about the Node version before aws_cdk is imported.
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION", "1")

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
