"""S3 buckets: one per ``bucket`` resource, plus the regional access-log bucket.

Data buckets are versioned, KMS-encrypted (bucket keys on), block all public access, deny non-TLS
requests, log access to the regional log bucket, send events to EventBridge and carry the spec's
lifecycle rules. In a multi-region system each data bucket is replicated to the same-named bucket of
the DR region (``replica=True`` builds that destination). A bucket with ``object_lock`` is created with
Object Lock enabled and the spec's default retention (its replica too: S3 replicates a locked object's
retention, and the destination must have Object Lock as well).
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stackwright.resources.bucket import BucketEvent
from stackwright.spec.model import BucketResource

STORAGE_CLASSES: dict[str, s3.StorageClass] = {
    "STANDARD_IA": s3.StorageClass.INFREQUENT_ACCESS,
    "INTELLIGENT_TIERING": s3.StorageClass.INTELLIGENT_TIERING,
    "GLACIER_IR": s3.StorageClass.GLACIER_INSTANT_RETRIEVAL,
    "GLACIER": s3.StorageClass.GLACIER,
    "DEEP_ARCHIVE": s3.StorageClass.DEEP_ARCHIVE,
}


def lifecycle_rules(spec: BucketResource) -> list[s3.LifecycleRule]:
    """The spec's transitions (applied to current and noncurrent versions) and expiry."""
    transitions = [r for r in sorted(spec.lifecycle, key=lambda r: r.after_days) if r.storage_class != "EXPIRE"]
    expire = next((r.after_days for r in spec.lifecycle if r.storage_class == "EXPIRE"), None)
    rules = [s3.LifecycleRule(id="abort-incomplete-uploads",
                              abort_incomplete_multipart_upload_after=Duration.days(7))]
    if transitions or expire:
        rules.append(s3.LifecycleRule(
            id="spec-lifecycle",
            transitions=[s3.Transition(storage_class=STORAGE_CLASSES[r.storage_class],
                                       transition_after=Duration.days(r.after_days)) for r in transitions] or None,
            noncurrent_version_transitions=[s3.NoncurrentVersionTransition(
                storage_class=STORAGE_CLASSES[r.storage_class], transition_after=Duration.days(r.after_days))
                for r in transitions] if spec.versioned and transitions else None,
            expiration=Duration.days(expire) if expire else None,
            noncurrent_version_expiration=Duration.days(expire) if expire and spec.versioned else None,
        ))
    return rules


def _event_bridge(bucket: s3.Bucket) -> None:
    # Native property instead of the L2 flag, which deploys a notifications Lambda.
    cfn = bucket.node.default_child
    assert isinstance(cfn, s3.CfnBucket)
    cfn.add_property_override("NotificationConfiguration.EventBridgeConfiguration.EventBridgeEnabled", True)


def log_bucket(scope: Construct, construct_id: str, *, name: str, retention_days: int,
               access_logs: s3.IBucket | None = None, access_logs_prefix: str | None = None) -> s3.Bucket:
    """A hardened bucket for delivered logs: SSE-S3 (S3 access logging and ELB log delivery cannot write
    to SSE-KMS), private, SSL-only, versioned, expiring after ``retention_days``."""
    bucket = s3.Bucket(
        scope,
        construct_id,
        bucket_name=name,
        encryption=s3.BucketEncryption.S3_MANAGED,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        enforce_ssl=True,
        minimum_tls_version=1.2,
        versioned=True,
        server_access_logs_bucket=access_logs,
        server_access_logs_prefix=access_logs_prefix,
        removal_policy=RemovalPolicy.RETAIN,
        lifecycle_rules=[s3.LifecycleRule(
            id="expire-logs", expiration=Duration.days(retention_days),
            noncurrent_version_expiration=Duration.days(1),
            abort_incomplete_multipart_upload_after=Duration.days(1))],
    )
    _event_bridge(bucket)
    return bucket


class AccessLogBucket(Construct):
    """Regional target of S3 server access logs."""

    def __init__(self, scope: Construct, construct_id: str, *, name: str, retention_days: int) -> None:
        super().__init__(scope, construct_id)
        self.bucket = log_bucket(self, "Bucket", name=name, retention_days=retention_days)


