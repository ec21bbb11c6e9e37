"""The AWS app for a spec whose routes are limited to hosts (speech: api., backend., platform.): each name is
on the regional certificate and has a Route 53 record pointing at the region's ALB origin."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from stackwright.deploy import names as naming
from stackwright.spec import load_system

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _of_type(template: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [r["Properties"] for r in template["Resources"].values() if r["Type"] == kind]


def test_route_hosts_get_certificate_names_and_dns_records(tmp_path: Path) -> None:
    from stackwright.render.aws import build_app

    system = load_system("speech", root=ROOT)
    app, stacks = build_app(system, outdir=str(tmp_path))
    app.synth()
    templates = {s.stack_name: json.loads((tmp_path / s.template_file).read_text()) for s in stacks.all()}
    env = "prod"
    hosts = [f"{label}.{system.edge.domain}" for label in ("api", "backend", "platform")]
    assert naming.route_hosts(system, env) == hosts

    dns = templates[naming.global_stack_name(system, env)]
    origin = naming.origin_host(system, env, system.primary_region.name)
    records = {r["Name"].rstrip("."): r["ResourceRecords"] for r in _of_type(dns, "AWS::Route53::RecordSet")
               if r["Type"] == "CNAME"}
    for host in hosts:
        assert records[host] == [origin], host

    regional = templates[naming.regional_stack_name(system, env, system.primary_region.name)]
    (cert,) = _of_type(regional, "AWS::CertificateManager::Certificate")
    assert set(hosts) <= set(cert["SubjectAlternativeNames"])
    assert len(cert["SubjectAlternativeNames"]) == len(set(cert["SubjectAlternativeNames"]))  # api. once
