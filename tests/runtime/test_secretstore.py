"""The writable secret store: a mode-0600 file that concurrent writers never truncate, and Secrets
Manager (emulated by moto) with one secret per key."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import pytest

from stackwright.runtime.secretstore import SecretStore


def test_file_store_keeps_every_writers_keys_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "tenant-secrets.json"
    store = SecretStore(path.as_uri())

    async def scenario() -> None:
        await asyncio.gather(*(store.put({f"tenant_t{i}_db_url": f"postgresql://t{i}"}) for i in range(20)))
        assert await store.get("tenant_t7_db_url") == "postgresql://t7"
        assert await store.get("missing") is None

    asyncio.run(scenario())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(json.loads(path.read_text())) == 20


def test_secretsmanager_store_creates_then_overwrites(monkeypatch: pytest.MonkeyPatch) -> None:
    moto = pytest.importorskip("moto")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with moto.mock_aws():
        store = SecretStore("secretsmanager://payments/prod/tenant-secrets?region=us-east-1")

        async def scenario() -> None:
            assert await store.get("tenant_t1_db_password") is None
            await store.put({"tenant_t1_db_password": "one"})
            await store.put({"tenant_t1_db_password": "two"})
            assert await store.get("tenant_t1_db_password") == "two"
            import boto3

            listed = boto3.client("secretsmanager", region_name="us-east-1").list_secrets()["SecretList"]
            names = [s["Name"] for s in listed]
            assert names == ["payments/prod/tenant-secrets/tenant_t1_db_password"]

        asyncio.run(scenario())


def test_unknown_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        SecretStore("vault://x")


def test_secretsmanager_store_replicates_new_secrets_to_the_standby(monkeypatch: pytest.MonkeyPatch) -> None:
    """A secret made at run time is created with a replica in each other region (encrypted with the data key
    alias), and a service in the standby region reads it there, also after the primary's value changes."""
    moto = pytest.importorskip("moto")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with moto.mock_aws():
        import boto3

        for region in ("us-east-1", "sa-east-1"):
            kms = boto3.client("kms", region_name=region)
            kms.create_alias(AliasName="alias/payments-prod/data", TargetKeyId=kms.create_key()["KeyMetadata"]["KeyId"])
        base = "secretsmanager://payments/prod/tenant-secrets?region=us-east-1&kms=alias/payments-prod/data"
        primary = SecretStore(f"{base}&replicas=sa-east-1")
        standby = SecretStore(f"{base}&replicas=sa-east-1&read_region=sa-east-1")
        assert primary.replicas == ["sa-east-1"] and standby.read_region == "sa-east-1"

        async def scenario() -> None:
            await primary.put({"tenant_t1_db_url": "postgresql://one"})
            assert await standby.get("tenant_t1_db_url") == "postgresql://one"
            await primary.put({"tenant_t1_db_url": "postgresql://two"})  # a new version reaches the replica
            assert await standby.get("tenant_t1_db_url") == "postgresql://two"
            assert await standby.get("tenant_t2_db_url") is None

        asyncio.run(scenario())
        described = boto3.client("secretsmanager", region_name="us-east-1").describe_secret(
            SecretId="payments/prod/tenant-secrets/tenant_t1_db_url")
        assert described["KmsKeyId"] == "alias/payments-prod/data"
        assert [(r["Region"], r["Status"]) for r in described["ReplicationStatus"]] == [("sa-east-1", "InSync")]
        replica = boto3.client("secretsmanager", region_name="sa-east-1").describe_secret(
            SecretId="payments/prod/tenant-secrets/tenant_t1_db_url")
        assert replica["PrimaryRegion"] == "us-east-1"


def test_a_tenant_url_is_relocated_to_this_regions_server() -> None:
    from stackwright.runtime.tenancy import relocate

    stored = "postgresql://tenant_t1:pw@127.0.0.1:5432/tenant_t1"
    assert relocate(stored, "postgresql://admin:x@127.0.0.1:6000/postgres") == \
        "postgresql://tenant_t1:pw@127.0.0.1:6000/tenant_t1"
    assert relocate(stored, "postgresql://admin@db.example:5432/postgres?sslmode=require") == \
        "postgresql://tenant_t1:pw@db.example:5432/tenant_t1?sslmode=require"
