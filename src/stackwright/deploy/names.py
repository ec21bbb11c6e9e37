"""Every physical name the rendered manifests, CI and the CDK app share, built in one place.

Kubernetes objects and CI refer to AWS things only by these names, and the CDK app creates them with
these same functions, so neither side reads CloudFormation outputs to find the other:

=========================  =====================================================  ==========================
what                        name                                                   used by
=========================  =====================================================  ==========================
CloudFormation stacks       ``<system>-<env>-<region>``, ``-global``, ``-foundation``  CDK app, CI
EKS cluster                 ``<system>-<env>-<region>``                            CI ``update-kubeconfig``
IAM role per service        ``<system>-<env>-<region>-<service>``                  ServiceAccount annotation
KEDA roles                  ``...-<service>-keda``, ``...-keda-operator``          TriggerAuthentication
CI deploy role              ``<system>-<env>-github-deploy``                       CI OIDC login
ECR repository              ``<system>/<service>`` (one per region)                images, CI push
Postgres login              ``<system>/<env>/<db>/users/<service>``: ``url``       ExternalSecret
external Postgres           ``<system>/<env>/<db>/url``: ``url``                   ExternalSecret
Redis                       ``<system>/<env>/<cache>/auth-token``: ``url``         ExternalSecret
search                      ``<system>/<env>/services/<service>``: ``<res>_url``   ExternalSecret
SQS queue                   ``<system>-<env>-<queue>`` (+ ``-dlq``, ``.fifo``)     ``<NAME>_QUEUE``, KEDA
S3 bucket                   ``<system>-<env>-<bucket>-<account>-<region>``         ``<NAME>_URL`` (s3://)
SNS topic                   ``<system>-<env>-<topic>``                             ``<NAME>_URL`` (ARN)
ALB access-log bucket       ``<system>-<env>-<region>-alb-logs``                   Ingress annotation
KMS aliases                 ``alias/<system>-<env>/<purpose>``                     grants across regions
SSM parameters              ``/<system>/<env>/waf-acl-arn``, ``.../certificate-arn``  CI fills placeholders
origin host                 ``<region>.<public host>``                             external-dns, Route 53
node pool label             ``stackwright.io/node-pool=<pool>`` on every node       nodeSelector
=========================  =====================================================  ==========================

S3 bucket names are checked here, once, against the S3 naming rules (3-63 characters, lowercase letters,
digits, hyphens and dots, starting and ending with a letter or digit, no reserved prefix or suffix:
https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html). The account id is a
CloudFormation token or ``${AWS_ACCOUNT_ID}`` when the name is built, so the check substitutes a
12-digit account id, the length every AWS account id has.

Values only known once the AWS account exists are left as ``${PLACEHOLDER}`` in the manifests and filled
in at deploy time (``envsubst`` with exactly :data:`PLACEHOLDERS`).
"""

from __future__ import annotations

import re

from ..resources import kind_of
from ..spec import System
from ..spec.model import QueueResource
from .environments import is_production
from .errors import DeployError

#: Deploy-time placeholders left in rendered manifests (filled by CI with envsubst).
PLACEHOLDERS: tuple[str, ...] = ("AWS_ACCOUNT_ID", "ACM_CERTIFICATE_ARN", "WAF_ACL_ARN")
ACCOUNT = "${AWS_ACCOUNT_ID}"
CERTIFICATE_ARN = "${ACM_CERTIFICATE_ARN}"
WAF_ACL_ARN = "${WAF_ACL_ARN}"

#: Placeholder account for offline synth (and ``cdk.context.json``); real deploys use the caller's account.
PLACEHOLDER_ACCOUNT = "123456789012"

#: How pods get their IAM role: "irsa" (ServiceAccount annotation eks.amazonaws.com/role-arn, role trusts
#: the cluster's OIDC provider) or "pod-identity" (EKS Pod Identity association, no annotation).
WORKLOAD_IDENTITY = "irsa"

#: Label every node of a node pool carries (set by the CDK node groups, matched by nodeSelectors).
NODE_POOL_LABEL = "stackwright.io/node-pool"

#: Platform pieces the manifests rely on (installed with the cluster, not by these manifests).
MONITORING_NAMESPACE = "monitoring"
PROMETHEUS_URL = "http://prometheus-operated.monitoring.svc.cluster.local:9090"
#: Label the Prometheus operator's serviceMonitorSelector / ruleSelector match.
MONITORING_SELECTOR_LABEL = ("stackwright.io/monitoring", "enabled")
#: Label the Grafana dashboard sidecar (kube-prometheus-stack default) looks for.
GRAFANA_DASHBOARD_LABEL = ("grafana_dashboard", "1")

