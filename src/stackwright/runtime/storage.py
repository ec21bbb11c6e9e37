"""Object storage with one interface: a local folder (``file://``) or S3 (``s3://bucket``).

Whole objects (``put``/``get``) for small things; streams (``put_stream``/``read_range``) for anything that
must not be held in memory: ``put_stream`` writes chunks as they arrive (a temp file renamed into place
locally, a multipart upload on S3), so a reader sees either no object or the whole object, never part.

Object Lock (a ``bucket`` with ``object_lock``; its URL carries ``?object_lock=<mode>&retain_days=<N>``): every
object is write-once until its retain-until date (written + N days). S3 holds it by the bucket's default
retention and the mode / retain-until date :class:`S3Store` sends with each put; on S3 a put to an existing
key is refused (``If-None-Match: *``) and a delete removes the locked version itself, which S3 refuses.
:class:`LocalStore` keeps each object's retention beside it (a hidden ``.<name>.retention`` file) and
refuses an overwrite or a delete before that date. Both raise :class:`ObjectLocked`. ``put_once`` is the
idempotent write of a write-once object: the same bytes again are a no-op, other bytes are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

#: Bytes per chunk handed out by ``read_range``.
READ_CHUNK = 1 << 20
#: S3 multipart part size: S3's minimum is 5 MiB; 8 MiB keeps a 1 GiB upload at 128 parts (limit 10,000).
PART_SIZE = 8 << 20


#: What ``put_stream`` stores: a byte string, or a list of them to be stored one after the other (the pieces a
#: body arrived in, written together without being joined first).
Chunk = bytes | list[bytes]


class Digest(Protocol):
    """What ``put_stream`` needs of a running hash (``hashlib.sha256()`` and friends)."""

    def update(self, data: bytes, /) -> None: ...


@dataclass(frozen=True)
class ObjectInfo:
    """What ``stat`` knows of a stored object: ``size`` in bytes, ``modified`` as Unix seconds."""

    key: str
    size: int
    modified: float


@dataclass(frozen=True)
class Retention:
    """An Object Lock policy: ``mode`` (``COMPLIANCE`` or ``GOVERNANCE``) for ``days`` after each write."""

    mode: str
    days: int

    def until(self, now: float | None = None) -> float:
        """Retain-until date (Unix seconds) of an object written at ``now`` (default: this moment)."""
        return (time.time() if now is None else now) + self.days * 86400.0


class ObjectLocked(PermissionError):
    """A write or delete refused because the object under ``key`` is locked (or, for ``put_once``, exists
    with other bytes). ``until`` is its retain-until date (Unix seconds) when known."""

    def __init__(self, key: str, reason: str, until: float | None = None) -> None:
        when = "" if until is None else f" until {datetime.fromtimestamp(until, UTC).isoformat(timespec='seconds')}"
        super().__init__(f"object {key!r} is locked{when}: {reason}")
        self.key = key
        self.until = until


class ObjectStore:
    """put/get/list/delete of byte objects by key."""

    #: The store's Object Lock (None: objects can be overwritten and deleted).
    retention: Retention | None = None

    async def put_once(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> bool:
        """Write a write-once object: True when stored now, False when ``key`` already holds exactly ``data``
        (a repeat after a crash); :class:`ObjectLocked` when it holds other bytes."""
        try:
            existing: bytes | None = await self.get(key)
        except KeyError:
            existing = None
        if existing is None:
            try:
                await self._create(key, data, content_type)
                return True
            except FileExistsError:  # another writer won the race: compare with what it wrote
                existing = await self.get(key)
        if existing == data:
            return False
        raise ObjectLocked(key, f"it holds {len(existing)} other bytes; a write-once object is never replaced")

    async def _create(self, key: str, data: bytes, content_type: str) -> None:
        """Store ``data`` only if ``key`` holds nothing (else FileExistsError), with the store's retention."""
        raise NotImplementedError

    async def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        raise NotImplementedError

    async def get(self, key: str) -> bytes:
        raise NotImplementedError

    async def list(self, prefix: str = "") -> list[str]:
        raise NotImplementedError

    async def delete(self, key: str) -> None:
        raise NotImplementedError

    async def put_stream(self, key: str, chunks: AsyncIterable[Chunk],
                         content_type: str = "application/octet-stream", digest: Digest | None = None) -> int:
        """Store the bytes of ``chunks`` (each a byte string or a list of them, see :data:`Chunk`) under
        ``key`` without holding them all; returns the size in bytes.

        Atomic: if ``chunks`` raises (client gone, body too large) or the process dies, no object (and no
        part of one) is visible under ``key``; an existing object under ``key`` stays as it was.
        ``digest`` (a ``hashlib`` object) is updated with every byte, in order, by the same worker-thread
        call that writes them: one thread hop per chunk for the hash and the write together, rather than one
        each (a hashing caller's hand-offs and their GIL contention were most of an upload's futex calls).
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


def _pieces(chunk: Chunk) -> list[bytes]:
    return [chunk] if isinstance(chunk, bytes | bytearray | memoryview) else chunk


def _chunk_size(chunk: Chunk) -> int:
    return sum(map(len, _pieces(chunk)))


def _write_all(fd: int, data: Chunk, offset: int, digest: Digest | None = None) -> None:
    """Write all of ``data`` (which starts at byte ``offset`` of the file) to ``fd``, after adding it to
    ``digest`` when one is given. A list of pieces goes in one ``writev``: no joined copy of them is made.

    Each time the file crosses a :data:`WRITEBACK_EVERY` boundary, the kernel is asked to start writing the
    finished stretch to disk now (``POSIX_FADV_DONTNEED`` starts writeback without waiting for it, and drops
    the pages once clean): the closing fsync then waits for the last few MiB, not for the whole file, and a
    large upload does not fill the page cache.
    """
    pieces = _pieces(data)
    if digest is not None:
        for piece in pieces:
            digest.update(piece)  # hashlib releases the GIL for more than 2 KiB
    size = _chunk_size(pieces)
    # writev takes at most IOV_MAX (1024 on Linux) buffers; many tiny pieces are cheaper joined anyway.
    written = os.writev(fd, pieces) if len(pieces) <= 64 else 0
    if written < size:  # writev or write may write less than asked: the rest, piece by piece
        view = memoryview(b"".join(pieces))[written:]
        while view:
            view = view[os.write(fd, view):]
    end = offset + size
    if end // WRITEBACK_EVERY > offset // WRITEBACK_EVERY and hasattr(os, "posix_fadvise"):
        # From one stretch back: the previous stretch, clean by now, is dropped from the cache as well.
        start = max(0, offset // WRITEBACK_EVERY - 1) * WRITEBACK_EVERY
        os.posix_fadvise(fd, start, end // WRITEBACK_EVERY * WRITEBACK_EVERY - start, os.POSIX_FADV_DONTNEED)


def _safe_key(key: str) -> str:
    if not key or key.startswith("/") or ".." in key.split("/"):
        raise ValueError(f"invalid object key: {key!r}")
    return key


class LocalStore(ObjectStore):
    """Objects as files under a folder; writes are atomic (temp file + rename). With ``retention`` each
    object is locked until its retain-until date, kept in a hidden ``.<name>.retention`` file beside it."""

    def __init__(self, root: Path, retention: Retention | None = None) -> None:
        self.root = root
        self.retention = retention
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / _safe_key(key)

    @staticmethod
    def _retention_path(path: Path) -> Path:
        return path.with_name(f".{path.name}.retention")

    def locked_until(self, key: str) -> float | None:
        """The retain-until date (Unix seconds) of ``key`` while it is in the future, else None."""
        try:
            until = float(json.loads(self._retention_path(self._path(key)).read_text())["retain_until"])
        except FileNotFoundError:
            return None
        return until if until > time.time() else None

    def _refuse_if_locked(self, key: str, action: str) -> None:
        until = self.locked_until(key)
        if until is not None and self._path(key).exists():
            raise ObjectLocked(key, f"{action} refused (Object Lock)", until)

    def _lock(self, path: Path) -> None:
        """Record the retention of the object just written at ``path`` (before it gets its name, so an object
        is never visible unlocked)."""
        if self.retention is None:
            return
        until = self.retention.until()
        self._retention_path(path).write_text(json.dumps({"mode": self.retention.mode, "retain_until": until}))

    async def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._refuse_if_locked(key, "overwrite")
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        self._lock(path)
        tmp.replace(path)

    async def _create(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            if self.retention is not None and not path.exists():
                self._lock(path)
            # link() fails if the name exists: of two writers of one key exactly one creates it.
            os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    async def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise KeyError(key) from None

    async def list(self, prefix: str = "") -> list[str]:
        # Walk only the folder the prefix's complete "/" parts name, not the whole store (a per-tenant prefix in a
        # store of 100 tenants' objects was a walk of all of them); the prefix filter below decides as before.
        base = self.root.joinpath(*(part for part in prefix.split("/")[:-1] if part not in ("", ".", "..")))
        keys = [str(p.relative_to(self.root)) for p in base.rglob("*") if p.is_file()
                and not p.name.startswith(".")]
        return sorted(k for k in keys if k.startswith(prefix))

    async def delete(self, key: str) -> None:
        self._refuse_if_locked(key, "delete")
        path = self._path(key)
        path.unlink(missing_ok=True)
        self._retention_path(path).unlink(missing_ok=True)

    async def put_stream(self, key: str, chunks: AsyncIterable[Chunk],
                         content_type: str = "application/octet-stream", digest: Digest | None = None) -> int:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._refuse_if_locked(key, "overwrite")
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
                length = _chunk_size(chunk)
                if length < INLINE_WRITE:
                    _write_all(fd, chunk, size, digest)  # a small body: a thread hop would cost more
                    writing = None
                else:
                    writing = loop.run_in_executor(None, _write_all, fd, chunk, size, digest)
                size += length
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
        self._lock(path)
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
            fd = os.open(self._path(key), os.O_RDONLY)
        except FileNotFoundError:
            raise KeyError(key) from None
        loop = asyncio.get_running_loop()
        stop = end if end is not None else os.fstat(fd).st_size
        offset = start

        def read_next() -> tuple[asyncio.Future[bytes], int] | None:
            nonlocal offset
            if offset >= stop:
                return None
            want = min(READ_CHUNK, stop - offset)
            offset += want
            return loop.run_in_executor(None, os.pread, fd, want, offset - want), want

        # One read ahead: the next chunk comes off the disk (or the page cache) in a thread while the caller
        # sends this one, so the socket does not run dry between chunks (the read and the send taking turns
        # kept a download at 0.4x of a bare ASGI source sending from memory). Memory: two chunks.
        pending = read_next()
        try:
            while pending is not None:
                reading, asked = pending
                chunk = await reading
                # A short read is the end of the file (it is shorter than ``end``, or shrank meanwhile).
                pending = read_next() if len(chunk) == asked else None
                if chunk:
                    yield chunk
        finally:
            if pending is not None:
                # The read ahead may still be running in a thread: wait for it before closing the descriptor.
                with contextlib.suppress(BaseException):
                    await asyncio.shield(pending[0])
            os.close(fd)


def _error_code(exc: BaseException) -> str:
    response: Any = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


class S3Store(ObjectStore):
    """Objects in an S3 bucket (boto3, run in a thread so the event loop never blocks). With ``retention``
    (a bucket with Object Lock) each put carries the lock mode and retain-until date and is refused when the
    key exists (``If-None-Match: *``), and a delete removes the current version itself, which S3 refuses
    while it is locked; both raise :class:`ObjectLocked`."""

    def __init__(self, bucket: str, *, region: str | None = None, endpoint_url: str | None = None,
                 retention: Retention | None = None) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.retention = retention
        # SigV4 for presigned URLs too (boto3 may still presign with SigV2, which newer regions refuse).
        self.client = boto3.client("s3", region_name=region, endpoint_url=endpoint_url,
                                   config=Config(signature_version="s3v4"))

    def _lock_args(self) -> dict[str, Any]:
        """Object Lock arguments of a put: mode and retain-until date, and create-only (a locked key is never
        given a new current version)."""
        if self.retention is None:
            return {}
        until = datetime.fromtimestamp(self.retention.until(), UTC)
        return {"ObjectLockMode": self.retention.mode, "ObjectLockRetainUntilDate": until, "IfNoneMatch": "*"}

    async def _put_object(self, key: str, data: bytes, content_type: str, create_only: bool) -> None:
        args = self._lock_args()
        if create_only:
            args["IfNoneMatch"] = "*"
        try:
            await asyncio.to_thread(self.client.put_object, Bucket=self.bucket, Key=_safe_key(key), Body=data,
                                    ContentType=content_type, **args)
        except Exception as exc:
            if _error_code(exc) not in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                raise
            if create_only and self.retention is None:
                raise FileExistsError(key) from None
            raise ObjectLocked(key, "the key exists and the bucket has Object Lock: overwrite refused") from None

    async def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        await self._put_object(key, data, content_type, create_only=False)

    async def _create(self, key: str, data: bytes, content_type: str) -> None:
        try:
            await self._put_object(key, data, content_type, create_only=True)
        except ObjectLocked:
            raise FileExistsError(key) from None

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
        key = _safe_key(key)
        if self.retention is None:
            await asyncio.to_thread(self.client.delete_object, Bucket=self.bucket, Key=key)
            return
        # A plain delete would only add a delete marker (allowed even under a lock) and hide the object:
        # delete the locked version itself, which S3 refuses until its retain-until date.
        try:
            head = await asyncio.to_thread(self.client.head_object, Bucket=self.bucket, Key=key)
        except Exception as exc:
            if _error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return
            raise
        try:
            await asyncio.to_thread(self.client.delete_object, Bucket=self.bucket, Key=key,
                                    VersionId=head["VersionId"])
        except Exception as exc:
            if _error_code(exc) != "AccessDenied":
                raise
            until = head.get("ObjectLockRetainUntilDate")
            raise ObjectLocked(key, "delete refused by S3 Object Lock",
                               until.timestamp() if until else None) from None

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

    async def put_stream(self, key: str, chunks: AsyncIterable[Chunk],
                         content_type: str = "application/octet-stream", digest: Digest | None = None) -> int:
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

            def hash_and_upload() -> Any:  # parts go one at a time, in order: the digest sees the bytes in order
                if digest is not None:
                    digest.update(data)
                return self.client.upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number,
                                               Body=data)

            resp = await asyncio.to_thread(hash_and_upload)
            parts.append({"PartNumber": number, "ETag": resp["ETag"]})

        try:
            async for chunk in chunks:
                for piece in _pieces(chunk):
                    buffer += piece
                    size += len(piece)
                # At most one part (plus one chunk) in memory, whatever the object's size.
                if len(buffer) >= PART_SIZE:
                    await send_part(bytes(buffer[:PART_SIZE]))
                    del buffer[:PART_SIZE]
            if upload_id is None:  # small: one PUT, no multipart upload to clean up
                if digest is not None:
                    digest.update(buffer)
                await self.put(key, bytes(buffer), content_type)
                return size
            if self.retention is not None:
                raise ObjectLocked(key, "multipart uploads to an Object Lock store are not supported (the "
                                        "objects of a write-once archive are small: use put)")
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
        from botocore.exceptions import ClientError

        if end is not None and end <= start:
            return
        ask = f"bytes={start}-" + ("" if end is None else str(end - 1))
        try:
            resp = await asyncio.to_thread(self.client.get_object, Bucket=self.bucket, Key=_safe_key(key),
                                           Range=ask)
        except self.client.exceptions.NoSuchKey:
            raise KeyError(key) from None
        except ClientError as exc:
            # S3 refuses a Range that starts at or past the end; the contract (and LocalStore) says: no bytes.
            if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                return
            raise
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
    """``file:///path`` -> LocalStore, ``s3://bucket?region=..`` -> S3Store; either with
    ``object_lock=<mode>&retain_days=<N>`` in the query (a bucket with Object Lock) gets that retention."""
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    retention = Retention(query["object_lock"], int(query["retain_days"])) if "object_lock" in query else None
    if parts.scheme == "file":
        return LocalStore(Path(parts.path), retention)
    if parts.scheme == "s3":
        return S3Store(parts.netloc, region=query.get("region"), endpoint_url=query.get("endpoint_url"),
                       retention=retention)
    raise ValueError(f"unsupported object store URL {url!r} (use file:// or s3://)")
