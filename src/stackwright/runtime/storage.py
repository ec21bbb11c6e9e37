"""Object storage with one interface: a local folder (``file://``) or S3 (``s3://bucket``)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from urllib.parse import urlsplit


class ObjectStore:
    """put/get/list/delete of byte objects by key."""

    async def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        raise NotImplementedError

    async def get(self, key: str) -> bytes:
        raise NotImplementedError

    async def list(self, prefix: str = "") -> list[str]:
        raise NotImplementedError

    async def delete(self, key: str) -> None:
        raise NotImplementedError


def _safe_key(key: str) -> str:
    if not key or key.startswith("/") or ".." in key.split("/"):
        raise ValueError(f"invalid object key: {key!r}")
    return key


class LocalStore(ObjectStore):
    """Objects as files under a folder; writes are atomic (temp file + rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / _safe_key(key)

    async def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)

    async def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise KeyError(key) from None

    async def list(self, prefix: str = "") -> list[str]:
        keys = [str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file()
                and not p.name.startswith(".")]
        return sorted(k for k in keys if k.startswith(prefix))

    async def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


class S3Store(ObjectStore):
    """Objects in an S3 bucket (boto3, run in a thread so the event loop never blocks)."""

    def __init__(self, bucket: str, *, region: str | None = None, endpoint_url: str | None = None) -> None:
        import boto3

        self.bucket = bucket
        self.client = boto3.client("s3", region_name=region, endpoint_url=endpoint_url)

    async def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        await asyncio.to_thread(self.client.put_object, Bucket=self.bucket, Key=_safe_key(key), Body=data,
                                ContentType=content_type)

    async def get(self, key: str) -> bytes:
        try:
            resp = await asyncio.to_thread(self.client.get_object, Bucket=self.bucket, Key=_safe_key(key))
        except self.client.exceptions.NoSuchKey:
            raise KeyError(key) from None
        return await asyncio.to_thread(resp["Body"].read)

    async def list(self, prefix: str = "") -> list[str]:
        keys: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")

        def collect() -> None:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                keys.extend(obj["Key"] for obj in page.get("Contents", []))

        await asyncio.to_thread(collect)
        return sorted(keys)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.client.delete_object, Bucket=self.bucket, Key=_safe_key(key))


def store_from_url(url: str) -> ObjectStore:
    """``file:///path`` -> LocalStore, ``s3://bucket?region=..`` -> S3Store."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        return LocalStore(Path(parts.path))
    if parts.scheme == "s3":
        query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
        return S3Store(parts.netloc, region=query.get("region"), endpoint_url=query.get("endpoint_url"))
    raise ValueError(f"unsupported object store URL {url!r} (use file:// or s3://)")
