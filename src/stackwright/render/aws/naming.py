"""Deterministic physical names shared by the CDK app and the Kubernetes side.

Everything another renderer (Kubernetes manifests, CI) needs to find an AWS resource is derived here
from the spec, so both sides agree without reading CloudFormation outputs:

* ``namespace`` / ``service_account``: where a service's pods run; the EKS Pod Identity association
  maps that service account to the service's IAM role (no role-ARN annotation needed).
* queue, topic, secret, repository and cluster names, and the DNS names Route 53 health-checks.
"""

from __future__ import annotations

from stackwright.spec.model import QueueResource, Region, System

#: Placeholder account used for offline synth (and in ``cdk.context.json``); real deploys use the
#: account of the caller's credentials (``CDK_DEFAULT_ACCOUNT``).
PLACEHOLDER_ACCOUNT = "123456789012"

#: Region for the global stack: Route 53 query logging and DNSSEC keys must live in us-east-1.
GLOBAL_REGION = "us-east-1"

#: Path the Route 53 health checks request on every regional origin (the edge's health endpoint).
HEALTH_CHECK_PATH = "/healthz"

# Regions whose AZ letters do not start at "a" (the rest use a, b, c, ...).
_AZ_LETTERS: dict[str, str] = {
    "us-west-1": "bc",
    "ap-northeast-1": "acd",
    "ap-northeast-2": "abcd",
    "sa-east-1": "abc",
    "ca-central-1": "abd",
}


def default_environment(system: System) -> str:
    """The environment rendered when none is asked for: ``prod`` if declared, else the last one."""
    return "prod" if "prod" in system.environments else system.environments[-1]


def prefix(system: System, environment: str) -> str:
    """``voting-prod``: the prefix of every physical name of one environment."""
    return f"{system.name}-{environment}"


def regional_stack_name(system: System, environment: str, region: Region | str) -> str:
    """CloudFormation stack name for one region: ``voting-prod-us-east-1``."""
    name = region if isinstance(region, str) else region.name
    return f"{prefix(system, environment)}-{name}"


def global_stack_name(system: System, environment: str) -> str:
    """CloudFormation stack name for the global (Route 53) stack: ``voting-prod-global``."""
    return f"{prefix(system, environment)}-global"


def az_count(region: str) -> int:
    """How many AZ names :func:`availability_zones` knows for a region."""
    return len(_AZ_LETTERS.get(region, "abcdef"))


def availability_zones(region: str, count: int) -> list[str]:
    """The first ``count`` AZ names of a region (placeholders good for offline synth and most accounts)."""
    letters = _AZ_LETTERS.get(region, "abcdef")
    if count > len(letters):
        raise ValueError(f"region {region} has only {len(letters)} availability zones; network.azs is {count}")
    return [f"{region}{letter}" for letter in letters[:count]]


def cluster_name(system: System, environment: str, region: str) -> str:
    """EKS cluster name: ``voting-prod-us-east-1``."""
    return f"{prefix(system, environment)}-{region}"


def namespace(system: System) -> str:
    """Kubernetes namespace the system's services run in."""
    return system.name


def service_account(service: str) -> str:
    """Kubernetes ServiceAccount of a service (bound to its IAM role through EKS Pod Identity)."""
    return service


def queue_name(system: System, environment: str, name: str, queue: QueueResource, dlq: bool = False) -> str:
    """SQS queue name (``voting-prod-votes``, ``voting-prod-votes-dlq``; FIFO queues end in ``.fifo``)."""
    base = f"{prefix(system, environment)}-{name}" + ("-dlq" if dlq else "")
    return base + (".fifo" if queue.fifo else "")


def queue_url(system: System, environment: str, region: str, account: str, name: str) -> str:
    """The URL services use for a queue in one region."""
    queue = system.resources[name]
    assert isinstance(queue, QueueResource)
    return f"https://sqs.{region}.amazonaws.com/{account}/{queue_name(system, environment, name, queue)}"


def topic_name(system: System, environment: str, name: str) -> str:
    """SNS topic name."""
    return f"{prefix(system, environment)}-{name}"


def secret_prefix(system: System, environment: str) -> str:
    """Secrets Manager path prefix of the system: ``voting/prod``."""
    return f"{system.name}/{environment}"


def db_admin_secret_name(system: System, environment: str, resource: str) -> str:
    """Secret holding the master credentials of a database (used by migrations only)."""
    return f"{secret_prefix(system, environment)}/{resource}/admin"


