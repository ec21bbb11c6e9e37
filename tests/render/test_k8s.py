"""Kubernetes manifests rendered for the voting system (rendered once for the module) and for a
synthetic system exercising what voting does not (NLB, GPU pool, per-tenant db, calls, public-only)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from stackwright.render import build_manifests, render_bundle
from stackwright.render.checks import k8s_documents, run_checkov, validate_schemas
from stackwright.render.k8s.kustomize import _set_images, build_kustomization, image_overrides
from stackwright.render.k8s.rollout import analysis_metrics
from stackwright.runtime.settings import resource_env, service_url_env
from stackwright.spec import System, load_system

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def voting() -> System:
    return load_system("voting", root=ROOT)


@pytest.fixture(scope="module")
def bundle(voting: System, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("render") / "voting"
    render_bundle(voting, out, targets=("k8s", "docker", "ci"))
    return out


@pytest.fixture(scope="module")
def prod(voting: System) -> list[dict[str, Any]]:
    return build_manifests(voting, "us-east-1", "prod")


def by_kind(objs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def pod_spec(o: dict[str, Any]) -> dict[str, Any]:
    return o["spec"]["template"]["spec"]


# ------------------------------------------------------------------ checkers


def test_schemas_pass_on_every_overlay(bundle: Path, checks_extra: None) -> None:
    docs = k8s_documents(bundle)
    assert {"base", "migrations"} <= set(docs)
    assert len([k for k in docs if k.startswith("overlays/")]) == 6  # 3 regions x 2 environments
    builtin, crds = validate_schemas(docs)
    assert builtin.ok, builtin.failures
    assert builtin.passed > 200
    assert crds.ok, crds.failures
    assert crds.passed > 0 and crds.skipped == 0, crds.note


def test_checkov_has_no_failures(bundle: Path, checkov_exe: Path) -> None:
    result = run_checkov(bundle)
    assert result.ok, "\n".join(result.failures)
    assert result.passed > 500
    assert "dockerfile" in result.note and "kubernetes" in result.note


# ------------------------------------------------------------------ overlays are the builds


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1", "ap-southeast-1"])
@pytest.mark.parametrize("env", ["staging", "prod"])
def test_overlay_equals_build(voting: System, bundle: Path, region: str, env: str) -> None:
    built = build_kustomization(bundle / "k8s" / "overlays" / f"{region}-{env}")
    expected = build_manifests(voting, region, env)
    _set_images(expected, {i["name"]: i for i in image_overrides(voting, region)})
    assert built == expected


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with kustomize) not installed")
def test_real_kustomize_agrees(bundle: Path) -> None:
    import yaml

    folder = bundle / "k8s" / "overlays" / "eu-west-1-staging"
    out = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True, text=True, check=True).stdout
    real = sorted((d for d in yaml.safe_load_all(out) if d), key=lambda d: (d["kind"], d["metadata"]["name"]))
    ours = sorted(build_kustomization(folder), key=lambda d: (d["kind"], d["metadata"]["name"]))
    assert real == ours


# ------------------------------------------------------------------ workloads


def test_every_pod_is_restricted_and_probed(prod: list[dict[str, Any]], voting: System) -> None:
    deployments = by_kind(prod, "Deployment")
    assert set(deployments) == set(voting.services)
    for name, d in deployments.items():
        spec = pod_spec(d)
        assert spec["serviceAccountName"] == name and spec["automountServiceAccountToken"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        (c,) = spec["containers"]
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"]["drop"] == ["ALL"] and sc["runAsUser"] >= 10000
        assert {"mountPath": "/tmp", "name": "tmp"} in c["volumeMounts"]
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert "startupProbe" in c
        svc = voting.services[name]
        assert c["resources"]["requests"] == {"cpu": svc.resources.cpu, "memory": svc.resources.memory}
        assert c["resources"]["limits"]["memory"] == svc.resources.effective_memory_limit
        keys = [t["topologyKey"] for t in spec["topologySpreadConstraints"]]
        assert keys == ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]


def test_service_accounts_have_their_own_role(prod: list[dict[str, Any]], voting: System) -> None:
    sas = by_kind(prod, "ServiceAccount")
    for name in voting.services:
        arn = sas[name]["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
        assert arn.endswith(f":role/voting-prod-us-east-1-{name}")


def test_canary_is_a_rollout_judged_by_the_spec_thresholds(prod: list[dict[str, Any]]) -> None:
    rollouts = by_kind(prod, "Rollout")
    assert set(rollouts) == {"vote"}
    ro = rollouts["vote"]["spec"]
    assert ro["workloadRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "vote",
                                 "scaleDown": "onsuccess"}
    assert by_kind(prod, "Deployment")["vote"]["spec"]["replicas"] == 0
    weights = [s for s in ro["strategy"]["canary"]["steps"] if "setWeight" in s]
    assert weights == [{"setWeight": 10}, {"setWeight": 50}]
    assert {"pause": {"duration": "120s"}} in ro["strategy"]["canary"]["steps"]
    template = by_kind(prod, "AnalysisTemplate")["vote-canary"]["spec"]
    conditions = {m["name"]: m["successCondition"] for m in template["metrics"]}
    assert conditions["error-rate"].endswith("result[0] <= 0.01")
    assert conditions["latency-p99"].endswith("result[0] <= 0.2")
    assert conditions["success-rate-drop"].endswith("result[0] <= 0.02")
    for m in template["metrics"]:
        query = m["provider"]["prometheus"]["query"]
        assert 'app_name="vote"' in query and "{{args.canary-hash}}" in query
        assert "starlette_request" in query
    hpa = by_kind(prod, "HorizontalPodAutoscaler")["vote"]["spec"]
    assert hpa["scaleTargetRef"]["kind"] == "Rollout"


def test_analysis_metrics_are_public_for_rehearsals(voting: System) -> None:
    metrics = analysis_metrics("vote", voting.services["vote"].rollout.analysis)
    assert [m["name"] for m in metrics] == ["error-rate", "latency-p99", "success-rate-drop"]
    assert metrics[1]["max"] == 0.2


def test_default_analysis_takes_p99_from_the_slo(voting: System) -> None:
    from stackwright.render.k8s.rollout import effective_analysis

    spec = voting.model_copy(deep=True)
    spec.services["results"].rollout = type(spec.services["results"].rollout)(strategy="canary")
    assert effective_analysis(spec, "results").max_p99_ms == spec.slo.latency_p99_ms == 200
    assert effective_analysis(spec, "vote").max_p99_ms == 200  # written in the spec


def test_autoscaling_matches_the_spec(prod: list[dict[str, Any]], voting: System) -> None:
    hpas = by_kind(prod, "HorizontalPodAutoscaler")
    assert set(hpas) == {"auth", "vote", "results", "web"}
    assert hpas["vote"]["spec"]["minReplicas"] == 10 and hpas["vote"]["spec"]["maxReplicas"] == 100
    cpu = hpas["vote"]["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"]
    assert cpu == 60
    so = by_kind(prod, "ScaledObject")["worker"]["spec"]
    assert (so["minReplicaCount"], so["maxReplicaCount"]) == (2, 20)
    (trigger,) = so["triggers"]
    assert trigger["type"] == "aws-sqs-queue"
    assert trigger["metadata"]["queueURL"] == "voting-prod-votes" and trigger["metadata"]["queueLength"] == "1000"
    assert by_kind(prod, "TriggerAuthentication")["worker-aws"]["spec"]["podIdentity"]["provider"] == "aws"
    for name, pdb in by_kind(prod, "PodDisruptionBudget").items():
        low = voting.services[name].replicas.min
        assert 1 <= pdb["spec"]["minAvailable"] < low


def test_staging_is_smaller(voting: System) -> None:
    staging = build_manifests(voting, "eu-west-1", "staging")
    hpa = by_kind(staging, "HorizontalPodAutoscaler")["vote"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 5)
    assert by_kind(staging, "PodDisruptionBudget")["vote"]["spec"]["minAvailable"] == 1


# ------------------------------------------------------------------ settings and secrets


def test_settings_follow_the_runtime_contract(voting: System) -> None:
    objs = build_manifests(voting, "eu-west-1", "prod")
    config = by_kind(objs, "ConfigMap")["worker-config"]["data"]
    for key in ("SERVICE_NAME", "SYSTEM_NAME", "ENVIRONMENT", "REGION", "REGION_ROLE", "PORT", "JWT_ISSUER",
                "JWT_AUDIENCE", "JWKS_URL", "JWT_ALGORITHMS", "JWT_ROLES_CLAIM"):
        assert key in config
    assert config["REGION"] == "eu-west-1" and config["REGION_ROLE"] == "secondary"
    assert config[resource_env("votes", "QUEUE")] == "voting-prod-votes"
    assert config[resource_env("votes", "MAX_RECEIVE")] == "5"
    assert config[resource_env("votes", "VISIBILITY_TIMEOUT")] == "30"
    assert config[resource_env("db", "POOL_MIN")] == "2" and config[resource_env("db", "POOL_MAX")] == "20"
    assert config[resource_env("audit")].startswith("s3://voting-prod-audit-")
    secret = by_kind(objs, "ExternalSecret")["worker"]["spec"]
    keys = {d["secretKey"]: d["remoteRef"] for d in secret["data"]}
    assert keys[resource_env("db")] == {"key": "voting/prod/db/users/worker", "property": "url"}
    assert keys[resource_env("db", "READ_URL")]["property"] == "read_url"
    assert keys[resource_env("cache")]["key"] == "voting/prod/cache/auth-token"


def test_no_literal_secrets(prod: list[dict[str, Any]]) -> None:
    assert not [o for o in prod if o["kind"] == "Secret"]
    for d in by_kind(prod, "Deployment").values():
        (c,) = pod_spec(d)["containers"]
        assert "env" not in c  # everything comes from the ConfigMap or the ESO-managed Secret
    stores = by_kind(prod, "SecretStore")
    assert stores["vote"]["spec"]["provider"]["aws"]["service"] == "SecretsManager"


# ------------------------------------------------------------------ network


def test_network_policies(prod: list[dict[str, Any]]) -> None:
    nps = by_kind(prod, "NetworkPolicy")
    assert nps["default-deny"]["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    dns = nps["allow-dns"]["spec"]["egress"][0]
    assert {"port": 53, "protocol": "UDP"} in dns["ports"]
    vote = nps["vote"]["spec"]
    ports = {p["port"] for rule in vote["egress"] for p in rule["ports"]}
    assert {5432, 6379, 443} <= ports
    alb = [r for r in vote["ingress"] if any("ipBlock" in f for f in r["from"])]
    assert alb and alb[0]["from"][0]["ipBlock"]["cidr"] == "10.0.0.0/16"
    worker_in = nps["worker"]["spec"]["ingress"]
    assert all("ipBlock" not in f for r in worker_in for f in r["from"])  # not routed: no load balancer


def test_ingress(prod: list[dict[str, Any]]) -> None:
    (ing,) = by_kind(prod, "Ingress").values()
    a = ing["metadata"]["annotations"]
    assert ing["spec"]["ingressClassName"] == "alb"
    assert a["alb.ingress.kubernetes.io/target-type"] == "ip"
    assert a["alb.ingress.kubernetes.io/ssl-policy"].startswith("ELBSecurityPolicy-TLS13")
    assert a["alb.ingress.kubernetes.io/wafv2-acl-arn"] == "${WAF_ACL_ARN}"
    assert "deletion_protection.enabled=true" in a["alb.ingress.kubernetes.io/load-balancer-attributes"]
    assert a["alb.ingress.kubernetes.io/healthcheck-path"] == "/readyz"
    conditions = json.loads(a["alb.ingress.kubernetes.io/conditions.vote-post"])
    assert conditions[0]["httpRequestMethodConfig"]["Values"] == ["POST"]
    paths = ing["spec"]["rules"][0]["http"]["paths"]
    assert all(p["pathType"] == "ImplementationSpecific" for p in paths)
    by_path = [(p["path"], p["backend"]["service"]["name"]) for p in paths]
    assert ("/polls/*/votes", "vote-post") in by_path
    assert ("/polls/*", "results-get") in by_path
    # The catch-all comes last but for the edge's 405 for any other method (deploy.routes).
    assert by_path[-2:] == [("/*", "web-get"), ("/*", "method-not-allowed")]
    # Internal endpoints and the health check are the edge's own answers, ahead of every route.
    assert by_path[0] == ("/healthz", "health") and ("/metrics", "blocked") in by_path[:3]
    assert json.loads(a["alb.ingress.kubernetes.io/actions.health"])["fixedResponseConfig"]["statusCode"] == "200"
    assert "host" not in ing["spec"]["rules"][0]
    assert a["external-dns.alpha.kubernetes.io/hostname"] == "us-east-1.vote.example.com"
    assert a["alb.ingress.kubernetes.io/certificate-arn"] == "${ACM_CERTIFICATE_ARN}"


def test_namespace_and_monitoring(prod: list[dict[str, Any]]) -> None:
    ns = by_kind(prod, "Namespace")["voting"]["metadata"]["labels"]
    assert ns["pod-security.kubernetes.io/enforce"] == "restricted"
    sm = by_kind(prod, "ServiceMonitor")["voting"]["spec"]
    assert sm["endpoints"][0]["path"] == "/metrics" and "rollouts-pod-template-hash" in sm["podTargetLabels"]
    rule = by_kind(prod, "PrometheusRule")["voting"]["spec"]
    alerts = {r.get("alert") for g in rule["groups"] for r in g["rules"]}
    assert "SLOErrorBudgetBurnFast" in alerts
    board = by_kind(prod, "ConfigMap")["voting-dashboard"]
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(board["data"]["voting.json"])["panels"]


# ------------------------------------------------------------------ a system unlike voting


def other_system() -> System:
    spec = {
        "name": "shop",
        "environments": ["dev", "prod"],
        "regions": [{"name": "eu-central-1", "role": "primary", "vpc_cidr": "10.8.0.0/16"}],
        "network": {"azs": 2, "layout": "public-only", "nat": "none", "vpc_endpoints": False},
        "cluster": {"node_pools": [
            {"name": "general", "instance_types": ["m6i.large"], "min": 2, "max": 4},
            {"name": "gpu", "instance_types": ["g5.xlarge"], "min": 0, "max": 2, "gpu": True},
        ]},
        "resources": {
            "tenants": {"kind": "postgres", "per_tenant": True},
            "jobs": {"kind": "queue"},
            "files": {"kind": "bucket"},
        },
        "services": {
            "api": {"routes": [{"path": "/api"}], "calls": ["infer"], "uses": ["tenants", "files"],
                    "replicas": {"min": 1, "max": 1}},
            "infer": {"expose": "load-balancer", "node_pool": "gpu", "resources": {"cpu": "2", "memory": "8Gi",
                                                                                  "gpu": 1},
                      "replicas": {"min": 1, "max": 3}},
            "jobs-worker": {"kind": "worker", "uses": ["jobs"], "replicas": {"min": 0, "max": 5},
                            "autoscale": {"queue": "jobs", "target_queue_depth": 50, "cpu_percent": 80}},
        },
        "slo": {"peak_rps": 100},
        "monitoring": {"grafana": False},
    }
    return System.model_validate(spec)


def test_other_system_renders_and_validates(checks_extra: None) -> None:
    import kubernetes_validate

    shop = other_system()
    for env in shop.environments:
        objs = build_manifests(shop, "eu-central-1", env)
        _, crds = validate_schemas({"x": objs})
        assert crds.ok, crds.failures
        for o in objs:
            if not o["apiVersion"].startswith(("argoproj", "keda", "external", "monitoring")):
                kubernetes_validate.validate(o, "1.33", strict=True)
    objs = build_manifests(shop, "eu-central-1", "prod")
    services = by_kind(objs, "Service")
    lb = services["infer-public"]
    assert lb["spec"]["type"] == "LoadBalancer" and lb["spec"]["loadBalancerClass"] == "service.k8s.aws/nlb"
    assert lb["metadata"]["annotations"]["service.beta.kubernetes.io/aws-load-balancer-nlb-target-type"] == "ip"
    assert services["infer"]["spec"]["type"] == "ClusterIP"
    infer = pod_spec(by_kind(objs, "Deployment")["infer"])
    assert infer["nodeSelector"] == {"stackwright.io/node-pool": "gpu"}
    assert infer["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert infer["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    api = by_kind(objs, "Deployment")["api"]["spec"]
    assert api["replicas"] == 1 and "api" not in by_kind(objs, "HorizontalPodAutoscaler")
    assert by_kind(objs, "PodDisruptionBudget")["api"]["spec"] == {
        "selector": {"matchLabels": {"app.kubernetes.io/name": "api", "app.kubernetes.io/part-of": "shop"}},
        "unhealthyPodEvictionPolicy": "AlwaysAllow", "maxUnavailable": 1}
    config = by_kind(objs, "ConfigMap")["api-config"]["data"]
    assert config[service_url_env("infer")] == "http://infer.shop.svc.cluster.local"
    nps = by_kind(objs, "NetworkPolicy")
    callers = [f for r in nps["infer"]["spec"]["ingress"] for f in r["from"] if "podSelector" in f]
    assert callers == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "api",
                                                        "app.kubernetes.io/part-of": "shop"}}}]
    worker = by_kind(objs, "ScaledObject")["jobs-worker"]["spec"]
    assert worker["minReplicaCount"] == 0 and [t["type"] for t in worker["triggers"]] == ["aws-sqs-queue", "cpu"]
    assert "shop-dashboard" not in by_kind(objs, "ConfigMap")
    assert not by_kind(objs, "Ingress") or "api" in json.dumps(by_kind(objs, "Ingress"))


def test_one_naming_module() -> None:
    # Names used to be built twice (render/naming.py, render/aws/naming.py) and drifted; now only deploy/ has them.
    import importlib.util

    assert importlib.util.find_spec("stackwright.render.naming") is None
    assert importlib.util.find_spec("stackwright.render.aws.naming") is None


def test_crd_schemas_catch_mistakes(prod: list[dict[str, Any]], checks_extra: None) -> None:
    import copy

    bad = copy.deepcopy([o for o in prod if o["kind"] in ("ScaledObject", "ExternalSecret", "Rollout",
                                                           "ServiceMonitor", "AnalysisTemplate")])
    for o in bad:
        if o["kind"] == "ScaledObject":
            o["spec"]["minReplicaCount"] = "two"
        elif o["kind"] == "ExternalSecret":
            del o["spec"]["data"][0]["remoteRef"]["key"]
        elif o["kind"] == "Rollout":
            o["spec"]["strategy"]["canary"]["steps"][0]["setWeight"] = "ten"
        elif o["kind"] == "ServiceMonitor":
            del o["spec"]["selector"]
        else:
            del o["spec"]["metrics"][0]["provider"]
    _, crds = validate_schemas({"bad": bad})
    assert crds.failed == len(bad) and crds.passed == 0


def test_zone_spread_counts_only_the_pods_of_the_same_revision(prod: list[dict[str, Any]]) -> None:
    # Without matchLabelKeys a surge counts old and new pods together and new pods stay Pending.
    for name, d in by_kind(prod, "Deployment").items():
        expected = ["rollouts-pod-template-hash"] if name == "vote" else ["pod-template-hash"]
        for constraint in pod_spec(d)["topologySpreadConstraints"]:
            assert constraint["matchLabelKeys"] == expected, (name, constraint["topologyKey"])


def _argo_condition(expression: str, result: list[float]) -> bool:
    """Evaluate the expr-lang subset the conditions use (&&, !, len, isNaN, comparisons) on a result."""
    import math

    python = expression.replace("&&", " and ").replace("!isNaN(", " not isNaN(")
    return bool(eval(python, {"__builtins__": {}}, {"len": len, "isNaN": math.isnan, "result": result}))


def test_canary_without_traffic_is_inconclusive_never_promoted(prod: list[dict[str, Any]]) -> None:
    template = by_kind(prod, "AnalysisTemplate")["vote-canary"]["spec"]
    limits = {"error-rate": 0.01, "latency-p99": 0.2, "success-rate-drop": 0.02}
    for m in template["metrics"]:
        limit = limits[m["name"]]
        ok, bad = m["successCondition"], m["failureCondition"]
        for silent in ([], [float("nan")]):  # no series (too few requests) and 0/0
            assert not _argo_condition(ok, silent) and not _argo_condition(bad, silent), (m["name"], silent)
        assert _argo_condition(ok, [limit]) and not _argo_condition(bad, [limit])
        assert _argo_condition(bad, [limit * 2]) and not _argo_condition(ok, [limit * 2])
        assert m["inconclusiveLimit"] == 2
        # The judged value exists only once the canary served enough requests in the window.
        query = m["provider"]["prometheus"]["query"]
        assert query.endswith('[60s])) >= 50)') and "and on() (sum(increase(starlette_requests_total{" in query


def test_bundle_readme_says_silence_pauses_the_canary(bundle: Path) -> None:
    text = (bundle / "README.md").read_text()
    assert "never counts silence as success" in text and "after 3 inconclusive measurements" in text


# ------------------------------------------------------------------ stopping pods behind the ALB


def _serve_args_of(dockerfile: str) -> list[str]:
    """Arguments the image's CMD passes to ``python -m stackwright.runtime.serve``."""
    start = dockerfile.index("CMD [", dockerfile.index("STOPSIGNAL"))
    cmd = json.loads(dockerfile[start + 4:].replace("\\\n", ""))
    return cmd[cmd.index("stackwright.runtime.serve") + 1:]


