"""SQS queues with dead-letter queues, a customer-managed KMS key and an SSL-only queue policy."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stackwright.spec.model import QueueResource
from stackwright.spec.quantities import seconds

#: How long failed messages wait in a dead-letter queue (the SQS maximum).
DLQ_RETENTION = Duration.days(14)


class Queue(Construct):
    """A work queue (``queue``) and, when the spec asks, its dead-letter queue (``dlq``).

    A message received ``max_receive_count`` times without being deleted moves to the DLQ. The
    visibility timeout and retention come from the spec; both queues are encrypted with the
    regional data key and deny any request not made over TLS.
    """

    def __init__(self, scope: Construct, construct_id: str, *, spec: QueueResource, name: str, dlq_name: str,
                 key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        self.dlq: sqs.Queue | None = None
        dead_letter = None
        if spec.dlq:
            self.dlq = sqs.Queue(
                self, "Dlq", queue_name=dlq_name, fifo=spec.fifo or None, retention_period=DLQ_RETENTION,
                encryption=sqs.QueueEncryption.KMS, encryption_master_key=key,
                data_key_reuse=Duration.minutes(5), enforce_ssl=True, removal_policy=RemovalPolicy.RETAIN,
            )
            dead_letter = sqs.DeadLetterQueue(queue=self.dlq, max_receive_count=spec.max_receive_count)
        self.queue = sqs.Queue(
            self, "Queue", queue_name=name, fifo=spec.fifo or None,
            visibility_timeout=Duration.seconds(int(seconds(spec.visibility_timeout))),
            retention_period=Duration.seconds(int(seconds(spec.retention))),
            encryption=sqs.QueueEncryption.KMS, encryption_master_key=key, data_key_reuse=Duration.minutes(5),
            enforce_ssl=True, dead_letter_queue=dead_letter, removal_policy=RemovalPolicy.RETAIN,
            content_based_deduplication=True if spec.fifo else None,
        )

    def grant(self, grantee: iam.IGrantable) -> None:
        """Producer and consumer rights on the queue; read and redrive rights on its DLQ."""
        self.queue.grant_send_messages(grantee)
        self.queue.grant_consume_messages(grantee)
        if self.dlq is not None:
            self.dlq.grant_consume_messages(grantee)
            self.dlq.grant_send_messages(grantee)
