"""The CDK side of the new spec fields, on the fixture specs (synthesized once per module).

Topic subscribers: one SQS queue + DLQ per subscriber, subscribed to the topic with raw delivery, a queue
policy letting only that topic send, and each subscriber's role consuming its own queue only.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.optional import require_extra

require_extra("aws")  # before the imports below, which need aws-cdk-lib

from tests.fixtures.load import fixture  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
STACK = "fanout-prod-us-east-1"


@pytest.fixture(scope="module")
def fanout(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from stackwright.render.aws import synth

    paths = synth(fixture("fanout"), tmp_path_factory.mktemp("cdk.out"))
    return {p.name.removesuffix(".template.json"): json.loads(p.read_text())["Resources"] for p in paths}


def _of(resources: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v["Properties"] for k, v in resources.items() if v["Type"] == kind}


def test_a_queue_and_dlq_per_subscriber(fanout: dict[str, Any]) -> None:
    queues = _of(fanout[STACK], "AWS::SQS::Queue")
    names = sorted(q["QueueName"] for q in queues.values())
    assert names == [f"fanout-prod-payment-events-{s}{d}" for s in ("ledger", "notifier") for d in ("", "-dlq")]
    main = [q for q in queues.values() if not q["QueueName"].endswith("-dlq")]
    assert all(q["RedrivePolicy"]["maxReceiveCount"] == 5 and "KmsMasterKeyId" in q for q in main)


def test_subscriptions_deliver_raw_to_each_queue(fanout: dict[str, Any]) -> None:
    subs = _of(fanout[STACK], "AWS::SNS::Subscription")
    assert len(subs) == 2
    assert all(s["Protocol"] == "sqs" and s["RawMessageDelivery"] is True for s in subs.values())


def test_queue_policy_allows_only_the_topic(fanout: dict[str, Any]) -> None:
    policies = _of(fanout[STACK], "AWS::SQS::QueuePolicy")
    sends = [st for p in policies.values() for st in p["PolicyDocument"]["Statement"]
             if st.get("Sid") == "OnlyThisTopicSends"]
    assert len(sends) == 2
    for st in sends:
        assert st["Principal"] == {"Service": "sns.amazonaws.com"} and st["Action"] == "sqs:SendMessage"
        assert "aws:SourceArn" in st["Condition"]["ArnEquals"]


def _consumed(fanout: dict[str, Any], service: str) -> set[str]:
    """Logical ids of the queues a service's role may receive from."""
    out: set[str] = set()
    for props in _of(fanout[STACK], "AWS::IAM::Policy").values():
        if not any(f'"ServiceRoles{service}' in json.dumps(r) for r in props.get("Roles", [])):
            continue
        for st in props["PolicyDocument"]["Statement"]:
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            if "sqs:ReceiveMessage" in actions:
                res = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
                out |= {r["Fn::GetAtt"][0] for r in res if isinstance(r, dict) and "Fn::GetAtt" in r}
    return out


def test_each_subscriber_consumes_its_own_queue_only(fanout: dict[str, Any]) -> None:
    ledger, notifier, api = (_consumed(fanout, s) for s in ("ledger", "notifier", "api"))
    assert ledger and notifier and not api
    assert all(q.startswith("Topicpaymentevents") and "ledger" in q for q in ledger)
    assert all(q.startswith("Topicpaymentevents") and "notifier" in q for q in notifier)


def _statements(fanout: dict[str, Any], service: str) -> list[dict[str, Any]]:
    """Policy statements attached to a service's role in the primary stack."""
    return [st for props in _of(fanout[STACK], "AWS::IAM::Policy").values()
            if any(f'"ServiceRoles{service}' in json.dumps(r) for r in props.get("Roles", []))
            for st in props["PolicyDocument"]["Statement"]]


