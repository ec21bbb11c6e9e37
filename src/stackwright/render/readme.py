"""``README.md`` of a rendered bundle: what is in it, what it expects from the cluster and the AWS
account, and how to deploy it by hand.

Everything it says is read from the spec and from the manifests that were rendered (the object kinds, the
placeholders), so it describes this bundle: an operator, a probe path or a placeholder the bundle does not
use is not listed."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from ..contract import CONTAINER_PLATFORM_PORT
from ..deploy import names as naming
from ..deploy.routes import production_only
from ..spec import System
from .ci import ARGO_ROLLOUTS_VERSION
from .k8s.config import SECRET_URL_KINDS
from .k8s.context import Target
from .k8s.ingress import alb_paths, routed_services
from .k8s.kustomize import base_target
from .k8s.migrations import migrated_databases
from .k8s.rollout import INCONCLUSIVE_LIMIT
from .k8s.workload import PLATFORM_PORT_NAME, is_canary, probe_port, uses_autoscaler


def _scaling(t: Target, name: str) -> str:
    svc = t.service(name)
    low, high = t.replicas(name)
    a = svc.autoscale
    if a is not None and a.queue:
        return f"KEDA on SQS `{a.queue}` ({a.target_queue_depth} msgs/replica), {low}-{high}"
    if not uses_autoscaler(t, name):
        return f"fixed {low}"
    cpu = a.cpu_percent if a is not None else 70
    return f"HPA CPU {cpu}%, {low}-{high}"


def _exposure(system: System, name: str) -> str:
    svc = system.services[name]
    if svc.expose == "load-balancer":
        return "own NLB (TLS 443)"
    if svc.expose == "ingress" and svc.routes:
        paths = dict.fromkeys(f"{r.host}.:{p}" if r.host else p for r in svc.routes for p in alb_paths(r))
        return "ALB: " + ", ".join(f"`{p}`" for p in paths)
    return "internal"


_KIND = re.compile(r"^kind: (\w+)$", re.MULTILINE)


def _manifests(system: System, files: Mapping[str, str] | Iterable[str]) -> str:
    """The text of the bundle's Kubernetes manifests; rendered here when the bundle has none (``--only aws``),
    since the cluster they will run on needs the same operators."""
    texts = files if isinstance(files, Mapping) else {}
    k8s = [text for rel, text in sorted(texts.items()) if rel.startswith("k8s/")]
    if not k8s:
        from .k8s import render_k8s

        k8s = list(render_k8s(system).values())
    return "\n---\n".join(k8s)


def _probes(system: System) -> str:
    """The probes the manifests carry, from each service's ``probes`` (the startup probe defaults to the
    liveness path), said once when every service has the same, with the port that serves them."""
    def paths(name: str) -> tuple[str, str, str]:
        p = system.services[name].probes
        return (p.startup.path if p.startup is not None else p.liveness.path, p.liveness.path, p.readiness.path)

    def of(name: str) -> str:
        startup, live, ready = paths(name)
        return f"startup `{startup}`, liveness `{live}`, readiness `{ready}`"

    ports = {probe_port(path) for name in system.services for path in paths(name)}
    where = ("on the platform port" if ports == {PLATFORM_PORT_NAME} else
             "on the application port" if ports == {"http"} else "each on the port that serves its path")
    distinct = {of(name) for name in system.services}
    if len(distinct) == 1:
        return f"probes ({next(iter(distinct))}; {where})"
    return f"probes {where} (" + "; ".join(f"{n}: {of(n)}" for n in system.services) + ")"


def _aws_contents(system: System) -> str:
    """What the CDK app builds for this spec."""
    parts = ["VPC", "EKS", "ECR"]
    for name, res in system.resources.items():
        if getattr(res, "engine", None) == "external":
            parts.append(f"`{name}` (external {res.kind}: its URL secret only)")
        else:
            parts.append(f"`{name}` ({res.kind})")
    parts.append("Route 53 latency records with health checks and failover records for writes"
                 if len(system.regions) > 1 else "Route 53 records (one region: no DNS failover)")
    if system.edge.waf is not None:
        parts.append("WAF")
    parts.append("secrets")
    return ", ".join(parts)


def render_readme(system: System, files: Mapping[str, str] | Iterable[str], notes: list[str]) -> str:
    """The README text; ``files`` are the other rendered files (path -> text, or only their paths), ``notes``
    extra lines (e.g. skipped targets)."""
    region, env = base_target(system)
    t = Target.of(system, region, env)
    ns = naming.namespace(system)
    names = list(files)
    manifests = _manifests(system, files)
    kinds = set(_KIND.findall(manifests))
    lines = [
        f"# {system.name}: production deployment bundle",
        "",
        f"Rendered by `stackwright render {system.name}` (`--target eks`, the default and only target) from "
        "`system.yaml`. Do not edit these files:",
        "change the spec and render again (the output is deterministic, so diffs show exactly what changed).",
        "",
        "## Contents",
        "",
        "| path | what |",
        "|---|---|",
    ]
    if any(f.startswith("k8s/") for f in names):
        lines += [
            f"| `k8s/base/` | kustomize base: the production build for the primary region ({region}), namespace "
            f"`{ns}` |",
            "| `k8s/overlays/<region>-<env>/` | one per region x environment: JSON patches for what differs "
            "(region settings, IAM roles, CIDRs, replicas outside production) and the region's ECR registry |",
        ]
        if migrated_databases(system):
            lines.append("| `k8s/migrations/` | migration Job(s), run by CI in the primary region before each deploy |")
    if any(f.startswith("docker/") for f in names):
        lines.append("| `docker/<service>.Dockerfile` | image of each service (build context: repository root) |")
    if any(f.startswith("ci/") for f in names):
        lines.append("| `ci/deploy.yml` | GitHub Actions: test, build + push, migrate, deploy region by region |")
    if any(f.startswith("aws/") for f in names):
        lines.append(f"| `aws/` | AWS CDK app: {_aws_contents(system)} |")
    lines += ["", "## Services (production)", "", "| service | kind | replicas | release | exposure |",
              "|---|---|---|---|---|"]
    for name, svc in system.services.items():
        release = "Argo Rollouts canary " + ", ".join(f"{s.weight}%/{s.pause}" for s in svc.rollout.steps) \
            if is_canary(svc) else "rolling update"
        lines.append(f"| {name} | {svc.kind} | {_scaling(t, name)} | {release} | {_exposure(system, name)} |")
    credentials = ("credentials only from AWS Secrets Manager through External Secrets"
                   if "ExternalSecret" in kinds else "no credentials (no service reads a secret)")
    lines += [
        "",
        "Every pod: PSS *restricted* security context, read-only root filesystem (+ `/tmp` emptyDir), uid 10001,",
        f"{_probes(system)}, CPU/memory requests and a memory limit,",
        "spread over zones and nodes, its own ServiceAccount bound to its own IAM role (IRSA), settings from a",
        f"ConfigMap and {credentials}.",
        "The namespace denies all traffic by default; each service's NetworkPolicy allows what the spec implies.",
        "",
    ]
    canaries = [n for n, s in system.services.items() if is_canary(s)]
    if canaries:
        lines += [
            "Canary analysis never counts silence as success: a check answers only when the canary served at "
            "least `rollout.analysis.min_requests` requests in its window and the value is a number; otherwise "
            f"it is Inconclusive, and after {INCONCLUSIVE_LIMIT + 1} inconclusive measurements the Rollout pauses "
            "until someone runs `kubectl argo rollouts promote <service>` or `... abort <service>` "
            f"(canaries: {', '.join(canaries)}).",
            "",
        ]
    lines += ["## What the cluster must run", "", _cluster_needs(system, kinds, manifests), ""]
    gpu_pools = [p.name for p in system.cluster.node_pools if p.gpu]
    if gpu_pools:
        # The AL2023 NVIDIA AMI has the driver but not the device plugin: without it no node advertises
        # nvidia.com/gpu and every pod requesting one stays Pending.
        lines += [
            f"GPU pools ({', '.join(f'`{p}`' for p in gpu_pools)}, AL2023 NVIDIA AMI, tainted "
            "`nvidia.com/gpu=true:NoSchedule`) need the NVIDIA Kubernetes device plugin (Helm chart "
            "`nvdp/nvidia-device-plugin`, which tolerates that taint), so that the nodes advertise `nvidia.com/gpu`.",
            "",
        ]
    lines += ["## Names shared with the AWS side", "", "| what | name |", "|---|---|",
              *_shared_names(system, kinds, manifests), "",
              "Resources whose URL is read from Secrets Manager: " + (", ".join(
                  f"`{n}` ({r.kind})" for n, r in system.resources.items() if r.kind in SECRET_URL_KINDS) or "none")
              + ".", ""]
    used = [p for p in naming.PLACEHOLDERS if f"${{{p}}}" in manifests]
    ssm = [what for what, p in (("certificate", "ACM_CERTIFICATE_ARN"), ("WAF ACL", "WAF_ACL_ARN")) if p in used]
    lines += [
        "## Deploy by hand",
        "",
        f"The overlays keep {len(used)} deploy-time placeholder{'s' * (len(used) != 1)}: "
        + ", ".join(f"`${{{p}}}`" for p in used)
        + (f" (the {' and '.join(ssm)} ARN{'s' * (len(ssm) > 1)} "
           f"{'are' if len(ssm) > 1 else 'is'} read from SSM `{naming.ssm_parameter(system, '<env>', '…')}`)"
           if ssm else "") + ".",
        "",
        "```sh",
        f"cd k8s/overlays/{region}-{env}",
        f"kustomize edit set image {naming.image_name(system, '<service>')}="
        f"<account>.dkr.ecr.{region}.amazonaws.com/{system.name}/<service>@sha256:<digest>   # each service",
        "kustomize build . | envsubst '" + " ".join(f"${{{p}}}" for p in used)
        + "' | kubectl apply --server-side -f -",
        "```",
        "",
    ]
    routed = routed_services(t)
    if routed:
        lines += [f"Each region's ALB is published by external-dns as `<region>.{naming.public_host(system, env)}` "
                  f"(`<region>.<env>.{system.edge.domain}` outside production); the AWS app's Route 53 records "
                  f"(`api.`, `writer.`) point there and health-check `{naming.HEALTH_CHECK_PATH}` (answered by the ALB "
                  "itself). The services' `/metrics`, `/readyz`, `/healthz` and API docs are not reachable from "
                  "outside unless a route names them; `stackwright up` applies the same rules "
                  "(stackwright.deploy.routes).", ""]
        hosts = naming.route_hosts(system, env)
        if hosts:
            lines += ["Routes limited to a host answer only on " + ", ".join(f"`{h}`" for h in hosts)
                      + " (on the certificate, with Route 53 records like `api.`).", ""]
        only = production_only(system)
        if only:
            lines += ["Production only (not applied by the local gateway): " + "; ".join(only) + ".", ""]
    lines += ["Every pod serves its platform endpoints (metrics, readiness, API docs) on port "
              f"{CONTAINER_PLATFORM_PORT} (`platform`), which probes and load balancer health checks of those paths "
              "and the ServiceMonitor use and no load balancer exposes; the application port answers them 404.", ""]
    if notes:
        lines += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    lines += ["## Files", "", *[f"- `{f}`" for f in sorted(files)], ""]
    return "\n".join(lines)


def _cluster_needs(system: System, kinds: set[str], manifests: str) -> str:
    """The controllers and operators the rendered objects need, and only those."""
    needs: list[str] = []
    if "Ingress" in kinds or "type: LoadBalancer" in manifests:
        needs.append("AWS Load Balancer Controller")
    if "external-dns.alpha.kubernetes.io/hostname" in manifests:
        needs.append("external-dns (publishes each load balancer's regional host name)")
    if "ExternalSecret" in kinds:
        needs.append("External Secrets Operator (`external-secrets.io/v1`)")
    if "Rollout" in kinds:
        needs.append(f"Argo Rollouts ({ARGO_ROLLOUTS_VERSION})")
    if "ScaledObject" in kinds:
        needs.append("KEDA")
    if "HorizontalPodAutoscaler" in kinds:
        needs.append("metrics-server")
    if {"ServiceMonitor", "PrometheusRule"} & kinds:
        needs.append(f"the Prometheus operator with Prometheus in namespace `{naming.MONITORING_NAMESPACE}` "
                     f"(selecting `{'='.join(naming.MONITORING_SELECTOR_LABEL)}`)")
    if f"{naming.GRAFANA_DASHBOARD_LABEL[0]}: '{naming.GRAFANA_DASHBOARD_LABEL[1]}'" in manifests or \
            f'{naming.GRAFANA_DASHBOARD_LABEL[0]}: "{naming.GRAFANA_DASHBOARD_LABEL[1]}"' in manifests:
        needs.append(f"Grafana's dashboard sidecar (label `{'='.join(naming.GRAFANA_DASHBOARD_LABEL)}`)")
    if "NetworkPolicy" in kinds:
        needs.append("VPC CNI with network policy enforcement on")
    text = ", ".join(needs) + "."
    if "TriggerAuthentication" in kinds:
        text += (" KEDA reads queue depth as a scaler role per worker "
                 f"(`{naming.scaler_role_name(system, '<env>', '<region>', '<service>')}`, made by the AWS app) that "
                 "trusts the `keda-operator` ServiceAccount in namespace `keda`; install KEDA with "
                 "`podIdentity.aws.irsa.enabled=true` and `podIdentity.aws.irsa.roleArn` = the AWS app's "
                 f"`KedaOperatorRoleArn` output (`{naming.keda_operator_role_name(system, '<env>', '<region>')}`).")
    return text


def _shared_names(system: System, kinds: set[str], manifests: str) -> list[str]:
    """Rows of the names table, for what this system has."""
    have = {r.kind for r in system.resources.values()}
    rows = [f"| EKS cluster | `{naming.cluster_name(system, '<env>', '<region>')}` |",
            f"| IAM role of a service (IRSA) | `{system.name}-<env>-<region>-<service>` |",
            f"| CI role (GitHub OIDC) | `{naming.deploy_role_name(system, '<env>')}` |",
            f"| ECR repository | `{system.name}/<service>` in every region |"]
    managed_pg = [n for n, r in system.resources.items() if r.kind == "postgres" and r.engine != "external"]
    external_pg = [n for n, r in system.resources.items() if r.kind == "postgres" and r.engine == "external"]
    if managed_pg:
        rows.append(f"| Postgres login of a service | `{system.name}/<env>/<db>/users/<service>`: JSON `url` "
                    "(+ `read_url`, read in secondary regions) |")
    for name in external_pg:
        rows.append(f"| URL of external database `{name}` | "
                    f"`{naming.external_url_secret_name(system, '<env>', name)}` (set by hand) |")
    if "redis" in have:
        rows.append(f"| Redis | `{system.name}/<env>/<cache>/auth-token`: JSON `url` |")
    if "bucket" in have:
        rows.append(f"| S3 bucket | `{system.name}-<env>-<bucket>-<account>-<region>` |")
    if "queue" in have:
        rows.append(f"| SQS queue | `{system.name}-<env>-<queue>` and `...-dlq` |")
    if "Ingress" in kinds or "type: LoadBalancer" in manifests:
        rows.append(f"| ALB/NLB access logs bucket | `{system.name}-<env>-<region>-alb-logs` |")
    rows.append(f"| node pool label | `{naming.NODE_POOL_LABEL}=<pool>` |")
    return rows
