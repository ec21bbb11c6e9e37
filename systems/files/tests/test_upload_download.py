"""Upload and download through the edge: sha256, sniffed type, size limit, Range and conditional requests."""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Iterator

import httpx
import pytest

from .conftest import TEST_MAX_UPLOAD, Files

pytestmark = pytest.mark.integration

PNG_1PX = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082")


def test_raw_upload_records_sha256_and_type_from_bytes(files: Files) -> None:
    _, alice = files.user("alice")
    data = b"plain words, nothing else\n" * 100
    # The client claims a PDF: the bytes say text.
    resp = files.client.post("/files", params={"name": "notes.pdf"}, content=data,
                             headers={**alice, "content-type": "application/pdf"})
    assert resp.status_code == 201, resp.text
    f = resp.json()
    assert f["sha256"] == hashlib.sha256(data).hexdigest()
    assert f["size"] == len(data)
    assert f["content_type"] == "text/plain"
    assert f["role"] == "owner"
    got = files.client.get(f"/files/{f['id']}/content", headers=alice)
    assert got.status_code == 200 and got.content == data
    assert got.headers["etag"] == f'"{f["sha256"]}"'
    assert got.headers["x-content-type-options"] == "nosniff"
    assert got.headers["content-disposition"].startswith("attachment;")


def test_multipart_upload_uses_the_filename_and_sniffs_png(files: Files) -> None:
    _, alice = files.user("alice")
    resp = files.client.post("/files", files={"file": ("dot.txt", PNG_1PX, "text/plain")}, headers=alice)
    assert resp.status_code == 201, resp.text
    f = resp.json()
    assert (f["name"], f["content_type"], f["size"]) == ("dot.txt", "image/png", len(PNG_1PX))
    assert files.client.get(f"/files/{f['id']}/content", headers=alice).content == PNG_1PX


def test_sha256_header_is_verified(files: Files) -> None:
    _, alice = files.user("alice")
    before = files.visible_objects("originals")
    data = b"checked bytes"
    bad = files.client.post("/files", params={"name": "x"}, content=data,
                            headers={**alice, "x-content-sha256": "0" * 64})
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"
    assert files.visible_objects("originals") == before  # the refused object was removed
    good = files.client.post("/files", params={"name": "x"}, content=data,
                             headers={**alice, "x-content-sha256": hashlib.sha256(data).hexdigest()})
    assert good.status_code == 201


def test_size_limit_413_by_header_and_while_streaming(files: Files) -> None:
    sub, alice = files.user("alice")
    before = files.visible_objects("originals")
    # Declared too large: refused before a byte of the body is sent (a raw socket: clients refuse to lie).
    host, port = files.service_url("file").removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall((f"POST /files?name=big HTTP/1.1\r\nHost: x\r\nAuthorization: {alice['authorization']}\r\n"
                      f"Content-Length: {TEST_MAX_UPLOAD + (1 << 20)}\r\n\r\n").encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 413 ")

    def chunks() -> Iterator[bytes]:  # no Content-Length: only counting the bytes can catch it
        block = b"\0" * (1 << 20)
        for _ in range(TEST_MAX_UPLOAD // len(block) + 2):
            yield block

    resp = httpx.post(f"{files.service_url('file')}/files?name=big", headers=alice, content=chunks(), timeout=120)
    assert resp.status_code == 413, resp.text
    assert resp.json()["status"] == 413
    assert files.visible_objects("originals") == before
    assert files.sql("SELECT count(*) AS n FROM files WHERE owner_id = $1", sub)[0]["n"] == 0


def test_range_requests(files: Files) -> None:
    _, alice = files.user("alice")
    data = os.urandom(300_000)
    f = files.upload(alice, data)
    url = f"/files/{f['id']}/content"
    part = files.client.get(url, headers={**alice, "range": "bytes=1000-1999"})
    assert part.status_code == 206
    assert part.content == data[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
    tail = files.client.get(url, headers={**alice, "range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == data[-10:]
    open_end = files.client.get(url, headers={**alice, "range": "bytes=299990-"})
    assert open_end.content == data[299990:]
    beyond = files.client.get(url, headers={**alice, "range": f"bytes={len(data)}-"})
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{len(data)}"
    # If-Range with another ETag: the whole file, not a piece of other bytes.
    stale = files.client.get(url, headers={**alice, "range": "bytes=0-9", "if-range": '"other"'})
    assert stale.status_code == 200 and stale.content == data
    # HEAD straight to the service: the local gateway answers HEAD with Content-Length: 0 (it recounts the
    # body it relays), which is the gateway's to fix, not the file service's.
    head = httpx.head(files.service_url("file") + url, headers=alice)
    assert head.status_code == 200 and head.headers["content-length"] == str(len(data))


def test_conditional_requests(files: Files) -> None:
    _, alice = files.user("alice")
    f = files.upload(alice, b"versioned content")
    url = f"/files/{f['id']}/content"
    first = files.client.get(url, headers=alice)
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    assert files.client.get(url, headers={**alice, "if-none-match": etag}).status_code == 304
    assert files.client.get(url, headers={**alice, "if-none-match": '"nope"'}).status_code == 200
    assert files.client.get(url, headers={**alice, "if-modified-since": modified}).status_code == 304
    assert files.client.get(url, headers={**alice, "if-match": '"nope"'}).status_code == 412
    assert files.client.get(url, headers={**alice, "if-modified-since": "not a date"}).status_code == 200


def test_download_url_is_served_locally(files: Files) -> None:
    _, alice = files.user("alice")
    f = files.upload(alice, b"abc")
    got = files.client.get(f"/files/{f['id']}/url", headers=alice).json()
    # A folder bucket has no presigned URLs: the link is the service's own route (S3 presigning is tested
    # in tests/runtime/test_storage_stream.py against moto).
    assert got == {"url": f"/files/{f['id']}/content", "presigned": False, "expires_s": None}


def test_folders_and_trash(files: Files) -> None:
    _, alice = files.user("alice")
    folder = files.client.post("/folders", json={"name": "Reports"}, headers=alice).json()
    sub = files.client.post("/folders", json={"name": "2026", "parent_id": folder["id"]}, headers=alice).json()
    f = files.upload(alice, b"q1 numbers", name="q1.txt", folder_id=sub["id"])
    listing = files.client.get(f"/folders/{sub['id']}", headers=alice).json()
    assert [x["id"] for x in listing["files"]] == [f["id"]]
    assert files.client.delete(f"/folders/{folder['id']}", headers=alice).status_code == 409  # not empty
    assert files.client.delete(f"/files/{f['id']}", headers=alice).status_code == 204
    assert files.client.get(f"/files/{f['id']}", headers=alice).status_code == 404
    trash = files.client.get("/trash", headers=alice).json()
    assert [x["id"] for x in trash["files"]] == [f["id"]] and trash["retention_days"] == 30
    assert files.client.post(f"/trash/{f['id']}/restore", headers=alice).status_code == 200
    assert files.client.get(f"/files/{f['id']}/content", headers=alice).content == b"q1 numbers"
    # Purge for good: object and row gone.
    assert files.client.delete(f"/files/{f['id']}", headers=alice).status_code == 204
    assert files.client.delete(f"/trash/{f['id']}", headers=alice).status_code == 204
    assert f"files/{f['id']}" not in files.visible_objects("originals")
    assert files.sql("SELECT 1 FROM files WHERE id = $1::uuid", f["id"]) == []
