"""ECR repositories, one per service: immutable tags, scan on push, KMS, lifecycle rules."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_kms as kms
from constructs import Construct

#: Untagged layers left by failed pushes go after this many days.
UNTAGGED_DAYS = 14
#: Images kept per repository (rollbacks reach this far back).
KEEP_IMAGES = 200


class Registry(Construct):
    """The system's image repositories in one region.

    In the primary region a registry replication rule copies every image pushed under the system's
    prefix to the repositories of the other regions, so CI pushes once.
    """

    def __init__(self, scope: Construct, construct_id: str, *, repositories: dict[str, str], key: kms.IKey,
                 replicate_to: list[str], prefix: str) -> None:
        super().__init__(scope, construct_id)
        self.repositories: dict[str, ecr.Repository] = {}
        for service, name in repositories.items():
            self.repositories[service] = ecr.Repository(
                self,
                service,
                repository_name=name,
                image_tag_mutability=ecr.TagMutability.IMMUTABLE,
                image_scan_on_push=True,
                encryption=ecr.RepositoryEncryption.KMS,
                encryption_key=key,
                removal_policy=RemovalPolicy.RETAIN,
                lifecycle_rules=[
                    ecr.LifecycleRule(rule_priority=1, description="expire untagged images",
                                      tag_status=ecr.TagStatus.UNTAGGED, max_image_age=Duration.days(UNTAGGED_DAYS)),
                    ecr.LifecycleRule(rule_priority=2, description=f"keep the last {KEEP_IMAGES} images",
                                      tag_status=ecr.TagStatus.ANY, max_image_count=KEEP_IMAGES),
                ],
            )
        if replicate_to:
            account = Stack.of(self).account
            ecr.CfnReplicationConfiguration(
                self,
                "Replication",
                replication_configuration=ecr.CfnReplicationConfiguration.ReplicationConfigurationProperty(rules=[
                    ecr.CfnReplicationConfiguration.ReplicationRuleProperty(
                        destinations=[ecr.CfnReplicationConfiguration.ReplicationDestinationProperty(
                            region=region, registry_id=account) for region in replicate_to],
                        repository_filters=[ecr.CfnReplicationConfiguration.RepositoryFilterProperty(
                            filter=f"{prefix}/", filter_type="PREFIX_MATCH")],
                    )
                ]),
            )