def test_pods_outlast_alb_deregistration_and_the_process_drains_as_the_manifest_says(
        prod: list[dict[str, Any]], bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stackwright.runtime.serve import parse_args

    (ing,) = by_kind(prod, "Ingress").values()
    assert ing["metadata"]["annotations"]["alb.ingress.kubernetes.io/target-group-attributes"] == \
        "deregistration_delay.timeout_seconds=30"
    services, configs = by_kind(prod, "Service"), by_kind(prod, "ConfigMap")
    for name, d in by_kind(prod, "Deployment").items():
        spec = pod_spec(d)
        sleep = spec["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
        # Behind the ALB: deregistration delay + propagation; the worker only waits for kube-proxy.
        assert sleep == (15 if name == "worker" else 30 + 15), name
        env = configs[f"{name}-config"]["data"]
        monkeypatch.setattr("os.environ", dict(env))
        drain = parse_args(_serve_args_of((bundle / "docker" / f"{name}.Dockerfile").read_text())).graceful
        assert drain == float(env["SHUTDOWN_GRACE_SECONDS"]) == 30
        assert spec["terminationGracePeriodSeconds"] == sleep + drain + 5
        annotations = services[name]["metadata"].get("annotations") or {}
        if name != "worker":  # routed: its own target group says the delay its sleep was sized for
            assert annotations["alb.ingress.kubernetes.io/target-group-attributes"] == \
                "deregistration_delay.timeout_seconds=30"


def test_shutdown_timings_come_from_the_spec() -> None:
    shop = other_system()
    shop.shutdown = type(shop.shutdown)(deregistration_delay_s=60, drain_s=20)
    shop.services["infer"].shutdown = type(shop.shutdown)(prestop_sleep_s=120, deregistration_delay_s=90)
    objs = build_manifests(shop, "eu-central-1", "prod")
    deployments, services = by_kind(objs, "Deployment"), by_kind(objs, "Service")
    api, infer = pod_spec(deployments["api"]), pod_spec(deployments["infer"])
    assert api["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"] == 75  # 60 + 15
    assert api["terminationGracePeriodSeconds"] == 75 + 20 + 5
    assert infer["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"] == 120
    assert infer["terminationGracePeriodSeconds"] == 120 + 20 + 5
    assert by_kind(objs, "ConfigMap")["api-config"]["data"]["SHUTDOWN_GRACE_SECONDS"] == "20"
    worker = pod_spec(deployments["jobs-worker"])
    assert worker["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"] == 15
    assert worker["terminationGracePeriodSeconds"] == 15 + 20 + 5
    (ing,) = by_kind(objs, "Ingress").values()
    tg = "alb.ingress.kubernetes.io/target-group-attributes"
    assert ing["metadata"]["annotations"][tg] == "deregistration_delay.timeout_seconds=60"
    assert services["api"]["metadata"]["annotations"][tg] == "deregistration_delay.timeout_seconds=60"
    nlb = services["infer-public"]["metadata"]["annotations"]
    assert nlb["service.beta.kubernetes.io/aws-load-balancer-target-group-attributes"].endswith(
        "deregistration_delay.timeout_seconds=90")


def test_keda_assumes_the_scaler_role_the_aws_app_makes(prod: list[dict[str, Any]], voting: System) -> None:
    auth = by_kind(prod, "TriggerAuthentication")["worker-aws"]["spec"]
    # identityOwner: workload would need the worker's own role to trust the KEDA operator; it does not.
    assert auth == {"podIdentity": {"provider": "aws",
                                    "roleArn": "arn:aws:iam::${AWS_ACCOUNT_ID}:role/voting-prod-us-east-1-worker-keda"}}
    staging = by_kind(build_manifests(voting, "eu-west-1", "staging"), "TriggerAuthentication")["worker-aws"]
    assert staging["spec"]["podIdentity"]["roleArn"].endswith(":role/voting-staging-eu-west-1-worker-keda")
    from stackwright.deploy import names as aws

    assert aws.scaler_role_name(voting, "prod", "us-east-1", "worker") == "voting-prod-us-east-1-worker-keda"
    _, crds = validate_schemas({"x": [by_kind(prod, "TriggerAuthentication")["worker-aws"]]})
    assert crds.ok and crds.passed == 1, crds.failures
