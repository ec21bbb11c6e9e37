"""Bucket events (``events: [{on, prefix, suffix, queue}]``) and replication (``replicate_to``): validation
with file:line, and the replica's storage and transfer in the plan's cost."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stackwright.plan.builder import build_plan
from stackwright.spec import SpecError, load_system
from tests.fixtures.load import edited, fixture, line_of


def test_fixture_reads_the_yaml_on_key() -> None:
    (event,) = fixture("files").resources["uploads"].events
    assert (event.on, event.prefix, event.suffix, event.queue) == ("created", "incoming/", ".pdf", "scans")
    assert event.s3_event == "s3:ObjectCreated:*"


def _uploads(spec: dict) -> dict:
    return spec["resources"]["uploads"]


@pytest.mark.parametrize(("edit", "message", "line"), [
    (lambda s: _uploads(s)["events"][0].update(queue="uploads"), "'uploads', which is not a declared queue",
     "queue: uploads"),
    (lambda s: s["resources"]["scans"].update(fifo=True), "S3 notifications go to standard queues only",
     "queue: scans"),
    (lambda s: _uploads(s).update(replicate_to=["eu-west-1"]), "eu-west-1, which is not a region", "- eu-west-1"),
    (lambda s: _uploads(s).update(replicate_to=["us-east-1"]), "cannot replicate to itself", "- us-east-1"),
    (lambda s: _uploads(s).update(versioned=False), "must be versioned to replicate", "- us-west-2"),
])
def test_events_and_replicas_are_validated_with_the_line(tmp_path: Path, edit, message: str, line: str) -> None:
    path = edited("files", tmp_path, edit)
    with pytest.raises(SpecError, match=re.escape(message)) as info:
        load_system(path)
    assert f"system.yaml:{line_of(path, line)}:" in str(info.value)


def test_plan_prices_the_replica_storage_and_transfer() -> None:
    plan = build_plan(fixture("files"))
    lines = {ln.item: ln for ln in plan.cost.lines if "uploads" in ln.item}
    replica = lines["S3 uploads (replica): 500 GB"]
    transfer = lines["S3 uploads replication to us-west-2: 100 GB"]
    assert replica.region == transfer.region == "us-west-2"
    # The replica is stored once, though us-west-2 is both the DR region and a replicate_to target.
    assert [ln.item for ln in plan.cost.lines if ln.region == "us-west-2" and ln.category == "storage"
            and "uploads" in ln.item] == ["S3 uploads (replica): 500 GB"]
    assert replica.monthly_usd == pytest.approx(lines["S3 uploads: 500 GB"].monthly_usd)
    assert transfer.monthly_usd == pytest.approx(100 * 0.02)  # inter-region transfer, $/GB


def test_schema_documents_events_and_replicas() -> None:
    from stackwright.spec.schema import json_schema

    defs = json_schema()["$defs"]
    assert "SQS" in defs["BucketResource"]["properties"]["events"]["description"]
    assert "standard, not FIFO" in defs["BucketEvent"]["properties"]["queue"]["description"]
