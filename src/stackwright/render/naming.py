"""Names the rendered Kubernetes/CI files and the AWS (CDK) app must agree on, in one place.

Kubernetes objects refer to AWS things only by these names, so the CDK app creates them with the same
functions (or the same patterns):

=========================  =====================================================  ==========================
what                        name                                                   used by
=========================  =====================================================  ==========================
EKS cluster                 ``<system>-<env>-<region>``                            CI ``update-kubeconfig``
IAM role per service        ``<system>-<env>-<region>-<service>`` (IRSA)            ServiceAccount annotation
CI deploy role              ``<system>-<env>-github-deploy``                       CI OIDC login
ECR repository              ``<system>/<service>`` (one per region)                images, CI push
Postgres login              ``<system>/<env>/<db>/users/<service>``: ``url``       ExternalSecret
                            (+ ``read_url`` read in secondary regions)
external Postgres           ``<system>/<env>/<db>/url``: ``url``                   ExternalSecret
Redis                       ``<system>/<env>/<cache>/auth-token``: ``url``         ExternalSecret
search                      ``<system>/<env>/services/<service>``: ``<res>_url``   ExternalSecret
SQS queue                   ``<system>-<env>-<queue>`` (+ ``-dlq``)                ``<NAME>_QUEUE``, KEDA
S3 bucket                   ``<system>-<env>-<bucket>-<account>-<region>``         ``<NAME>_URL`` (s3://)
SNS topic                   ``<system>-<env>-<topic>``                             ``<NAME>_URL`` (ARN)
ALB access-log bucket       ``<system>-<env>-<region>-alb-logs``                   Ingress annotation
SSM parameters              ``/<system>/<env>/waf-acl-arn``,                        CI fills placeholders
                            ``/<system>/<env>/certificate-arn``
node pool label             ``stackwright.io/node-pool=<pool>`` on every node       nodeSelector
=========================  =====================================================  ==========================

Secret and resource names follow :mod:`stackwright.render.aws.naming` (tests check they agree); the
secrets must carry a ready connection ``url`` for the runtime.

Values only known once the AWS account exists are left as ``${PLACEHOLDER}`` in the overlays and
filled in at deploy time (``envsubst`` with exactly :data:`PLACEHOLDERS`).
"""

from __future__ import annotations

from ..resources import kind_of
from ..spec import System

#: Deploy-time placeholders left in rendered manifests (filled by CI with envsubst).
PLACEHOLDERS: tuple[str, ...] = ("AWS_ACCOUNT_ID", "ACM_CERTIFICATE_ARN", "WAF_ACL_ARN")

ACCOUNT = "${AWS_ACCOUNT_ID}"
CERTIFICATE_ARN = "${ACM_CERTIFICATE_ARN}"
WAF_ACL_ARN = "${WAF_ACL_ARN}"

#: How pods get their IAM role: "irsa" (ServiceAccount annotation eks.amazonaws.com/role-arn, role trusts
#: the cluster's OIDC provider) or "pod-identity" (EKS Pod Identity association, no annotation).
WORKLOAD_IDENTITY = "irsa"

#: Label every node of a node pool carries (set by the CDK node groups).
NODE_POOL_LABEL = "stackwright.io/node-pool"

#: Platform pieces the manifests rely on (installed with the cluster, not by these manifests).
MONITORING_NAMESPACE = "monitoring"
PROMETHEUS_URL = "http://prometheus-operated.monitoring.svc.cluster.local:9090"
#: Label the Prometheus operator's serviceMonitorSelector / ruleSelector match.
MONITORING_SELECTOR_LABEL = ("stackwright.io/monitoring", "enabled")
#: Label the Grafana dashboard sidecar (kube-prometheus-stack default) looks for.
GRAFANA_DASHBOARD_LABEL = ("grafana_dashboard", "1")

PRODUCTION_ENVIRONMENTS = frozenset({"prod", "production"})


def is_production(environment: str) -> bool:
    """True for the environment names treated as production (full replica counts)."""
    return environment in PRODUCTION_ENVIRONMENTS


def namespace(system: System) -> str:
    """The Kubernetes namespace a system runs in (the same in every cluster)."""
    return system.name


def cluster_name(system: System, environment: str, region: str) -> str:
    """EKS cluster name of one environment in one region."""
    return f"{system.name}-{environment}-{region}"


def service_role_name(system: System, environment: str, region: str, service: str) -> str:
    """IAM role a service's pods assume through IRSA (IAM names are account-global, so region is in it)."""
    return f"{system.name}-{environment}-{region}-{service}"[:64]


def service_role_arn(system: System, environment: str, region: str, service: str) -> str:
    """ARN of :func:`service_role_name`, with the account left as a placeholder."""
    return f"arn:aws:iam::{ACCOUNT}:role/{service_role_name(system, environment, region, service)}"


