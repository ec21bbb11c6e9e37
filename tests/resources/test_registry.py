"""The resource-kind registry: every kind is registered once, the tables derived from it match what
the renderers and plan always used, and importing the kinds stays light."""

from __future__ import annotations

import subprocess
import sys

from stackwright.plan.k8s import SECRET_KINDS
from stackwright.render.k8s.config import SECRET_URL_KINDS
from stackwright.render.k8s.network import AWS_API_KINDS, DATA_STORE_PORTS
from stackwright.resources import KINDS, ResourceKind, kind_of
from stackwright.spec import PostgresResource, QueueResource


def test_original_kinds_are_registered_with_their_models() -> None:
    assert {"postgres", "redis", "queue", "bucket", "topic", "search"} <= set(KINDS)
    for name, impl in KINDS.items():
        assert isinstance(impl, ResourceKind) and impl.kind == name
        assert impl.model.model_fields["kind"].annotation.__args__ == (name,)
    assert kind_of(QueueResource(kind="queue")).model is QueueResource
    assert KINDS["postgres"].model is PostgresResource


def test_derived_tables_keep_the_original_kinds() -> None:
    originals = {"postgres", "redis", "queue", "bucket", "topic", "search"}
    assert SECRET_KINDS & originals == {"postgres", "redis", "bucket", "topic", "search"}
    assert SECRET_URL_KINDS & originals == {"postgres", "redis", "search"}
    assert {k: v for k, v in DATA_STORE_PORTS.items() if k in originals} == {
        "postgres": 5432, "redis": 6379, "search": 443}
    assert {k: v for k, v in AWS_API_KINDS.items() if k in originals} == {
        "queue": True, "bucket": False, "topic": False}


def test_importing_the_kinds_loads_no_heavy_dependency() -> None:
    code = ("import sys, stackwright.resources, stackwright.spec; "
            "heavy = [m for m in ('aws_cdk', 'asyncpg', 'stackwright.local', 'stackwright.render', "
            "'stackwright.plan') if m in sys.modules]; print(heavy)")
    for first in ("stackwright.resources", "stackwright.spec", "stackwright.resources.postgres"):
        out = subprocess.run([sys.executable, "-c", f"import {first}; " + code], capture_output=True, text=True,
                             check=True)
        assert out.stdout.strip() == "[]", (first, out.stdout, out.stderr)
