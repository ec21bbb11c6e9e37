"""Object storage with one interface: a local folder (``file://``) or S3 (``s3://bucket``).

Whole objects (``put``/``get``) for small things; streams (``put_stream``/``read_range``) for anything that
must not be held in memory: ``put_stream`` writes chunks as they arrive (a temp file renamed into place
locally, a multipart upload on S3), so a reader sees either no object or the whole object, never part.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

#: Bytes per chunk handed out by ``read_range``.
READ_CHUNK = 1 << 20
#: S3 multipart part size: S3's minimum is 5 MiB; 8 MiB keeps a 1 GiB upload at 128 parts (limit 10,000).
PART_SIZE = 8 << 20


@dataclass(frozen=True)
class ObjectInfo:
    """What ``stat`` knows of a stored object: ``size`` in bytes, ``modified`` as Unix seconds."""

    key: str
    size: int
    modified: float


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

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes],
                         content_type: str = "application/octet-stream") -> int:
        """Store the bytes of ``chunks`` under ``key`` without holding them all; returns the size in bytes.

        Atomic: if ``chunks`` raises (client gone, body too large) or the process dies, no object (and no
        part of one) is visible under ``key``; an existing object under ``key`` stays as it was.
        """
        raise NotImplementedError

    async def stat(self, key: str) -> ObjectInfo:
        """Size and modification time of ``key``; KeyError if there is none."""
        raise NotImplementedError

    def read_range(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Bytes ``start`` to ``end`` (exclusive; None: to the end) of ``key`` in chunks of at most
        :data:`READ_CHUNK`. KeyError (on first iteration) if there is no such object."""
        raise NotImplementedError

    async def presigned_get(self, key: str, *, expires_s: int = 300, filename: str | None = None) -> str | None:
        """A URL that downloads ``key`` without credentials for ``expires_s`` seconds, or None when the store
        has no such thing (a local folder): the caller then serves the bytes itself."""
        return None

    async def sweep_unfinished(self, older_than_s: float) -> int:
        """Remove what ``put_stream`` calls cut off by a killed process left behind (never visible to readers):
        temp files locally, incomplete multipart uploads on S3, last written (started on S3) more than
        ``older_than_s`` seconds ago, so a write still in progress is left alone. Returns how many went."""
        raise NotImplementedError


#: Chunks smaller than this are written on the event loop (a thread hop costs more than the write).
INLINE_WRITE = 64 << 10
#: Dirty bytes between writeback kicks in ``LocalStore.put_stream``.
WRITEBACK_EVERY = 8 << 20