class DataBucket(Construct):
    """One ``bucket`` resource in one region (the source, or with ``replica=True`` its DR copy)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        spec: BucketResource,
        name: str,
        key: kms.IKey,
        access_logs: s3.IBucket,
        log_prefix: str,
        replicate_to: list[tuple[str, str, str]] | None = None,
    ) -> None:
        """``replicate_to`` lists (region, bucket name, KMS key alias ARN) of each replica; the first keeps
        the rule id and construct id the single DR copy always had, so existing templates do not change."""
        super().__init__(scope, construct_id)
        self.spec = spec
        self.name = name
        lock = spec.object_lock
        retention = None
        if lock is not None:
            make = s3.ObjectLockRetention.compliance if lock.mode == "COMPLIANCE" else s3.ObjectLockRetention.governance
            retention = make(Duration.days(lock.retain_days))
        self.spec_id = "".join(c for c in construct_id if c.isalnum())
        self._queue_configs: list[dict[str, object]] = []
        rules = None
        targets = (replicate_to or []) if spec.versioned else []
        if targets:
            rules = []
            for i, (dest_region, dest_name, _key_alias_arn) in enumerate(targets):
                destination = s3.Bucket.from_bucket_attributes(
                    self, "Destination" if i == 0 else f"Destination-{dest_region}", bucket_name=dest_name,
                    region=dest_region)
                rules.append(s3.ReplicationRule(
                    destination=destination, priority=i + 1, id="dr-copy" if i == 0 else f"replica-{dest_region}",
                    delete_marker_replication=True, sse_kms_encrypted_objects=True, filter=s3.Filter(prefix="")))
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            bucket_name=name,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            versioned=spec.versioned,
            object_lock_enabled=True if lock is not None else None,
            object_lock_default_retention=retention,
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix=f"{log_prefix}/",
            lifecycle_rules=lifecycle_rules(spec),
            removal_policy=RemovalPolicy.RETAIN,
            replication_rules=rules,
        )
        _event_bridge(self.bucket)
        for i, target in enumerate(targets):
            self._encrypt_replicas(i, *target)
        if targets and lock is not None:
            # Replicating locked objects: the role reads each version's retention and legal hold too.
            role = self.bucket.node.find_child("ReplicationRole")
            assert isinstance(role, iam.Role)
            role.add_to_principal_policy(iam.PolicyStatement(
                sid="ReadObjectLockForReplication", actions=["s3:GetObjectRetention", "s3:GetObjectLegalHold"],
                resources=[self.bucket.arn_for_objects("*")]))

    def _encrypt_replicas(self, index: int, region: str, _name: str, key_alias_arn: str) -> None:
        """Replicas are encrypted with their region's data key, named by alias (no cross-region reference)."""
        cfn = self.bucket.node.default_child
        assert isinstance(cfn, s3.CfnBucket)
        cfn.add_property_override(
            f"ReplicationConfiguration.Rules.{index}.Destination.EncryptionConfiguration.ReplicaKmsKeyID",
            key_alias_arn)
        role = self.bucket.node.find_child("ReplicationRole")
        assert isinstance(role, iam.Role)
        stack = Stack.of(self)
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="EncryptReplicasWithTheDrKey" if index == 0 else f"EncryptReplicasIn{region.replace('-', '')}",
            actions=["kms:Encrypt", "kms:GenerateDataKey"],
            resources=[f"arn:{stack.partition}:kms:{region}:{stack.account}:key/*"],
            conditions={"ForAnyValue:StringEquals": {"kms:ResourceAliases": key_alias_arn.split(":", 5)[5]}},
        ))


    def notify(self, event: BucketEvent, queue: sqs.IQueue) -> None:
        """Send S3's ``event`` notifications to ``queue``: the queue's policy admits this bucket (by name, so
        there is no reference cycle) from this account only, and the bucket waits for that policy, since S3
        tests the destination when the configuration is set. Native NotificationConfiguration rather than the
        L2 ``add_event_notification``, which deploys a notifications Lambda."""
        stack = Stack.of(self)
        queue.add_to_resource_policy(iam.PolicyStatement(
            sid=f"S3Events{self.spec_id}", actions=["sqs:SendMessage"], resources=[queue.queue_arn],
            principals=[iam.ServicePrincipal("s3.amazonaws.com")],
            conditions={"ArnLike": {"aws:SourceArn": f"arn:{stack.partition}:s3:::{self.name}"},
                        "StringEquals": {"aws:SourceAccount": stack.account}}))
        # add_to_resource_policy keeps the statements in the queue's "Policy" child (an AWS::SQS::QueuePolicy).
        policy = queue.node.try_find_child("Policy")
        cfn_bucket = self.bucket.node.default_child
        assert isinstance(policy, sqs.QueuePolicy) and isinstance(cfn_bucket, s3.CfnBucket)
        cfn_bucket.node.add_dependency(policy)
        rules = [{"Name": n, "Value": v} for n, v in (("prefix", event.prefix), ("suffix", event.suffix)) if v]
        config: dict[str, object] = {"Event": event.s3_event, "Queue": queue.queue_arn}
        if rules:
            config["Filter"] = {"S3Key": {"Rules": rules}}
        self._queue_configs.append(config)
        cfn = self.bucket.node.default_child
        assert isinstance(cfn, s3.CfnBucket)
        cfn.add_property_override("NotificationConfiguration.QueueConfigurations", self._queue_configs)


def allow_s3_notifications(key: kms.Key, account: str) -> None:
    """Let S3 send event notifications into queues encrypted with ``key``, for this account's buckets.

    Conditioned on the source account so the foundation stack holding the key never refers to a bucket."""
    key.add_to_resource_policy(iam.PolicyStatement(
        sid="AllowS3ToEncryptedEventQueues", actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=["*"],
        principals=[iam.ServicePrincipal("s3.amazonaws.com")],
        conditions={"StringEquals": {"aws:SourceAccount": account}}))