def db_user_secret_name(system: System, environment: str, resource: str, service: str) -> str:
    """Secret holding one service's own database login (username = service name)."""
    return f"{secret_prefix(system, environment)}/{resource}/users/{service}"


def tenant_secret_prefix(system: System, environment: str, resource: str) -> str:
    """Prefix under which per-tenant database secrets are created at run time."""
    return f"{secret_prefix(system, environment)}/{resource}/tenants/"


def db_password_secret_name(system: System, environment: str, resource: str, service: str) -> str:
    """Generated password of a service's database login (replicated to every region)."""
    return f"{db_user_secret_name(system, environment, resource, service)}/password"


def redis_auth_secret_name(system: System, environment: str, resource: str) -> str:
    """Secret services read for Redis: ``url`` (``rediss://:<token>@host:port``) and ``token``."""
    return f"{secret_prefix(system, environment)}/{resource}/auth-token"


def redis_token_secret_name(system: System, environment: str, resource: str) -> str:
    """Generated AUTH token of a Redis replication group (replicated to every region)."""
    return f"{secret_prefix(system, environment)}/{resource}/token"


def external_url_secret_name(system: System, environment: str, resource: str) -> str:
    """Secret an operator fills with the URL of an external (not provisioned) database."""
    return f"{secret_prefix(system, environment)}/{resource}/url"


def service_secret_name(system: System, environment: str, service: str) -> str:
    """Secret for a service's own settings (signing keys, third-party API keys)."""
    return f"{secret_prefix(system, environment)}/services/{service}"


def service_role_name(system: System, environment: str, region: str, service: str) -> str:
    """IAM role of a service's pods in one region (trusted by EKS Pod Identity and IRSA)."""
    return f"{system.name}-{environment}-{region}-{service}"[:64]


def scaler_role_name(system: System, environment: str, region: str, service: str) -> str:
    """IAM role KEDA assumes to read the queue depth a worker scales on."""
    return f"{system.name}-{environment}-{region}-{service}-keda"[:64]


def keda_operator_role_name(system: System, environment: str, region: str) -> str:
    """IAM role of the KEDA operator's ServiceAccount (IRSA) in one cluster."""
    return f"{system.name}-{environment}-{region}-keda-operator"[:64]


def public_host(system: System, environment: str) -> str:
    """Host the edge answers on, and the Route 53 zone: the domain in prod, ``<env>.<domain>`` elsewhere."""
    domain = system.edge.domain
    return domain if environment in ("prod", "production") else f"{environment}.{domain}"


def alb_log_bucket(system: System, environment: str, region: str) -> str:
    """Bucket receiving the ALB/NLB access logs of one region (named in the Ingress annotation)."""
    return f"{system.name}-{environment}-{region}-alb-logs"


def ssm_parameter(system: System, environment: str, key: str) -> str:
    """SSM parameter (in every region) CI reads at deploy time: ``waf-acl-arn``, ``certificate-arn``."""
    return f"/{system.name}/{environment}/{key}"


def repository_name(system: System, service: str) -> str:
    """ECR repository of a service's image (same name in every region)."""
    return f"{system.name}/{service}"


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


def key_alias(system: System, environment: str, purpose: str) -> str:
    """KMS alias of a regional key: ``alias/voting-prod/data`` (same alias in every region)."""
    return f"alias/{prefix(system, environment)}/{purpose}"


def backup_vault_name(system: System, environment: str) -> str:
    """AWS Backup vault name (same in every region so copies can target it)."""
    return f"{prefix(system, environment)}-vault"


def web_acl_name(system: System, environment: str) -> str:
    """Regional WAFv2 WebACL name."""
    return f"{prefix(system, environment)}-edge"


def origin_host(system: System, region: str, environment: str = "prod") -> str:
    """Per-region origin name (``us-east-1.vote.example.com``), written by external-dns from the Ingress."""
    return f"{region}.{public_host(system, environment)}"


def api_host(system: System, environment: str = "prod") -> str:
    """The public name clients use; latency-routed across healthy regions."""
    return f"api.{public_host(system, environment)}"


def writer_host(system: System, environment: str = "prod") -> str:
    """The name of the region that takes writes; fails over from the primary to a secondary."""
    return f"writer.{public_host(system, environment)}"