#: Path the Route 53 health checks request on every regional origin (the edge's health endpoint).
HEALTH_CHECK_PATH = "/healthz"

#: Tag in the kustomize base; CI pins every image by digest with ``kustomize edit set image``.
BASE_IMAGE_TAG = "set-by-ci"

#: IAM role names are at most 64 characters (https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateRole.html).
IAM_ROLE_MAX = 64
#: S3 bucket names are 3-63 characters.
BUCKET_MAX = 63
#: Stand-in for the account id when checking a bucket name's length: every AWS account id has 12 digits.
_ACCOUNT_STAND_IN = "0" * 12
_BUCKET_CHARS = re.compile(r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$")
_BUCKET_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_BUCKET_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


# ------------------------------------------------------------------ system-wide


def prefix(system: System, environment: str) -> str:
    """``voting-prod``: the prefix of every physical name of one environment."""
    return f"{system.name}-{environment}"


def namespace(system: System) -> str:
    """The Kubernetes namespace a system runs in (the same in every cluster)."""
    return system.name


def service_account(service: str) -> str:
    """Kubernetes ServiceAccount of a service (bound to its IAM role)."""
    return service


def regional_stack_name(system: System, environment: str, region: str) -> str:
    """CloudFormation stack of one region: ``voting-prod-us-east-1``."""
    return f"{prefix(system, environment)}-{region}"


def foundation_stack_name(system: System, environment: str, region: str) -> str:
    """CloudFormation stack of one region's keys, log bucket, vault and replica buckets."""
    return f"{regional_stack_name(system, environment, region)}-foundation"


def global_stack_name(system: System, environment: str) -> str:
    """CloudFormation stack of the global (Route 53) resources: ``voting-prod-global``."""
    return f"{prefix(system, environment)}-global"


def cluster_name(system: System, environment: str, region: str) -> str:
    """EKS cluster of one environment in one region: ``voting-prod-us-east-1``."""
    return f"{prefix(system, environment)}-{region}"


# ------------------------------------------------------------------ IAM


def _role(name: str) -> str:
    # Truncated rather than rejected: the region and service parts keep the start unique in practice.
    return name[:IAM_ROLE_MAX]


def service_role_name(system: System, environment: str, region: str, service: str) -> str:
    """IAM role a service's pods assume (IAM names are account-global, so the region is in it)."""
    return _role(f"{prefix(system, environment)}-{region}-{service}")


def service_role_arn(system: System, environment: str, region: str, service: str) -> str:
    """ARN of :func:`service_role_name`, with the account left as a placeholder."""
    return f"arn:aws:iam::{ACCOUNT}:role/{service_role_name(system, environment, region, service)}"


def scaler_role_name(system: System, environment: str, region: str, service: str) -> str:
    """IAM role KEDA's operator assumes to read the queue depth a worker scales on."""
    return _role(f"{prefix(system, environment)}-{region}-{service}-keda")


def scaler_role_arn(system: System, environment: str, region: str, service: str) -> str:
    """ARN of :func:`scaler_role_name`, with the account left as a placeholder."""
    return f"arn:aws:iam::{ACCOUNT}:role/{scaler_role_name(system, environment, region, service)}"


def keda_operator_role_name(system: System, environment: str, region: str) -> str:
    """IAM role of the KEDA operator's ServiceAccount in one cluster."""
    return _role(f"{prefix(system, environment)}-{region}-keda-operator")


def deploy_role_name(system: System, environment: str) -> str:
    """IAM role the CI workflow assumes through GitHub OIDC to push images and deploy."""
    return f"{prefix(system, environment)}-github-deploy"


# ------------------------------------------------------------------ images


def repository_name(system: System, service: str) -> str:
    """ECR repository of a service image (same name in every region)."""
    return f"{system.name}/{service}"


def image_name(system: System, service: str) -> str:
    """Image name used in the kustomize base (overlays and CI replace registry and tag)."""
    return repository_name(system, service)


def ecr_registry(region: str, account: str = ACCOUNT) -> str:
    """Registry host of the account in one region."""
    return f"{account}.dkr.ecr.{region}.amazonaws.com"


# ------------------------------------------------------------------ secrets


def secret_prefix(system: System, environment: str) -> str:
    """Secrets Manager path prefix of one environment: ``voting/prod``."""
    return f"{system.name}/{environment}"


def db_admin_secret_name(system: System, environment: str, resource: str) -> str:
    """Secret holding the master credentials of a database (used by migrations only)."""
    return f"{secret_prefix(system, environment)}/{resource}/admin"


def db_user_secret_name(system: System, environment: str, resource: str, service: str) -> str:
    """Secret holding one service's own database login: ``url`` (+ ``read_url``)."""
    return f"{secret_prefix(system, environment)}/{resource}/users/{service}"


def db_password_secret_name(system: System, environment: str, resource: str, service: str) -> str:
    """Generated password of a service's database login (replicated to every region)."""
    return f"{db_user_secret_name(system, environment, resource, service)}/password"


def tenant_secret_prefix(system: System, environment: str, resource: str) -> str:
    """Prefix under which per-tenant database secrets are created at run time."""
    return f"{secret_prefix(system, environment)}/{resource}/tenants/"


def redis_auth_secret_name(system: System, environment: str, resource: str) -> str:
    """Secret services read for Redis: ``url`` (``rediss://:<token>@host:port``) and ``token``."""
    return f"{secret_prefix(system, environment)}/{resource}/auth-token"


def redis_token_secret_name(system: System, environment: str, resource: str) -> str:
    """Generated AUTH token of a Redis replication group."""
    return f"{secret_prefix(system, environment)}/{resource}/token"


def external_url_secret_name(system: System, environment: str, resource: str) -> str:
    """Secret an operator fills with the URL of an external (not provisioned) database."""
    return f"{secret_prefix(system, environment)}/{resource}/url"


def service_secret_name(system: System, environment: str, service: str) -> str:
    """Secret for a service's own settings (signing key, search URLs, third-party keys)."""
    return f"{secret_prefix(system, environment)}/services/{service}"


def resource_secret(system: System, environment: str, resource: str, service: str) -> tuple[str, str]:
    """(secret name, JSON property) holding the connection URL of ``resource`` for ``service``."""
    res = system.resources[resource]
    own = kind_of(res).eks_secret(system, environment, resource, res, service)
    if own is not None:
        return own
    return service_secret_name(system, environment, service), f"{resource.replace('-', '_')}_url"


# ------------------------------------------------------------------ data stores and messaging


def queue_name(system: System, environment: str, queue: str, dlq: bool = False) -> str:
    """SQS queue name (``voting-prod-votes``, ``voting-prod-votes-dlq``; FIFO queues end in ``.fifo``)."""
    res = system.resources[queue]
    assert isinstance(res, QueueResource)
    return f"{prefix(system, environment)}-{queue}" + ("-dlq" if dlq else "") + (".fifo" if res.fifo else "")


def queue_url(system: System, environment: str, region: str, account: str, queue: str) -> str:
    """The URL services use for a queue in one region."""
    return f"https://sqs.{region}.amazonaws.com/{account}/{queue_name(system, environment, queue)}"


def topic_name(system: System, environment: str, topic: str) -> str:
    """SNS topic name."""
    return f"{prefix(system, environment)}-{topic}"


def topic_arn(system: System, environment: str, topic: str, region: str, account: str = ACCOUNT) -> str:
    """SNS topic ARN in one region."""
    return f"arn:aws:sns:{region}:{account}:{topic_name(system, environment, topic)}"


def check_bucket_name(name: str, account: str) -> str:
    """``name`` if S3 accepts it as a bucket name (with ``account`` read as a 12-digit id), else
    :class:`DeployError` saying which rule it breaks."""
    probe = name.replace(account, _ACCOUNT_STAND_IN) if account else name
    problem = None
    if not 3 <= len(probe) <= BUCKET_MAX:
        problem = f"is {len(probe)} characters (S3 allows 3-{BUCKET_MAX}); use a shorter system or bucket name"
    elif not _BUCKET_CHARS.match(probe):
        problem = "may hold only lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
    elif ".." in probe or re.fullmatch(r"\d+\.\d+\.\d+\.\d+", probe):
        problem = "must not contain '..' or look like an IP address"
    elif probe.startswith(_BUCKET_RESERVED_PREFIXES) or probe.endswith(_BUCKET_RESERVED_SUFFIXES):
        problem = "uses a prefix or suffix S3 reserves"
    if problem:
        raise DeployError(f"S3 bucket name {probe!r} {problem}")
    return name


def bucket_name(system: System, environment: str, bucket: str, region: str, account: str = ACCOUNT) -> str:
    """S3 bucket of a ``bucket`` resource (or ``access-logs``) in one region:
    ``<system>-<env>-<bucket>-<account>-<region>``, globally unique through the account id."""
    return check_bucket_name(f"{prefix(system, environment)}-{bucket}-{account}-{region}", account)


def alb_log_bucket(system: System, environment: str, region: str) -> str:
    """S3 bucket receiving the ALB/NLB access logs of one region (named in the Ingress annotation)."""
    return check_bucket_name(f"{prefix(system, environment)}-{region}-alb-logs", "")


def db_cluster_identifier(system: System, environment: str, resource: str) -> str:
    """Aurora cluster / RDS instance identifier."""
    return f"{prefix(system, environment)}-{resource}"


def global_db_identifier(system: System, environment: str, resource: str) -> str:
    """Aurora Global Database identifier."""
    return f"{prefix(system, environment)}-{resource}-global"


def redis_group_id(system: System, environment: str, resource: str) -> str:
    """ElastiCache replication group id (at most 40 characters)."""
    return f"{prefix(system, environment)}-{resource}"[:40].rstrip("-")


def search_domain_name(system: System, environment: str, resource: str) -> str:
    """OpenSearch domain name (3-28 characters)."""
    return f"{system.name}-{environment[:4]}-{resource}"[:28].rstrip("-")


def key_alias_prefix(system: System, environment: str) -> str:
    """Prefix of the KMS aliases of one environment: ``alias/voting-prod``."""
    return f"alias/{prefix(system, environment)}"


def global_key_alias_prefix(system: System, environment: str) -> str:
    """Prefix of the KMS aliases of the global (us-east-1) stack: ``alias/voting-prod-global``."""
    return f"alias/{prefix(system, environment)}-global"


def key_alias(system: System, environment: str, purpose: str) -> str:
    """KMS alias of a regional key: ``alias/voting-prod/data`` (same alias in every region)."""
    return f"{key_alias_prefix(system, environment)}/{purpose}"


def backup_vault_name(system: System, environment: str) -> str:
    """AWS Backup vault name (same in every region so copies can target it)."""
    return f"{prefix(system, environment)}-vault"


def web_acl_name(system: System, environment: str) -> str:
    """Regional WAFv2 WebACL name."""
    return f"{prefix(system, environment)}-edge"


def ssm_prefix(system: System, environment: str) -> str:
    """Path of the SSM parameters the CDK app writes and CI reads: ``/voting/prod``."""
    return f"/{system.name}/{environment}"


def ssm_parameter(system: System, environment: str, key: str) -> str:
    """One SSM parameter (in every region): ``waf-acl-arn``, ``certificate-arn``."""
    return f"{ssm_prefix(system, environment)}/{key}"


# ------------------------------------------------------------------ DNS


def public_host(system: System, environment: str) -> str:
    """Host the edge answers on, and the Route 53 zone: the domain in production, ``<env>.<domain>`` else."""
    domain = system.edge.domain
    return domain if is_production(environment) else f"{environment}.{domain}"


#: Parent of the host names the local gateway answers a route's ``host:`` on (``api.localhost``): every name
#: under ``localhost`` is the loopback address (RFC 6761 §6.3), so browsers reach them without set-up.
LOCAL_HOST_PARENT = "localhost"


def route_host(system: System, environment: str | None, label: str) -> str:
    """The full name of a route's ``host:`` label: ``api.aldea.example.com`` in production,
    ``api.staging.aldea.example.com`` in staging, ``api.localhost`` on the local gateway (``environment``
    None)."""
    parent = LOCAL_HOST_PARENT if environment is None else public_host(system, environment)
    return f"{label}.{parent}"


def route_hosts(system: System, environment: str) -> list[str]:
    """Every host name the spec's routes are limited to in ``environment`` (sorted; certificate and DNS)."""
    labels = {r.host for s in system.services.values() for r in s.routes if r.host}
    return sorted(route_host(system, environment, label) for label in labels)


def origin_host(system: System, environment: str, region: str) -> str:
    """Per-region origin (``us-east-1.vote.example.com``) that Route 53 health-checks and the latency and
    failover records point at; external-dns writes it from the Ingress."""
    return f"{region}.{public_host(system, environment)}"


def api_host(system: System, environment: str) -> str:
    """The public name clients use; latency-routed across healthy regions."""
    return f"api.{public_host(system, environment)}"


def writer_host(system: System, environment: str) -> str:
    """The name of the region that takes writes; fails over from the primary to a secondary."""
    return f"writer.{public_host(system, environment)}"
