"""The ``secret`` kind, added as one module plus a registration line: spec, wiring, local store,
plan cost and Kubernetes output."""

from __future__ import annotations

import asyncio
import json
import shutil
import stat
from pathlib import Path

import pytest
import yaml

from stackwright.plan.builder import build_plan
from stackwright.render.k8s import build_manifests
from stackwright.resources import kind_of
from stackwright.spec import SpecError, load_system

ROOT = Path(__file__).resolve().parents[2]


def _system(tmp_path: Path, secret: dict | None) -> Path:
    """fastapi-app with (or without) a ``tenant-creds`` secret its api uses."""
    dest = tmp_path / "fastapi-app"
    shutil.copytree(ROOT / "systems" / "fastapi-app", dest, ignore=shutil.ignore_patterns(".stackwright"))
    spec = yaml.safe_load((dest / "system.yaml").read_text())
    if secret is not None:
        spec["resources"]["tenant-creds"] = {"kind": "secret", **secret}
        spec["services"]["api"]["uses"].append("tenant-creds")
    (dest / "system.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return dest / "system.yaml"


def test_spec_accepts_a_secret_and_rejects_bad_keys(tmp_path: Path) -> None:
    system = load_system(_system(tmp_path / "ok", {"keys": ["api_key", "tenant_token"]}))
    assert system.resources["tenant-creds"].keys == ["api_key", "tenant_token"]
    with pytest.raises(SpecError, match=r"system.yaml:\d+.*lower_snake_case"):
        load_system(_system(tmp_path / "bad", {"keys": ["Api-Key"]}))


def _objects(system, kind: str) -> list[dict]:
    region = system.primary_region.name
    return [o for o in build_manifests(system, region, system.environments[0]) if o["kind"] == kind]


def test_eks_wiring_configmap_and_network_policy(tmp_path: Path) -> None:
    system = load_system(_system(tmp_path, {}))
    env = system.environments[0]
    config = next(o for o in _objects(system, "ConfigMap") if o["metadata"]["name"] == "api-config")
    # One region: no replicas; secrets made at run time are encrypted with the data key.
    assert config["data"]["TENANT_CREDS_URL"] == (
        f"secretsmanager://{system.name}/{env}/tenant-creds?region={system.primary_region.name}"
        f"&kms=alias/{system.name}-{env}/data")
    policy = next(o for o in _objects(system, "NetworkPolicy") if o["metadata"]["name"] == "api")
    ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule.get("ports", [])}
    assert 443 in ports  # Secrets Manager API


def test_local_store_is_a_private_json_file_that_keeps_values(tmp_path: Path) -> None:
    system = load_system(_system(tmp_path, {"keys": ["api_key"]}))
    res = system.resources["tenant-creds"]

    class Ctx:
        state_dir = tmp_path / "state"
        backing: dict = {}

        def __init__(self) -> None:
            self.system = system

        def report(self, line: str) -> None:
            pass

    url = asyncio.run(kind_of(res).provision_local("tenant-creds", res, Ctx()))
    path = Path(url.removeprefix("file://"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text(json.dumps({"api_key": "real"}))
    res.keys.append("other")
    asyncio.run(kind_of(res).provision_local("tenant-creds", res, Ctx()))
    values = json.loads(path.read_text())
    assert values["api_key"] == "real" and len(values["other"]) >= 32


def _secrets_line(tmp_path: Path, secret: dict | None) -> str:
    plan = build_plan(load_system(_system(tmp_path, secret)))
    return next(ln.item for ln in plan.cost.lines if ln.category == "secrets")


def test_plan_prices_the_secret(tmp_path: Path) -> None:
    before = _secrets_line(tmp_path / "without", None)
    after = _secrets_line(tmp_path / "with", {})
    count = int(before.split(": ")[1].split()[0])
    assert after == f"Secrets Manager: {count + 1} secrets"


def test_multi_region_wiring_names_the_replicas_and_the_standby_reads_its_own() -> None:
    """payments (us-east-1 primary, sa-east-1 standby): run-time secrets are created with a replica in the
    standby, whose services read that replica (not the primary's region, which a failover may have lost)."""
    system = load_system(ROOT / "systems" / "payments" / "system.yaml")
    env = system.environments[0]

    def url(region: str) -> str:
        config = next(o for o in build_manifests(system, region, env)
                      if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "account-config")
        return str(config["data"]["TENANT_SECRETS_URL"])

    base = f"secretsmanager://payments/{env}/tenant-secrets?region=us-east-1&kms=alias/payments-{env}/data"
    assert url("us-east-1") == f"{base}&replicas=sa-east-1"
    assert url("sa-east-1") == f"{base}&replicas=sa-east-1&read_region=sa-east-1"
