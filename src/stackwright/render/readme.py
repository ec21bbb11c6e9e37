"""``README.md`` of a rendered bundle: what is in it, what it expects from the cluster and the AWS
account, and how to deploy it by hand."""

from __future__ import annotations

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
from .k8s.workload import is_canary, uses_autoscaler


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


def render_readme(system: System, files: list[str], notes: list[str]) -> str:
    """The README text; ``files`` are the other rendered paths, ``notes`` extra lines (e.g. skipped targets)."""
    region, env = base_target(system)
    t = Target.of(system, region, env)
    ns = naming.namespace(system)
    lines = [
        f"# {system.name}: production deployment bundle",
        "",
        f"Rendered by `stackwright render {system.name} --target eks` from `system.yaml`. Do not edit these files:",
        "change the spec and render again (the output is deterministic, so diffs show exactly what changed).",
        "",
        "## Contents",
        "",
        "| path | what |",
        "|---|---|",
        f"| `k8s/base/` | kustomize base: the production build for the primary region ({region}), namespace `{ns}` |",
        "| `k8s/overlays/<region>-<env>/` | one per region x environment: JSON patches for what differs "
        "(region settings, IAM roles, CIDRs, replicas outside production) and the region's ECR registry |",
    ]
    if migrated_databases(system):
        lines.append("| `k8s/migrations/` | migration Job(s), run by CI in the primary region before each deploy |")
    if any(f.startswith("docker/") for f in files):
        lines.append("| `docker/<service>.Dockerfile` | image of each service (build context: repository root) |")
    if any(f.startswith("ci/") for f in files):
        lines.append("| `ci/deploy.yml` | GitHub Actions: test, build + push, migrate, deploy region by region |")
    if any(f.startswith("aws/") for f in files):
        lines.append("| `aws/` | AWS CDK app: VPC, EKS, data stores, queues, ECR, DNS failover, WAF, secrets |")
    lines += ["", "## Services (production)", "", "| service | kind | replicas | release | exposure |",
              "|---|---|---|---|---|"]
    for name, svc in system.services.items():
        release = "Argo Rollouts canary " + ", ".join(f"{s.weight}%/{s.pause}" for s in svc.rollout.steps) \
            if is_canary(svc) else "rolling update"
        lines.append(f"| {name} | {svc.kind} | {_scaling(t, name)} | {release} | {_exposure(system, name)} |")
    lines += [
        "",
        "Every pod: PSS *restricted* security context, read-only root filesystem (+ `/tmp` emptyDir), uid 10001,",
        "startup/liveness/readiness probes on `/healthz` and `/readyz`, CPU/memory requests and a memory limit,",
        "spread over zones and nodes, its own ServiceAccount bound to its own IAM role (IRSA), settings from a",
        "ConfigMap and credentials only from AWS Secrets Manager through External Secrets.",
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
    lines += [
        "## What the cluster must run",
        "",
        "AWS Load Balancer Controller, External Secrets Operator (`external-secrets.io/v1`), Argo Rollouts "
        f"({ARGO_ROLLOUTS_VERSION}), KEDA, metrics-server, the Prometheus operator with Prometheus in namespace "
        f"`{naming.MONITORING_NAMESPACE}` (selecting `{'='.join(naming.MONITORING_SELECTOR_LABEL)}`) and "
        f"Grafana's dashboard sidecar (label `{'='.join(naming.GRAFANA_DASHBOARD_LABEL)}`); "
        "VPC CNI with network policy enforcement on. KEDA reads queue depth as a scaler role per worker "
        f"(`{naming.scaler_role_name(system, '<env>', '<region>', '<service>')}`, made by the AWS app) that "
        "trusts the `keda-operator` ServiceAccount in namespace `keda`; install KEDA with "
        "`podIdentity.aws.irsa.enabled=true` and `podIdentity.aws.irsa.roleArn` = the AWS app's "
        f"`KedaOperatorRoleArn` output (`{naming.keda_operator_role_name(system, '<env>', '<region>')}`).",
        "",
    ]
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
    lines += [
        "## Names shared with the AWS side",
        "",
        "| what | name |",
        "|---|---|",
        f"| EKS cluster | `{naming.cluster_name(system, '<env>', '<region>')}` |",
        f"| IAM role of a service (IRSA) | `{system.name}-<env>-<region>-<service>` |",
        f"| CI role (GitHub OIDC) | `{naming.deploy_role_name(system, '<env>')}` |",
        f"| ECR repository | `{system.name}/<service>` in every region |",
        f"| Postgres login of a service | `{system.name}/<env>/<db>/users/<service>`: JSON `url` "
        "(+ `read_url`, read in secondary regions) |",
        f"| Redis | `{system.name}/<env>/<cache>/auth-token`: JSON `url` |",
        f"| S3 bucket | `{system.name}-<env>-<bucket>-<account>-<region>` |",
        f"| SQS queue | `{system.name}-<env>-<queue>` and `...-dlq` |",
        f"| ALB/NLB access logs bucket | `{system.name}-<env>-<region>-alb-logs` |",
        f"| node pool label | `{naming.NODE_POOL_LABEL}=<pool>` |",
        "",
        "Resources whose URL is read from Secrets Manager: " + (", ".join(
            f"`{n}` ({r.kind})" for n, r in system.resources.items() if r.kind in SECRET_URL_KINDS) or "none") + ".",
        "",
        "## Deploy by hand",
        "",
        "The overlays keep three deploy-time placeholders: " + ", ".join(f"`${{{p}}}`" for p in naming.PLACEHOLDERS)
        + f" (the WAF ACL and certificate ARNs are read from SSM `{naming.ssm_parameter(system, '<env>', '…')}`).",
        "",
        "```sh",
        f"cd k8s/overlays/{region}-{env}",
        f"kustomize edit set image {naming.image_name(system, '<service>')}="
        f"<account>.dkr.ecr.{region}.amazonaws.com/{system.name}/<service>@sha256:<digest>   # each service",
        "kustomize build . | envsubst '" + " ".join(f"${{{p}}}" for p in naming.PLACEHOLDERS)
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