def scaler_role_name(system: System, environment: str, region: str, service: str) -> str:
    """IAM role KEDA's operator assumes to read the queue depth a worker scales on."""
    return f"{system.name}-{environment}-{region}-{service}-keda"[:64]


def scaler_role_arn(system: System, environment: str, region: str, service: str) -> str:
    """ARN of :func:`scaler_role_name`, with the account left as a placeholder."""
    return f"arn:aws:iam::{ACCOUNT}:role/{scaler_role_name(system, environment, region, service)}"


def keda_operator_role_name(system: System, environment: str, region: str) -> str:
    """IAM role of the KEDA operator's ServiceAccount (IRSA) in one cluster."""
    return f"{system.name}-{environment}-{region}-keda-operator"[:64]


def deploy_role_name(system: System, environment: str) -> str:
    """IAM role the CI workflow assumes through GitHub OIDC to push images and deploy."""
    return f"{system.name}-{environment}-github-deploy"


def ecr_repository(system: System, service: str) -> str:
    """ECR repository of a service image (created in every region)."""
    return f"{system.name}/{service}"


def ecr_registry(region: str) -> str:
    """Registry host of the account in one region (account left as a placeholder)."""
    return f"{ACCOUNT}.dkr.ecr.{region}.amazonaws.com"


def secret_prefix(system: System, environment: str) -> str:
    """Secrets Manager path prefix of one environment: ``voting/prod``."""
    return f"{system.name}/{environment}"


def resource_secret(system: System, environment: str, resource: str, service: str) -> tuple[str, str]:
    """(secret name, JSON property) holding the connection URL of ``resource`` for ``service``."""
    res = system.resources[resource]
    prefix = secret_prefix(system, environment)
    if res.kind == "postgres":
        if res.engine == "external":
            return f"{prefix}/{resource}/url", "url"
        return f"{prefix}/{resource}/users/{service}", "url"
    if res.kind == "redis":
        return f"{prefix}/{resource}/auth-token", "url"
    return f"{prefix}/services/{service}", f"{resource.replace('-', '_')}_url"


def hosting_region(system: System, resource: str, region: str) -> str:
    """Region whose copy of ``resource`` a service in ``region`` talks to (queues/caches may be
    per region; buckets, search and external databases live in the primary region)."""
    res = system.resources[resource]
    return region if kind_of(res).regional(res) else system.primary_region.name


def queue_name(system: System, environment: str, queue: str) -> str:
    """SQS queue name (its dead-letter queue is ``<name>-dlq``; FIFO queues end in ``.fifo``)."""
    res = system.resources[queue]
    return f"{system.name}-{environment}-{queue}" + (".fifo" if getattr(res, "fifo", False) else "")


def bucket_name(system: System, environment: str, bucket: str, region: str) -> str:
    """S3 bucket name (globally unique through the account placeholder)."""
    return f"{system.name}-{environment}-{bucket}-{ACCOUNT}-{region}"


def topic_arn(system: System, environment: str, topic: str, region: str) -> str:
    """SNS topic ARN (account placeholder)."""
    return f"arn:aws:sns:{region}:{ACCOUNT}:{system.name}-{environment}-{topic}"


def alb_log_bucket(system: System, environment: str, region: str) -> str:
    """S3 bucket receiving ALB/NLB access logs in one region."""
    return f"{system.name}-{environment}-{region}-alb-logs"


def ssm_parameter(system: System, environment: str, key: str) -> str:
    """SSM parameter the CDK app writes and CI reads (e.g. ``waf-acl-arn``)."""
    return f"/{system.name}/{environment}/{key}"


def public_host(system: System, environment: str) -> str:
    """Domain of an environment: the spec's domain in production, ``<env>.<domain>`` elsewhere."""
    domain = system.edge.domain
    return domain if is_production(environment) else f"{environment}.{domain}"


def origin_host(system: System, environment: str, region: str) -> str:
    """Per-region origin name (``us-east-1.vote.example.com``) that Route 53 health-checks and the
    latency/failover records (``api.``, ``writer.``; made by the AWS app) point at. external-dns writes it
    from the Ingress."""
    return f"{region}.{public_host(system, environment)}"


#: Path the Route 53 health checks request on every regional origin (as in render.aws.naming).
HEALTH_CHECK_PATH = "/healthz"


def image_name(system: System, service: str) -> str:
    """Image name used in the kustomize base (overlays and CI replace registry and tag)."""
    return f"{system.name}/{service}"


#: Tag in the base; CI pins every image by digest with ``kustomize edit set image`` before applying.
BASE_IMAGE_TAG = "set-by-ci"
