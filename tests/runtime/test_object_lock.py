"""Object Lock in the object store: the local folder store refuses to overwrite or delete a locked object before
its retain-until date (real files), S3Store puts with the lock and S3 (moto) refuses the same; ``put_once``
is idempotent for the same bytes and refuses other bytes on both."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stackwright.runtime.storage import LocalStore, ObjectLocked, Retention, S3Store, store_from_url


def test_the_url_carries_the_lock(tmp_path: Path) -> None:
    store = store_from_url((tmp_path / "b").as_uri() + "?object_lock=COMPLIANCE&retain_days=30")
    assert isinstance(store, LocalStore) and store.retention == Retention("COMPLIANCE", 30)
    assert store_from_url((tmp_path / "c").as_uri()).retention is None


async def test_local_store_refuses_overwrite_and_delete_of_a_locked_object(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "archive", Retention("COMPLIANCE", 1))
    await store.put("seg/1-10.jsonl", b"first")
    until = store.locked_until("seg/1-10.jsonl")
    assert until is not None and 86000 < until - time.time() <= 86400
    with pytest.raises(ObjectLocked, match="overwrite refused"):
        await store.put("seg/1-10.jsonl", b"tampered")
    with pytest.raises(ObjectLocked, match="delete refused"):
        await store.delete("seg/1-10.jsonl")

    async def chunks() -> AsyncIterator[bytes]:
        yield b"tampered"

    with pytest.raises(ObjectLocked):
        await store.put_stream("seg/1-10.jsonl", chunks())
    assert await store.get("seg/1-10.jsonl") == b"first"
    # The retention file is hidden: listing shows the objects only.
    assert await store.list() == ["seg/1-10.jsonl"]


async def test_local_lock_ends_at_the_retain_until_date(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "archive", Retention("GOVERNANCE", 1))
    await store.put("k", b"v")
    # Age the lock as a day going by would (the date is what the store checks).
    sidecar = tmp_path / "archive" / ".k.retention"
    sidecar.write_text(json.dumps({"mode": "GOVERNANCE", "retain_until": time.time() - 1}))
    assert store.locked_until("k") is None
    await store.put("k", b"w")  # a new write is locked again
    assert store.locked_until("k") is not None
    sidecar.write_text(json.dumps({"mode": "GOVERNANCE", "retain_until": time.time() - 1}))
    await store.delete("k")
    with pytest.raises(KeyError):
        await store.get("k")
    assert not sidecar.exists()


async def test_local_put_once_is_idempotent_and_refuses_other_bytes(tmp_path: Path) -> None:
    for retention in (None, Retention("COMPLIANCE", 1)):
        store = LocalStore(tmp_path / str(retention is None), retention)
        assert await store.put_once("a/1", b"same") is True
        assert await store.put_once("a/1", b"same") is False
        with pytest.raises(ObjectLocked, match="other bytes"):
            await store.put_once("a/1", b"other")
        assert await store.get("a/1") == b"same"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    moto = pytest.importorskip("moto")
    for key, value in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    with moto.mock_aws():
        import boto3

        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="audit-archive", ObjectLockEnabledForBucket=True)
        yield client


async def test_s3_store_puts_with_the_retention_and_s3_refuses_changes(aws) -> None:  # type: ignore[no-untyped-def]
    store = store_from_url("s3://audit-archive?region=us-east-1&object_lock=COMPLIANCE&retain_days=7")
    assert isinstance(store, S3Store) and store.retention == Retention("COMPLIANCE", 7)
    await store.put("seg/1-10.jsonl", b"first")
    head = aws.head_object(Bucket="audit-archive", Key="seg/1-10.jsonl")
    assert head["ObjectLockMode"] == "COMPLIANCE"
    days = (head["ObjectLockRetainUntilDate"] - datetime.now(UTC)).total_seconds() / 86400
    assert 6.9 < days <= 7
    with pytest.raises(ObjectLocked, match="overwrite refused"):
        await store.put("seg/1-10.jsonl", b"tampered")
    with pytest.raises(ObjectLocked, match="delete refused"):
        await store.delete("seg/1-10.jsonl")
    # S3 itself refuses to remove the locked version (not only our client).
    with pytest.raises(Exception, match="AccessDenied"):
        aws.delete_object(Bucket="audit-archive", Key="seg/1-10.jsonl", VersionId=head["VersionId"])
    assert await store.get("seg/1-10.jsonl") == b"first"
    assert await store.put_once("seg/1-10.jsonl", b"first") is False
    with pytest.raises(ObjectLocked, match="other bytes"):
        await store.put_once("seg/1-10.jsonl", b"other")
    assert await store.put_once("seg/11-20.jsonl", b"second") is True
    assert await store.list("seg/") == ["seg/1-10.jsonl", "seg/11-20.jsonl"]
