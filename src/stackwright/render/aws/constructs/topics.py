"""Pub/sub topics: SNS, KMS-encrypted, TLS-only."""

from __future__ import annotations

from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct

from stackwright.spec.model import TopicResource


class Topic(Construct):
    """An SNS topic encrypted with the regional data key; publishes must use TLS."""

    def __init__(self, scope: Construct, construct_id: str, *, spec: TopicResource, name: str,
                 key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        self.key = key
        self.topic = sns.Topic(self, "Topic", topic_name=name, display_name=spec.description[:100] or name,
                               master_key=key, enforce_ssl=True)

    def grant(self, role: iam.IRole) -> None:
        """Publish rights (and the KMS use that goes with them)."""
        self.topic.grant_publish(role)
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["sns:Subscribe", "sns:Unsubscribe", "sns:GetTopicAttributes"],
            resources=[self.topic.topic_arn]))
