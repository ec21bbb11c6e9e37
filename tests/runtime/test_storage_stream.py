"""Streaming put/get of the object store: a local folder and S3 (moto), the same contract for both."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from stackwright.runtime.storage import PART_SIZE, LocalStore, ObjectStore, S3Store


async def chunks_of(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


async def failing_after(data: bytes, at: int) -> AsyncIterator[bytes]:
    yield data[:at]
    raise ConnectionResetError("client went away")


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "local":
        yield LocalStore(tmp_path / "bucket")
        return
    from moto import mock_aws

    with mock_aws():
        s3 = S3Store("stream-test", region="us-east-1")
        s3.client.create_bucket(Bucket="stream-test")
        yield s3


async def read_all(store: ObjectStore, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([c async for c in store.read_range(key, start, end)])


async def test_stream_round_trip_multipart_sized(store: ObjectStore) -> None:
    # Larger than one S3 part and not a multiple of it: several parts plus a short last one.
    data = os.urandom(PART_SIZE * 2 + 12345)
    size = await store.put_stream("a/big.bin", chunks_of(data, 1 << 20))
    assert size == len(data)
    assert (await store.stat("a/big.bin")).size == len(data)
    assert hashlib.sha256(await read_all(store, "a/big.bin")).digest() == hashlib.sha256(data).digest()
    assert await read_all(store, "a/big.bin", 100, 200) == data[100:200]
    assert await read_all(store, "a/big.bin", len(data) - 5) == data[-5:]
    assert await store.list("a/") == ["a/big.bin"]


async def test_put_stream_digest_sees_every_byte_in_order(store: ObjectStore) -> None:
    # Chunks below and above the inline-write size, several S3 parts: the digest the store keeps is the data's.
    data = os.urandom(PART_SIZE + (3 << 20) + 777)
    for piece, key in ((1 << 20, "one-mib"), (1000, "small-pieces")):
        digest = hashlib.sha256()
        await store.put_stream(key, chunks_of(data[: (3 << 20) if piece == 1000 else None], piece), digest=digest)
        want = data[: (3 << 20) if piece == 1000 else None]
        assert digest.hexdigest() == hashlib.sha256(want).hexdigest()
    tiny = hashlib.sha256()
    await store.put_stream("tiny", chunks_of(b"abc", 1), digest=tiny)
    assert tiny.hexdigest() == hashlib.sha256(b"abc").hexdigest()


async def test_put_stream_takes_lists_of_pieces(store: ObjectStore) -> None:
    # A chunk may be the pieces a body arrived in: written one after the other (writev), never reordered;
    # 200 one-byte pieces (more than one writev takes at once here) and pieces of 256 KiB.
    data = os.urandom(PART_SIZE + (1 << 20) + 200)

    async def lists() -> AsyncIterator[list[bytes]]:
        yield [data[i:i + 1] for i in range(200)]
        for at in range(200, len(data), 1 << 20):
            yield [data[j:j + (256 << 10)] for j in range(at, min(at + (1 << 20), len(data)), 256 << 10)]

    digest = hashlib.sha256()
    assert await store.put_stream("pieces", lists(), digest=digest) == len(data)
    assert await read_all(store, "pieces") == data
    assert digest.digest() == hashlib.sha256(data).digest()


async def test_read_range_stopped_early_and_past_the_end(store: ObjectStore) -> None:
    data = os.urandom((3 << 20) + 5)
    await store.put_stream("r", chunks_of(data, 1 << 20))
    stream = store.read_range("r")
    assert await anext(stream) == data[: 1 << 20]  # the next chunk is being read ahead meanwhile
    await stream.aclose()  # leaves while that read runs: waits for it, closes the file
    assert await read_all(store, "r", 1 << 20, 99 << 20) == data[1 << 20:]  # an end past the object's
    assert await read_all(store, "r", 2 << 20, 2 << 20) == b""
    # A start at or past the end is empty on every store (S3 answers such a Range with InvalidRange).
    assert await read_all(store, "r", len(data)) == b""
    assert await read_all(store, "r", len(data) + 7, len(data) + 99) == b""
    with pytest.raises(KeyError):
        await read_all(store, "missing")


async def test_small_stream_is_one_object(store: ObjectStore) -> None:
    assert await store.put_stream("small", chunks_of(b"hello world", 3)) == 11
    assert await store.get("small") == b"hello world"
    assert await read_all(store, "small", 6) == b"world"


async def test_failed_stream_leaves_nothing_visible(store: ObjectStore) -> None:
    data = os.urandom(PART_SIZE + 10)
    with pytest.raises(ConnectionResetError):
        await store.put_stream("gone", failing_after(data, PART_SIZE + 5))
    assert await store.list() == []
    with pytest.raises(KeyError):
        await store.stat("gone")
    if isinstance(store, S3Store):  # the multipart upload was aborted, not left billed
        assert store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []
    if isinstance(store, LocalStore):  # no temp file left behind either
        assert [p for p in store.root.rglob("*") if p.is_file()] == []


async def test_failed_overwrite_keeps_the_old_object(store: ObjectStore) -> None:
    await store.put_stream("k", chunks_of(b"old"))
    with pytest.raises(ConnectionResetError):
        await store.put_stream("k", failing_after(b"new bytes", 3))
    assert await store.get("k") == b"old"


async def test_missing_object(store: ObjectStore) -> None:
    with pytest.raises(KeyError):
        await store.stat("nope")
    with pytest.raises(KeyError):
        await read_all(store, "nope")


async def test_presigned_get_only_on_s3(store: ObjectStore) -> None:
    await store.put_stream("doc.txt", chunks_of(b"x"))
    url = await store.presigned_get("doc.txt", filename="résumé.txt")
    if isinstance(store, S3Store):
        assert url is not None and "stream-test" in url and "X-Amz-Signature" in url
        assert "response-content-disposition" in url
    else:
        assert url is None


async def test_sweep_unfinished_removes_only_old_leftovers(store: ObjectStore, tmp_path: Path) -> None:
    """What a killed writer left (a temp file, an open multipart upload) goes once old; a fresh one stays."""
    await store.put_stream("kept", chunks_of(b"whole"))
    if isinstance(store, LocalStore):
        old = store.root / "files" / ".dead.1234.abcd.tmp"
        old.parent.mkdir(parents=True, exist_ok=True)
        old.write_bytes(b"cut off")
        os.utime(old, (1_000_000_000, 1_000_000_000))
        (store.root / ".fresh.1234.ef01.tmp").write_bytes(b"still being written")
        assert await store.sweep_unfinished(3600) == 1
        assert not old.exists() and (store.root / ".fresh.1234.ef01.tmp").exists()
    else:
        assert isinstance(store, S3Store)
        store.client.create_multipart_upload(Bucket=store.bucket, Key="files/dead")
        # moto reports every multipart upload as initiated on 2010-11-10, so only "old" can be shown here.
        assert await store.sweep_unfinished(3600) == 1
        assert store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []
    assert await store.list() == ["kept"]
