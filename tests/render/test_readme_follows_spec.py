"""The bundle README describes the bundle that was rendered: the probes the manifests carry (fastapi-app's
`/health`, not the runtime's default `/healthz`/`/readyz`), only the operators and AWS features the system uses
(no Argo Rollouts, KEDA, DNS failover or WAF where the spec has none), only the placeholders the overlays keep,
and that `--target eks` is the default. Checked for every system under systems/."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from stackwright.deploy import names as naming
from stackwright.render.bundle import render_files
from stackwright.spec import load_system

ROOT = Path(__file__).resolve().parents[2]
SYSTEMS = sorted(p.parent.name for p in (ROOT / "systems").glob("*/system.yaml"))


def _probe_paths(k8s: list[str]) -> dict[str, tuple[str, str, str]]:
    """(startup, liveness, readiness) path of each workload's container, from the rendered manifests."""
    out: dict[str, tuple[str, str, str]] = {}
    for text in k8s:
        for doc in yaml.safe_load_all(text):
            if not isinstance(doc, dict) or doc.get("kind") not in {"Deployment", "Rollout", "StatefulSet"}:
                continue
            if "template" not in doc["spec"]:
                continue  # a Rollout that points at its Deployment (workloadRef) carries no pod template
            for c in doc["spec"]["template"]["spec"]["containers"]:
                out[c["name"]] = tuple(c[f"{p}Probe"]["httpGet"]["path"] for p in ("startup", "liveness", "readiness"))
    return out


@pytest.mark.parametrize("name", SYSTEMS)
def test_bundle_readme_says_what_was_rendered(name: str) -> None:
    system = load_system(ROOT / "systems" / name)
    files = render_files(system, ("k8s", "docker", "ci", "aws"))
    readme = files["README.md"]
    k8s_texts = [t for rel, t in files.items() if rel.startswith("k8s/")]
    manifests = "\n".join(k8s_texts)

    assert f"`stackwright render {name}` (`--target eks`, the default" in readme
    probes = _probe_paths(k8s_texts)
    assert set(probes) == set(system.services)
    for startup, live, ready in probes.values():
        assert f"startup `{startup}`, liveness `{live}`, readiness `{ready}`" in readme
    assert ("Argo Rollouts" in readme) == ("kind: Rollout" in manifests)
    assert ("KEDA" in readme) == ("kind: ScaledObject" in manifests)
    assert ("WAF" in readme) == (system.edge.waf is not None)
    assert ("failover records" in readme) == (len(system.regions) > 1)
    for placeholder in naming.PLACEHOLDERS:
        assert (f"${{{placeholder}}}" in readme) == (f"${{{placeholder}}}" in manifests), placeholder
    kinds = {r.kind for r in system.resources.values()}
    assert ("| Redis |" in readme) == ("redis" in kinds)
    assert ("| SQS queue |" in readme) == ("queue" in kinds)
    assert ("| S3 bucket |" in readme) == ("bucket" in kinds)
    assert ("External Secrets" in readme) == ("kind: ExternalSecret" in manifests)


@pytest.mark.parametrize("name", SYSTEMS)
def test_aws_readme_names_only_what_the_spec_makes(name: str) -> None:
    """aws/README.md said "Secondary regions join the primary's Aurora Global Database" and listed Redis,
    search and failover records for fastapi-app (one region, an external database)."""
    system = load_system(ROOT / "systems" / name)
    text = render_files(system, ("aws",))["aws/README.md"]
    pgs = [r for r in system.resources.values() if r.kind == "postgres"]
    kinds = {r.kind for r in system.resources.values()}
    multi = len(system.regions) > 1
    global_db = multi and any(r.engine == "aurora-postgresql" and r.cross_region_replicas for r in pgs)
    assert ("Aurora Global Database" in text) == global_db
    assert ("auth-token" in text) == ("redis" in kinds)
    assert ("opensearchservice" in text) == ("search" in kinds)
    assert ("failover, PRIMARY" in text) == multi
    assert ("waf-acl-arn" in text) == (system.edge.waf is not None)
    assert ("CREATE ROLE" in text) == any(r.engine != "external" for r in pgs)
    assert ("`url` of an external database" in text) == any(r.engine == "external" for r in pgs)


def test_fastapi_app_readme_names_its_health_path_and_no_absent_feature() -> None:
    readme = render_files(load_system(ROOT / "systems" / "fastapi-app"), ("k8s", "docker", "ci", "aws"))["README.md"]
    assert "probes (startup `/health`, liveness `/health`, readiness `/health`; on the application port)" in readme
    for absent in ("Argo Rollouts", "KEDA", "WAF", "DNS failover,", "`/healthz` and `/readyz`"):
        assert absent not in readme, absent