def test_mail_is_an_ses_identity_only_its_users_may_send_as(fanout: dict[str, Any]) -> None:
    identities = _of(fanout[STACK], "AWS::SES::EmailIdentity")
    assert [i["EmailIdentity"] for i in identities.values()] == ["receipts@fanout.example.com"]
    sends = [st for st in _statements(fanout, "notifier") if "ses:SendEmail" in st["Action"]]
    assert len(sends) == 1
    assert sends[0]["Condition"] == {"StringEquals": {"ses:FromAddress": "receipts@fanout.example.com"}}
    assert "identity/receipts@fanout.example.com" in json.dumps(sends[0]["Resource"])
    assert not [st for s in ("api", "ledger") for st in _statements(fanout, s) if "ses:SendEmail" in st["Action"]]


def test_sns_may_use_the_data_key(fanout: dict[str, Any]) -> None:
    keys = _of(fanout["fanout-prod-us-east-1-foundation"], "AWS::KMS::Key")
    sids = {st.get("Sid") for k in keys.values() for st in k["KeyPolicy"]["Statement"]}
    assert "AllowSnsToEncryptedSubscriberQueues" in sids


# ---------------------------------------------------------------- bucket events and replication

FILES = "files-prod-us-east-1"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from stackwright.render.aws import synth

    paths = synth(fixture("files"), tmp_path_factory.mktemp("cdk.out"))
    return {p.name.removesuffix(".template.json"): json.loads(p.read_text())["Resources"] for p in paths}


def _uploads(files: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    ((lid, bucket),) = [(k, v) for k, v in files[FILES].items()
                        if v["Type"] == "AWS::S3::Bucket" and "uploads" in json.dumps(v["Properties"]["BucketName"])]
    return lid, bucket


def test_created_events_go_to_the_queue_after_its_policy(files: dict[str, Any]) -> None:
    _, bucket = _uploads(files)
    (config,) = bucket["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    assert config["Event"] == "s3:ObjectCreated:*"
    assert config["Filter"] == {"S3Key": {"Rules": [{"Name": "prefix", "Value": "incoming/"},
                                                    {"Name": "suffix", "Value": ".pdf"}]}}
    queue_id = config["Queue"]["Fn::GetAtt"][0]
    assert files[FILES][queue_id]["Properties"]["QueueName"] == "files-prod-scans"
    assert bucket["Properties"]["NotificationConfiguration"]["EventBridgeConfiguration"] == {"EventBridgeEnabled": True}
    policies = [k for k, v in files[FILES].items() if v["Type"] == "AWS::SQS::QueuePolicy"
                and {"Ref": queue_id} in v["Properties"]["Queues"]]
    assert policies and set(policies) <= set(bucket["DependsOn"])  # S3 tests the destination on create


def test_queue_policy_admits_only_this_bucket(files: dict[str, Any]) -> None:
    statements = [st for v in files[FILES].values() if v["Type"] == "AWS::SQS::QueuePolicy"
                  for st in v["Properties"]["PolicyDocument"]["Statement"] if st.get("Sid", "").startswith("S3Events")]
    (st,) = statements
    assert st["Principal"] == {"Service": "s3.amazonaws.com"} and st["Action"] == "sqs:SendMessage"
    assert "files-prod-uploads-" in json.dumps(st["Condition"]["ArnLike"]["aws:SourceArn"])
    assert "aws:SourceAccount" in st["Condition"]["StringEquals"]
    keys = _of(files["files-prod-us-east-1-foundation"], "AWS::KMS::Key")
    sids = {st.get("Sid") for k in keys.values() for st in k["KeyPolicy"]["Statement"]}
    assert "AllowS3ToEncryptedEventQueues" in sids


def test_replicated_to_the_listed_region_with_its_key(files: dict[str, Any]) -> None:
    _, bucket = _uploads(files)
    (rule,) = bucket["Properties"]["ReplicationConfiguration"]["Rules"]
    assert rule["DeleteMarkerReplication"] == {"Status": "Enabled"}
    assert "us-west-2" in json.dumps(rule["Destination"]["Bucket"])
    assert rule["Destination"]["EncryptionConfiguration"]["ReplicaKmsKeyID"].startswith("arn:aws:kms:us-west-2:")
    replicas = _of(files["files-prod-us-west-2-foundation"], "AWS::S3::Bucket")
    assert any("uploads" in json.dumps(b["BucketName"]) for b in replicas.values())
