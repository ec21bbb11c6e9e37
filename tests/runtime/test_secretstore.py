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