def _write_all(fd: int, data: bytes, offset: int) -> None:
    """Write all of ``data`` (which starts at byte ``offset`` of the file) to ``fd``.

    Each time the file crosses a :data:`WRITEBACK_EVERY` boundary, the kernel is asked to start writing the
    finished stretch to disk now (``POSIX_FADV_DONTNEED`` starts writeback without waiting for it, and drops
    the pages once clean): the closing fsync then waits for the last few MiB, not for the whole file, and a
    large upload does not fill the page cache.
    """
    view = memoryview(data)
    while view:  # os.write may write less than asked
        view = view[os.write(fd, view):]
    end = offset + len(data)
    if end // WRITEBACK_EVERY > offset // WRITEBACK_EVERY and hasattr(os, "posix_fadvise"):
        # From one stretch back: the previous stretch, clean by now, is dropped from the cache as well.
        start = max(0, offset // WRITEBACK_EVERY - 1) * WRITEBACK_EVERY
        os.posix_fadvise(fd, start, end // WRITEBACK_EVERY * WRITEBACK_EVERY - start, os.POSIX_FADV_DONTNEED)


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

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes],
                         content_type: str = "application/octet-stream") -> int:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # A unique temp name per write: two concurrent writers of one key never share a temp file. Dot files
        # are not listed, so a temp left by a killed process is invisible (and removed by no one: see list).
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{id(chunks):x}.tmp")
        size = 0
        loop = asyncio.get_running_loop()
        writing: asyncio.Future[None] | None = None
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            async for chunk in chunks:
                # One write in flight in a thread while the next chunk arrives (os.write releases the GIL):
                # receiving and writing overlap, and memory holds at most two chunks.
                if writing is not None:
                    await writing
                if len(chunk) < INLINE_WRITE:
                    _write_all(fd, chunk, size)  # a small body: a thread hop would cost more than the write
                    writing = None
                else:
                    writing = loop.run_in_executor(None, _write_all, fd, chunk, size)
                size += len(chunk)
            if writing is not None:
                await writing
            # On disk before it gets its name: after a crash the name never points at missing bytes.
            await asyncio.to_thread(os.fsync, fd)
        except BaseException:
            if writing is not None:
                # The thread may still be writing to fd: wait for it before closing (never close under it).
                with contextlib.suppress(BaseException):
                    await asyncio.shield(writing)
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        tmp.replace(path)
        return size

    async def sweep_unfinished(self, older_than_s: float) -> int:
        before = time.time() - older_than_s

        def sweep() -> int:
            gone = 0
            for tmp in self.root.rglob(".*.tmp"):  # the temp names of put and put_stream
                with contextlib.suppress(FileNotFoundError):  # finished or swept meanwhile
                    if tmp.is_file() and tmp.stat().st_mtime < before:
                        tmp.unlink()
                        gone += 1
            return gone

        return await asyncio.to_thread(sweep)

    async def stat(self, key: str) -> ObjectInfo:
        try:
            st = self._path(key).stat()
        except FileNotFoundError:
            raise KeyError(key) from None
        return ObjectInfo(key=key, size=st.st_size, modified=st.st_mtime)

    async def read_range(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        try:
            f = self._path(key).open("rb")
        except FileNotFoundError:
            raise KeyError(key) from None
        with f:
            f.seek(start)
            remaining = None if end is None else max(0, end - start)
            while remaining is None or remaining > 0:
                want = READ_CHUNK if remaining is None else min(READ_CHUNK, remaining)
                chunk = await asyncio.to_thread(f.read, want)
                if not chunk:
                    return
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk


class S3Store(ObjectStore):
    """Objects in an S3 bucket (boto3, run in a thread so the event loop never blocks)."""

    def __init__(self, bucket: str, *, region: str | None = None, endpoint_url: str | None = None) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        # SigV4 for presigned URLs too (boto3 may still presign with SigV2, which newer regions refuse).
        self.client = boto3.client("s3", region_name=region, endpoint_url=endpoint_url,
                                   config=Config(signature_version="s3v4"))

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

    async def sweep_unfinished(self, older_than_s: float) -> int:
        before = time.time() - older_than_s

        def sweep() -> int:
            gone = 0
            for page in self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket):
                for up in page.get("Uploads", []):
                    if up["Initiated"].timestamp() < before:
                        self.client.abort_multipart_upload(Bucket=self.bucket, Key=up["Key"], UploadId=up["UploadId"])
                        gone += 1
            return gone

        return await asyncio.to_thread(sweep)

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes],
                         content_type: str = "application/octet-stream") -> int:
        key = _safe_key(key)
        buffer = bytearray()
        size = 0
        upload_id: str | None = None
        parts: list[dict[str, object]] = []

        async def send_part(data: bytes) -> None:
            nonlocal upload_id
            if upload_id is None:
                created = await asyncio.to_thread(self.client.create_multipart_upload, Bucket=self.bucket, Key=key,
                                                  ContentType=content_type)
                upload_id = created["UploadId"]
            number = len(parts) + 1
            resp = await asyncio.to_thread(self.client.upload_part, Bucket=self.bucket, Key=key, UploadId=upload_id,
                                           PartNumber=number, Body=data)
            parts.append({"PartNumber": number, "ETag": resp["ETag"]})

        try:
            async for chunk in chunks:
                buffer += chunk
                size += len(chunk)
                # At most one part (plus one chunk) in memory, whatever the object's size.
                if len(buffer) >= PART_SIZE:
                    await send_part(bytes(buffer[:PART_SIZE]))
                    del buffer[:PART_SIZE]
            if upload_id is None:  # small: one PUT, no multipart upload to clean up
                await self.put(key, bytes(buffer), content_type)
                return size
            if buffer:
                await send_part(bytes(buffer))
            # Only now does the object exist: an aborted or unfinished upload is never visible under the key.
            await asyncio.to_thread(self.client.complete_multipart_upload, Bucket=self.bucket, Key=key,
                                    UploadId=upload_id, MultipartUpload={"Parts": parts})
            return size
        except BaseException:
            if upload_id is not None:
                # The parts are billed until aborted (a bucket lifecycle rule should also abort stale uploads).
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self.client.abort_multipart_upload, Bucket=self.bucket, Key=key,
                                            UploadId=upload_id)
            raise

    async def stat(self, key: str) -> ObjectInfo:
        from botocore.exceptions import ClientError

        try:
            head = await asyncio.to_thread(self.client.head_object, Bucket=self.bucket, Key=_safe_key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise KeyError(key) from None
            raise
        return ObjectInfo(key=key, size=int(head["ContentLength"]), modified=head["LastModified"].timestamp())

    async def read_range(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        if end is not None and end <= start:
            return
        ask = f"bytes={start}-" + ("" if end is None else str(end - 1))
        try:
            resp = await asyncio.to_thread(self.client.get_object, Bucket=self.bucket, Key=_safe_key(key),
                                           Range=ask)
        except self.client.exceptions.NoSuchKey:
            raise KeyError(key) from None
        body = resp["Body"]
        try:
            while chunk := await asyncio.to_thread(body.read, READ_CHUNK):
                yield chunk
        finally:
            body.close()

    async def presigned_get(self, key: str, *, expires_s: int = 300, filename: str | None = None) -> str | None:
        params: dict[str, str] = {"Bucket": self.bucket, "Key": _safe_key(key)}
        if filename is not None:
            from urllib.parse import quote

            params["ResponseContentDisposition"] = f"attachment; filename*=UTF-8''{quote(filename, safe='')}"
        return str(await asyncio.to_thread(self.client.generate_presigned_url, "get_object", Params=params,
                                           ExpiresIn=expires_s))


def store_from_url(url: str) -> ObjectStore:
    """``file:///path`` -> LocalStore, ``s3://bucket?region=..`` -> S3Store."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        return LocalStore(Path(parts.path))
    if parts.scheme == "s3":
        query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
        return S3Store(parts.netloc, region=query.get("region"), endpoint_url=query.get("endpoint_url"))
    raise ValueError(f"unsupported object store URL {url!r} (use file:// or s3://)")
