"""checkov suppressions, each with its reason, read from the one file ``checkov_skips.yaml``.

Every entry names a check, why it does not apply, and which resources it covers (a CloudFormation
type and an optional glob on the construct path). An aspect writes the matching entries into each
resource's ``Metadata.checkov.skip`` at synth, so checkov reports them as skipped *with the reason*,
and every other resource is still checked.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import jsii
import yaml
from aws_cdk import CfnResource, IAspect
from constructs import IConstruct

SKIPS_FILE = Path(__file__).with_name("checkov_skips.yaml")


@dataclass(frozen=True)
class Skip:
    """One suppression: ``check`` is skipped on resources of ``type`` whose path matches ``path``."""

    check: str
    reason: str
    type: str
    path: str = "*"

    def matches(self, resource_type: str, construct_path: str) -> bool:
        """Whether this skip covers a resource."""
        return resource_type == self.type and fnmatch.fnmatchcase(construct_path, self.path)


@cache
def load_skips(path: Path = SKIPS_FILE) -> tuple[Skip, ...]:
    """Parse the skips file; every entry must have a check id, a reason and a resource type."""
    entries = yaml.safe_load(path.read_text()) or []
    skips = []
    for entry in entries:
        missing = {"check", "reason", "type"} - set(entry)
        if missing:
            raise ValueError(f"{path}: entry {entry!r} lacks {', '.join(sorted(missing))}")
        skips.append(Skip(check=entry["check"], reason=" ".join(str(entry["reason"]).split()), type=entry["type"],
                          path=entry.get("path", "*")))
    return tuple(skips)


@jsii.implements(IAspect)
class CheckovSkips:
    """Aspect adding ``Metadata: {checkov: {skip: [{id, comment}]}}`` to the resources a skip covers."""

    def __init__(self, skips: tuple[Skip, ...] | None = None) -> None:
        self.skips = load_skips() if skips is None else skips

    def visit(self, node: IConstruct) -> None:
        """Annotate one construct (only CloudFormation resources are touched)."""
        if not isinstance(node, CfnResource):
            return
        path = node.node.path
        found = [s for s in self.skips if s.matches(node.cfn_resource_type, path)]
        if found:
            node.add_metadata("checkov", {"skip": [{"id": s.check, "comment": s.reason} for s in found]})
