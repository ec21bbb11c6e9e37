"""Customer-managed KMS keys of one region, one per purpose, each with rotation and a stable alias."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

PURPOSES = ("data", "logs", "eks", "backup")


class RegionalKeys(Construct):
    """KMS keys for data at rest (``data``), CloudWatch Logs (``logs``), EKS secrets (``eks``) and backups.

    Aliases are the same in every region (``alias/<system>-<env>/<purpose>``) so cross-region
    consumers (S3 replication, backup copies) can name the destination key without a cross-stack reference.
    """

    def __init__(self, scope: Construct, construct_id: str, *, alias_prefix: str,
                 purposes: tuple[str, ...] = PURPOSES) -> None:
        super().__init__(scope, construct_id)
        self.alias_prefix = alias_prefix
        region = Stack.of(self).region
        self._keys: dict[str, kms.Key] = {}
        for purpose in purposes:
            key = kms.Key(
                self,
                purpose.capitalize(),
                alias=f"{alias_prefix}/{purpose}",
                description=f"{alias_prefix} {purpose} encryption key",
                enable_key_rotation=True,
                removal_policy=RemovalPolicy.RETAIN,
                pending_window=None,
            )
            self._keys[purpose] = key
        # CloudWatch Logs encrypts log groups of this account and region with the logs key.
        self.logs.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchLogs",
                principals=[iam.ServicePrincipal(f"logs.{region}.amazonaws.com")],
                actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
                resources=["*"],
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": f"arn:{Stack.of(self).partition}:logs:{region}:"
                        f"{Stack.of(self).account}:log-group:*"
                    }
                },
            )
        )

    @property
    def data(self) -> kms.Key:
        """Key for queues, topics, secrets, caches, repositories, buckets, search and databases."""
        return self._keys["data"]

    @property
    def logs(self) -> kms.Key:
        """Key for CloudWatch log groups (the logs service may use it)."""
        return self._keys["logs"]

    @property
    def eks(self) -> kms.Key:
        """Key for EKS envelope encryption of Kubernetes Secrets."""
        return self._keys["eks"]

    @property
    def backup(self) -> kms.Key:
        """Key for the AWS Backup vault."""
        return self._keys["backup"]

    def alias_arn(self, purpose: str, region: str) -> str:
        """ARN of the same-purpose key alias in another region of this account."""
        stack = Stack.of(self)
        return f"arn:{stack.partition}:kms:{region}:{stack.account}:{self.alias_prefix}/{purpose}"
