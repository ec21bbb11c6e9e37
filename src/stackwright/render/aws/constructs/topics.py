"""Pub/sub topics: SNS, KMS-encrypted, TLS-only, with one SQS queue per subscriber."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stackwright.resources.topic import MAX_RECEIVE
from stackwright.spec.model import TopicResource

#: How long failed events wait in a subscriber's dead-letter queue (the SQS maximum).
DLQ_RETENTION = Duration.days(14)


class Topic(Construct):
    """An SNS topic encrypted with the regional data key; publishes must use TLS.

    ``subscribers`` maps each subscribing service to (queue name, DLQ name): each gets its own SQS queue
    (raw message delivery, so it receives the published body), a dead-letter queue after
    :data:`~stackwright.resources.topic.MAX_RECEIVE` receives, and a queue policy that lets only this
    topic send. We build the subscription from the L1-level ``sns.Subscription`` rather than
    ``SqsSubscription``: the latter edits the data key's policy, which lives in the foundation stack, and
    would make it depend on this stack (a cycle). The foundation grants SNS the key instead.
    """

    def __init__(self, scope: Construct, construct_id: str, *, spec: TopicResource, name: str,
                 key: kms.IKey, subscribers: dict[str, tuple[str, str]] | None = None) -> None:
        super().__init__(scope, construct_id)
        self.key = key
        self.topic = sns.Topic(self, "Topic", topic_name=name, display_name=spec.description[:100] or name,
                               master_key=key, enforce_ssl=True)
        self.queues: dict[str, tuple[sqs.Queue, sqs.Queue]] = {}
        for service, (queue_name, dlq_name) in (subscribers or {}).items():
            dlq = sqs.Queue(self, f"Dlq-{service}", queue_name=dlq_name, retention_period=DLQ_RETENTION,
                            encryption=sqs.QueueEncryption.KMS, encryption_master_key=key,
                            data_key_reuse=Duration.minutes(5), enforce_ssl=True,
                            removal_policy=RemovalPolicy.RETAIN)
            queue = sqs.Queue(self, f"Queue-{service}", queue_name=queue_name,
                              encryption=sqs.QueueEncryption.KMS, encryption_master_key=key,
                              data_key_reuse=Duration.minutes(5), enforce_ssl=True,
                              removal_policy=RemovalPolicy.RETAIN,
                              dead_letter_queue=sqs.DeadLetterQueue(queue=dlq, max_receive_count=MAX_RECEIVE))
            queue.add_to_resource_policy(iam.PolicyStatement(
                sid="OnlyThisTopicSends", actions=["sqs:SendMessage"], resources=[queue.queue_arn],
                principals=[iam.ServicePrincipal("sns.amazonaws.com")],
                conditions={"ArnEquals": {"aws:SourceArn": self.topic.topic_arn}}))
            sns.Subscription(self, f"Subscription-{service}", topic=self.topic, endpoint=queue.queue_arn,
                             protocol=sns.SubscriptionProtocol.SQS, raw_message_delivery=True)
            self.queues[service] = (queue, dlq)

    def grant(self, role: iam.IRole, service: str | None = None) -> None:
        """Publish rights (and the KMS use that goes with them); a subscriber also consumes its own queue
        and DLQ, and no other subscriber's."""
        self.topic.grant_publish(role)
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["sns:Subscribe", "sns:Unsubscribe", "sns:GetTopicAttributes"],
            resources=[self.topic.topic_arn]))
        if service in self.queues:
            queue, dlq = self.queues[service]
            queue.grant_consume_messages(role)
            dlq.grant_consume_messages(role)
            dlq.grant_send_messages(role)  # redrive from the DLQ goes back through send


def allow_sns(key: kms.Key, account: str) -> None:
    """Let SNS encrypt deliveries into queues under ``key`` (subscriber queues), for this account's topics.

    Conditioned on the source account rather than on each topic's ARN so the foundation stack holding the
    key never refers to a regional stack."""
    key.add_to_resource_policy(iam.PolicyStatement(
        sid="AllowSnsToEncryptedSubscriberQueues", actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=["*"],
        principals=[iam.ServicePrincipal("sns.amazonaws.com")],
        conditions={"StringEquals": {"aws:SourceAccount": account}}))
