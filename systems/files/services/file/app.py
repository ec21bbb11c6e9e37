"""File service: streaming upload and download, folders and the trash.

Upload (``POST /files``, raw body or ``multipart/form-data`` with one ``file`` part) streams the bytes to the
originals bucket as they arrive (a multipart upload on S3): the process holds a couple of 1 MiB batches
(plus one S3 part) whatever the size; receiving, hashing and writing a batch overlap (see UploadBody). The
sha256 is computed on the way (a client-sent ``X-Content-SHA256`` is verified), the size is capped by
``MAX_UPLOAD_BYTES`` (413 past it) and the content type comes from the bytes (magic numbers; UTF-8 text
without NUL is text/plain), never from the client. The file's row is inserted only
once its object is complete, so a killed upload leaves nothing visible and the client simply retries. The
row's follow-up messages (variant job, index task, upload-complete mail) are written to the outbox table in
the row's transaction and relayed to their queues after the commit (``stackwright.runtime.outbox``): a kill
after the commit delays them until the restarted process relays them, and loses none.

Every route asks Postgres for the caller's role on the file or folder (``file_rank``/``folder_rank`` of
the migrations: ownership, grants to the user or the user's groups, inherited from folders). A file or
folder the caller cannot read answers 404 whether it exists or not; one they can read but not change 403.
Names are metadata only (objects are keyed by id), NFC-normalized, and refuse NUL, control characters,
slashes and ``.``/``..``.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import hashlib
import logging
import re
import unicodedata
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Receive, Scope, Send

from stackwright.runtime import Principal, Problem, Service, Settings, problem_responses
from stackwright.runtime.limits import BodyLimitMiddleware
from stackwright.runtime.outbox import Outbox

log = logging.getLogger("files.file")

settings = Settings.from_env()
MAX_UPLOAD_BYTES = int(settings.get("MAX_UPLOAD_BYTES", str(2 << 30)) or 2 << 30)
# Multipart framing (boundaries, part headers) on top of the file itself; the file's own bytes are counted
# exactly while streaming and answer 413 past MAX_UPLOAD_BYTES.
MULTIPART_SLACK = 64 * 1024
JSON_MAX_BODY = 64 * 1024
TRASH_RETENTION_DAYS = float(settings.get("TRASH_RETENTION_DAYS", "30") or 30)
TRASH_SWEEP_S = float(settings.get("TRASH_SWEEP_S", "60") or 60)
#: Every this many seconds (and at start-up) the leftovers of killed uploads are swept: temp files and unfinished
#: multipart uploads, and originals objects without a row, once older than LEFTOVER_AGE_S.
UPLOAD_SWEEP_S = float(settings.get("UPLOAD_SWEEP_S", "3600") or 3600)
# A day: an upload still in progress is never that old (a local temp file's age counts from its last write;
# an S3 multipart upload's from its start, and a 2 GiB upload at 1 MB/s takes 35 minutes).
LEFTOVER_AGE_S = float(settings.get("LEFTOVER_AGE_S", "86400") or 86400)
PRESIGN = (settings.get("PRESIGN_DOWNLOADS", "") or "").lower() in ("1", "true", "yes")
SNIFF_BYTES = 8192
# Upload bytes travel in batches of about this size (see UploadBody).
BATCH = 1 << 20
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/webp", "image/gif", "image/tiff", "image/bmp"})

svc = Service(settings=settings, title="file", max_body_bytes=MAX_UPLOAD_BYTES + MULTIPART_SLACK)
db = svc.postgres("db")
originals = svc.store("originals")
variants = svc.store("variants")
variant_jobs = svc.queue("variant-jobs")
notifications = svc.queue("notifications")
tasks = svc.queue("tasks")
outbox = Outbox(db, {"variant-jobs": variant_jobs, "notifications": notifications, "tasks": tasks})
svc.background(outbox.run)
who_dep = svc.principal()
Caller = Annotated[Principal, Depends(who_dep)]


class SmallBodies:
    """Only the upload route may send a large body: every other route is JSON and gets JSON_MAX_BODY."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.limited = BodyLimitMiddleware(app, max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not (scope["method"] == "POST" and scope["path"].rstrip("/") == "/files"):
            await self.limited(scope, receive, send)
        else:
            await self.app(scope, receive, send)


svc.app.add_middleware(SmallBodies, max_bytes=JSON_MAX_BODY)
app = svc.app

NOT_FOUND = problem_responses(404)

# ------------------------------------------------------------------ names, tags


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def clean_name(raw: str) -> str:
    """A file or folder name as stored: NFC, trimmed; Problem 422 for one that could be a path or hide bytes."""
    name = unicodedata.normalize("NFC", raw).strip()
    if not name or len(name) > 255:
        raise Problem(422, "name must be 1-255 characters")
    if _CONTROL.search(name) or "/" in name or "\\" in name or name in (".", ".."):
        raise Problem(422, "name may not contain control characters, NUL or slashes, nor be . or ..")
    return name


def clean_tags(raw: list[str]) -> list[str]:
    tags: list[str] = []
    for t in raw:
        tag = unicodedata.normalize("NFC", t).strip().lower()
        if not tag:
            continue
        if len(tag) > 64 or _CONTROL.search(tag):
            raise Problem(422, "a tag is 1-64 characters without control characters")
        if tag not in tags:
            tags.append(tag)
    if len(tags) > 20:
        raise Problem(422, "at most 20 tags")
    return tags


def sniff(head: bytes) -> str:
    """Content type from the first bytes: magic numbers, else UTF-8 text without NUL is text/plain."""
    import filetype

    kind = filetype.guess(head) if head else None
    if kind is not None:
        return str(kind.mime)
    if head and b"\x00" not in head:
        try:
            head.decode("utf-8")
            return "text/plain"
        except UnicodeDecodeError as exc:
            # The sniffed window may end inside a multi-byte character: text if only the tail is cut.
            if exc.start >= len(head) - 3 and exc.reason == "unexpected end of data":
                return "text/plain"
    return "application/octet-stream"


# ------------------------------------------------------------------ permission


async def file_rank(user: str, file_id: uuid.UUID) -> int:
    return int(await db.pool.fetchval("SELECT file_rank($1, $2)", user, file_id))


async def folder_rank(user: str, folder_id: uuid.UUID) -> int:
    return int(await db.pool.fetchval("SELECT folder_rank($1, $2)", user, folder_id))


async def readable_file(user: str, file_id: uuid.UUID, *, need: int = 1, trashed: bool = False) -> Any:
    """The file's row if the caller has at least role ``need`` (1 viewer, 2 editor, 3 owner).

    Not readable (or not there, or in the trash unless ``trashed``): 404, the same answer either way.
    Readable but not enough: 403.
    """
    row = await db.pool.fetchrow(
        "SELECT f.*, file_rank($1, f.id) AS rank FROM files f WHERE f.id = $2", user, file_id)
    if row is None or row["rank"] < 1 or (row["deleted_at"] is not None) != trashed:
        raise Problem(404, "no such file")
    if row["rank"] < need:
        raise Problem(403, "your role on this file does not allow this")
    return row


async def readable_folder(user: str, folder_id: uuid.UUID, *, need: int = 1) -> Any:
    row = await db.pool.fetchrow(
        "SELECT d.*, folder_rank($1, d.id) AS rank FROM folders d WHERE d.id = $2", user, folder_id)
    if row is None or row["rank"] < 1:
        raise Problem(404, "no such folder")
    if row["rank"] < need:
        raise Problem(403, "your role on this folder does not allow this")
    return row


ROLE_NAMES = {1: "viewer", 2: "editor", 3: "owner"}


async def file_json(row: Any) -> dict[str, Any]:
    found = await db.pool.fetch(
        "SELECT name, content_type, size, width, height FROM variants WHERE file_id = $1 ORDER BY name", row["id"])
    return {
        "id": str(row["id"]), "name": row["name"],
        "folder_id": str(row["folder_id"]) if row["folder_id"] else None,
        "owner": row["owner_id"], "tags": list(row["tags"]), "content_type": row["content_type"],
        "size": row["size"], "sha256": row["sha256"],
        "created_at": row["created_at"].isoformat(), "updated_at": row["updated_at"].isoformat(),
        "deleted_at": row["deleted_at"].isoformat() if row["deleted_at"] else None,
        "role": ROLE_NAMES.get(row["rank"], "none") if "rank" in row else None,
        "variants": [dict(v) for v in found],
    }


def folder_json(row: Any) -> dict[str, Any]:
    return {"id": str(row["id"]), "name": row["name"], "owner": row["owner_id"],
            "parent_id": str(row["parent_id"]) if row["parent_id"] else None,
            "created_at": row["created_at"].isoformat(),
            "role": ROLE_NAMES.get(row["rank"], "none") if "rank" in row else None}


# ------------------------------------------------------------------ upload


class UploadBody:
    """The file bytes of a request body, raw or the ``file`` part of multipart/form-data, as a stream.

    ``chunks()`` yields the bytes in batches of about :data:`BATCH` bytes; the store hashes (into ``hash``)
    and writes each batch in one worker-thread call while the next batch arrives (hashlib and os.write
    release the GIL), so receiving and hashing + writing run side by side on separate cores. Memory: the
    batch being received, the one being hashed and written, whatever the file's size.
    """

    def __init__(self, request: Request) -> None:
        self.request = request
        self.filename: str | None = None
        self.size = 0
        self.hash = hashlib.sha256()
        self.head = b""

    def _account(self, pieces: list[bytes]) -> None:
        self.size += sum(map(len, pieces))
        if self.size > MAX_UPLOAD_BYTES:
            raise Problem(413, f"file exceeds {MAX_UPLOAD_BYTES} bytes")
        for piece in pieces:
            if len(self.head) >= SNIFF_BYTES:
                break
            self.head += piece[:SNIFF_BYTES - len(self.head)]

    async def chunks(self) -> AsyncIterator[list[bytes]]:
        """The file's bytes in batches (each a list of the pieces they arrived in, which the store writes
        together without joining them); Problem 413 past MAX_UPLOAD_BYTES, 400 for a malformed multipart body.

        ``self.hash`` is not updated here: the store does it (``put_stream(..., digest=self.hash)``) in the
        thread call that writes each batch.
        """
        ctype = self.request.headers.get("content-type", "")
        pieces = (self._multipart(ctype) if ctype.lower().startswith("multipart/form-data")
                  else self.request.stream())
        async for batch in _batched(pieces):
            self._account(batch)
            yield batch

    async def _multipart(self, ctype: str) -> AsyncIterator[bytes]:
        from python_multipart.exceptions import MultipartParseError
        from python_multipart.multipart import MultipartParser, parse_options_header

        _, options = parse_options_header(ctype)
        boundary = options.get(b"boundary")
        if not boundary or len(boundary) > 200:
            raise Problem(400, "multipart body without a valid boundary")
        state: dict[str, Any] = {"field": b"", "value": b"", "headers": {}, "in_file": False, "files": 0,
                                 "ended": False}
        pending: list[bytes] = []

        def on_header_field(data: bytes, start: int, end: int) -> None:
            state["field"] += data[start:end]

        def on_header_value(data: bytes, start: int, end: int) -> None:
            state["value"] += data[start:end]
            if len(state["value"]) > 4096:
                raise Problem(400, "multipart part header too long")

        def on_header_end() -> None:
            state["headers"][state["field"].lower()] = state["value"]
            state["field"], state["value"] = b"", b""

        def on_headers_finished() -> None:
            _, opts = parse_options_header(state["headers"].get(b"content-disposition", b""))
            state["in_file"] = opts.get(b"name") == b"file"
            if state["in_file"]:
                state["files"] += 1
                if state["files"] > 1:
                    raise Problem(400, "one file part per upload")
                filename = opts.get(b"filename")
                self.filename = filename.decode("utf-8", "replace") if filename else None

        def on_part_data(data: bytes, start: int, end: int) -> None:
            if state["in_file"]:
                pending.append(bytes(data[start:end]))

        def on_part_begin() -> None:
            state["headers"] = {}

        def on_end() -> None:
            state["ended"] = True

        parser = MultipartParser(boundary, callbacks={  # type: ignore[arg-type]
            "on_part_begin": on_part_begin, "on_header_field": on_header_field,
            "on_header_value": on_header_value, "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished, "on_part_data": on_part_data, "on_end": on_end})
        try:
            async for data in self.request.stream():
                parser.write(data)
                for piece in pending:
                    yield piece
                pending.clear()
            parser.finalize()
        except MultipartParseError as exc:
            raise Problem(400, f"malformed multipart body: {exc}") from None
        for piece in pending:
            yield piece
        if not state["ended"]:
            raise Problem(400, "multipart body ends before its closing boundary")
        if state["files"] == 0:
            raise Problem(400, "multipart body has no part named 'file'")


async def _batched(pieces: AsyncIterator[bytes]) -> AsyncIterator[list[bytes]]:
    """Gather the body's pieces (the HTTP server hands them out 64-256 KiB at a time) into batches of about
    BATCH bytes: one thread hop and one ``writev`` per MiB rather than per piece, and no joined copy."""
    held: list[bytes] = []
    count = 0
    async for piece in pieces:
        if not piece:
            continue
        held.append(piece)
        count += len(piece)
        if count >= BATCH:
            yield held
            held = []
            count = 0
    if held:
        yield held


def _tags_param(tags: str | None) -> list[str]:
    return clean_tags(tags.split(",")) if tags else []


@app.post("/files", status_code=201, responses=problem_responses(400, 401, 403, 404, 413, 422, 503))
async def upload(request: Request, who: Caller,
                 name: Annotated[str | None, Query(max_length=1024)] = None,
                 folder_id: uuid.UUID | None = None,
                 tags: Annotated[str | None, Query(max_length=2048)] = None) -> dict[str, Any]:
    """Stream the body into the originals bucket; returns the file (201).

    Query: ``name`` (else the multipart filename), ``folder_id`` (editor or owner on it), ``tags`` (comma
    separated). Header ``X-Content-SHA256`` (hex): refused with 422 if the bytes do not match.
    """
    tag_list = _tags_param(tags)
    if name is not None:
        name = clean_name(name)
    if folder_id is not None:
        await readable_folder(who.sub, folder_id, need=2)
    expected = (request.headers.get("x-content-sha256") or "").strip().lower() or None
    if expected is not None and not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise Problem(422, "X-Content-SHA256 must be 64 hex digits")
    file_id = uuid.uuid4()
    key = f"files/{file_id}"
    body = UploadBody(request)
    # The store writes under a temp name (or an unfinished multipart upload) and only renames (completes)
    # after the last byte: a failure anywhere above leaves no object and no row.
    await originals.put_stream(key, body.chunks(), digest=body.hash)
    try:
        if name is None:
            if not body.filename:
                raise Problem(422, "a name is required (query parameter name, or a multipart filename)")
            name = clean_name(body.filename)
        digest = body.hash.hexdigest()
        if expected is not None and expected != digest:
            raise Problem(422, "the body's sha256 does not match X-Content-SHA256", sha256=digest)
        ctype = sniff(body.head)
        # The row and its follow-up messages (variant job, index task, upload-complete mail) commit together:
        # a kill -9 after the commit leaves the messages in the outbox for the next relay, never a file that
        # silently lacks its variants, index entry or email.
        async with db.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """INSERT INTO files (id, folder_id, owner_id, name, tags, content_type, size, sha256, object_key)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *, 3 AS rank,
                   -- the uploader's phone when they opted into upload-complete SMS (the notification's sms_to)
                   (SELECT phone FROM notification_settings WHERE user_id = $3 AND sms_upload) AS sms_to""",
                file_id, folder_id, who.sub, name, tag_list, ctype, body.size, digest, key)
            await outbox.add_many(conn, upload_messages(row, who.sub))
    except BaseException:
        await originals.delete(key)
        raise
    outbox.kick()
    return await file_json(row)


def upload_messages(row: Any, by: str) -> list[tuple[str, dict[str, Any]]]:
    """The outbox messages of a new file: a variant job (images), an index task, the upload-complete mail (and
    SMS, to ``row["sms_to"]`` when the row carries one)."""
    file_id = str(row["id"])
    out: list[tuple[str, dict[str, Any]]] = []
    if row["content_type"] in IMAGE_TYPES:
        out.append(("variant-jobs", {"file_id": file_id}))
    out.append(("tasks", {"op": "index", "file_id": file_id}))
    note = {"event_id": f"upload:{file_id}", "kind": "upload-complete", "to_user": by, "file_id": file_id,
            "name": row["name"], "by": by}
    if row.get("sms_to"):
        note["sms_to"] = row["sms_to"]
    out.append(("notifications", note))
    return out


async def _changed(sql: str, *args: Any) -> Any:
    """Run one change to a file row (``sql``'s first argument is the file id) with its index task in the
    same transaction; returns the statement's row (``fetchrow``)."""
    async with db.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(sql, *args)
        await outbox.add(conn, "tasks", {"op": "index", "file_id": str(args[0])})
    outbox.kick()
    return row


# ------------------------------------------------------------------ read


@app.get("/files", responses=problem_responses(401, 404))
async def list_files(who: Caller, folder_id: uuid.UUID | None = None,
                     limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict[str, Any]:
    """Files of a folder, or (no folder_id) the caller's own top-level files plus files shared with them."""
    if folder_id is not None:
        await readable_folder(who.sub, folder_id)
        rows = await db.pool.fetch(
            """SELECT f.*, file_rank($1, f.id) AS rank FROM files f
               WHERE f.folder_id = $2 AND f.deleted_at IS NULL ORDER BY f.name, f.id LIMIT $3""",
            who.sub, folder_id, limit)
    else:
        rows = await db.pool.fetch(
            """SELECT f.*, file_rank($1, f.id) AS rank FROM files f
               WHERE f.deleted_at IS NULL AND ((f.owner_id = $1 AND f.folder_id IS NULL) OR f.id IN (
                   SELECT g.resource_id FROM grants g WHERE g.resource_type = 'file' AND (
                       (g.principal_type = 'user' AND g.principal_id = $1) OR (g.principal_type = 'group' AND
                        g.principal_id IN (SELECT m.group_id::text FROM group_members m WHERE m.user_id = $1)))))
               ORDER BY f.name, f.id LIMIT $2""", who.sub, limit)
    return {"files": [await file_json(r) for r in rows]}


@app.get("/files/{file_id}", responses=NOT_FOUND)
async def get_file(file_id: uuid.UUID, who: Caller) -> dict[str, Any]:
    """The file's metadata, the caller's role and its variants."""
    return await file_json(await readable_file(who.sub, file_id))


def _etag(row: Any) -> str:
    return f'"{row["sha256"]}"'


def _http_date(when: datetime) -> str:
    return email.utils.format_datetime(when.astimezone(UTC).replace(microsecond=0), usegmt=True)


def _not_modified_since(header: str | None, modified: datetime) -> bool:
    if not header:
        return False
    try:
        since = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError, IndexError):
        return False  # an unreadable date is ignored (RFC 9110 13.1.3)
    if since.tzinfo is None:
        return False
    return modified.replace(microsecond=0) <= since


def _etag_matches(header: str, etag: str) -> bool:
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return "*" in tags or etag in tags


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``bytes=a-b`` / ``a-`` / ``-n`` as (start, end exclusive); None to serve it all; Problem 416."""
    if not header:
        return None
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if not m or (not m[1] and not m[2]):
        return None  # several ranges or another unit: a full 200 is a valid answer (RFC 9110 14.2)
    if not m[1]:
        n = int(m[2])
        if n == 0:
            raise Problem(416, "empty suffix range", headers={"Content-Range": f"bytes */{size}"})
        return max(0, size - n), size
    start = int(m[1])
    end = min(int(m[2]) + 1, size) if m[2] else size
    if start >= size or end <= start:
        raise Problem(416, "range not satisfiable", headers={"Content-Range": f"bytes */{size}"})
    return start, end


async def _serve_object(request: Request, row: Any, store: Any, key: str, size: int, ctype: str,
                        filename: str, etag: str) -> Response:
    modified = row["created_at"]
    headers = {"ETag": etag, "Last-Modified": _http_date(modified), "Accept-Ranges": "bytes",
               "Cache-Control": "private, max-age=0, must-revalidate",
               # User content is never rendered by the browser as a page of this origin.
               "Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename, safe='')}",
               "X-Content-Type-Options": "nosniff"}
    if_match = request.headers.get("if-match")
    if if_match and not _etag_matches(if_match, etag):
        raise Problem(412, "If-Match does not match the file's ETag")
    inm = request.headers.get("if-none-match")
    if (inm and _etag_matches(inm, etag)) or (not inm and _not_modified_since(
            request.headers.get("if-modified-since"), modified)):
        return Response(status_code=304, headers=headers)
    wanted = parse_range(request.headers.get("range"), size)
    if_range = request.headers.get("if-range")
    if wanted is not None and if_range and if_range.strip() != etag:
        wanted = None  # the client's partial copy is of other bytes: send them all
    status = 200
    start, end = 0, size
    if wanted is not None:
        start, end = wanted
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    headers["Content-Length"] = str(end - start)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=ctype)
    try:
        stream = store.read_range(key, start, end)
        first = await anext(stream, b"")
    except KeyError:
        raise Problem(404, "no such file") from None

    async def body() -> AsyncIterator[bytes]:
        if first:
            yield first
        async for chunk in stream:
            yield chunk

    return StreamingResponse(body(), status_code=status, headers=headers, media_type=ctype)


@app.api_route("/files/{file_id}/content", methods=["GET", "HEAD"],
               responses={**problem_responses(404, 412, 416), 206: {"description": "Partial Content"},
                          304: {"description": "Not Modified"}})
async def download(file_id: uuid.UUID, request: Request, who: Caller) -> Response:
    """The file's bytes: Range (one range), If-None-Match / If-Modified-Since (304), If-Match (412), If-Range."""
    row = await readable_file(who.sub, file_id)
    return await _serve_object(request, row, originals, row["object_key"], row["size"], row["content_type"],
                               row["name"], _etag(row))


@app.get("/files/{file_id}/url", responses=NOT_FOUND)
async def download_url(file_id: uuid.UUID, who: Caller) -> dict[str, Any]:
    """Where to download the file: a presigned S3 URL (5 min) when the spec asks for them and the store has
    them, else this service's own content route."""
    row = await readable_file(who.sub, file_id)
    url = await originals.presigned_get(row["object_key"], expires_s=300, filename=row["name"]) if PRESIGN else None
    return {"url": url or f"/files/{file_id}/content", "presigned": url is not None,
            "expires_s": 300 if url else None}


@app.api_route("/files/{file_id}/variants/{variant}", methods=["GET", "HEAD"],
               responses={**problem_responses(404, 412, 416), 206: {"description": "Partial Content"},
                          304: {"description": "Not Modified"}})
async def get_variant(file_id: uuid.UUID, variant: Annotated[str, Path(pattern=r"^[a-z0-9_-]{1,32}$")],
                      request: Request, who: Caller) -> Response:
    """One variant of an image (e.g. ``thumb``, ``preview``); 404 until image-processing has made it."""
    row = await readable_file(who.sub, file_id)
    v = await db.pool.fetchrow("SELECT * FROM variants WHERE file_id = $1 AND name = $2", file_id, variant)
    if v is None:
        raise Problem(404, "no such variant (yet)")
    ext = v["content_type"].split("/")[-1]
    return await _serve_object(request, row, variants, v["object_key"], v["size"], v["content_type"],
                               f"{row['name']}.{variant}.{ext}", f'"{row["sha256"][:32]}-{variant}"')


# ------------------------------------------------------------------ change, trash


class FilePatch(BaseModel):
    name: str | None = Field(None, max_length=1024)
    tags: list[Annotated[str, Field(max_length=256)]] | None = Field(None, max_length=100)
    folder_id: uuid.UUID | None = None
    to_root: bool = Field(False, description="move the file out of any folder (owner only)")


@app.patch("/files/{file_id}", responses=problem_responses(403, 404, 422))
async def patch_file(file_id: uuid.UUID, change: FilePatch, who: Caller) -> dict[str, Any]:
    """Rename, retag or move (editor or owner; moving needs editor on the target folder too)."""
    row = await readable_file(who.sub, file_id, need=2)
    name = clean_name(change.name) if change.name is not None else row["name"]
    tag_list = clean_tags(change.tags) if change.tags is not None else list(row["tags"])
    folder = row["folder_id"]
    if change.folder_id is not None:
        await readable_folder(who.sub, change.folder_id, need=2)
        folder = change.folder_id
    elif change.to_root:
        if row["rank"] < 3:
            raise Problem(403, "only an owner moves a file out of its folder")
        folder = None
    updated = await _changed(
        """UPDATE files SET name = $2, tags = $3, folder_id = $4, updated_at = now() WHERE id = $1
           RETURNING *, file_rank($5, id) AS rank""", file_id, name, tag_list, folder, who.sub)
    return await file_json(updated)


@app.delete("/files/{file_id}", status_code=204, responses=problem_responses(403, 404))
async def trash_file(file_id: uuid.UUID, who: Caller) -> Response:
    """Move the file to the trash (editor or owner); purged after TRASH_RETENTION_DAYS."""
    await readable_file(who.sub, file_id, need=2)
    await _changed("UPDATE files SET deleted_at = now(), deleted_by = $2 WHERE id = $1 AND deleted_at IS NULL",
                   file_id, who.sub)
    return Response(status_code=204)


@app.get("/trash", responses=problem_responses(401))
async def list_trash(who: Caller) -> dict[str, Any]:
    """Trashed files the caller may restore (editor or owner), with when each will be purged."""
    rows = await db.pool.fetch(
        """SELECT * FROM (SELECT f.*, file_rank($1, f.id) AS rank FROM files f WHERE f.deleted_at IS NOT NULL) t
           WHERE rank >= 2 ORDER BY deleted_at DESC LIMIT 500""", who.sub)
    out = []
    for r in rows:
        item = await file_json(r)
        purge = r["deleted_at"].timestamp() + TRASH_RETENTION_DAYS * 86400
        item["purge_at"] = datetime.fromtimestamp(purge, UTC).isoformat()
        out.append(item)
    return {"files": out, "retention_days": TRASH_RETENTION_DAYS}


@app.post("/trash/{file_id}/restore", responses=problem_responses(403, 404))
async def restore(file_id: uuid.UUID, who: Caller) -> dict[str, Any]:
    """Bring a trashed file back (editor or owner)."""
    await readable_file(who.sub, file_id, need=2, trashed=True)
    row = await _changed(
        """UPDATE files SET deleted_at = NULL, deleted_by = NULL, updated_at = now() WHERE id = $1
           RETURNING *, file_rank($2, id) AS rank""", file_id, who.sub)
    return await file_json(row)


@app.delete("/trash/{file_id}", status_code=204, responses=problem_responses(403, 404))
async def purge_now(file_id: uuid.UUID, who: Caller) -> Response:
    """Delete a trashed file for good (owner only)."""
    await readable_file(who.sub, file_id, need=3, trashed=True)
    await purge(file_id)
    return Response(status_code=204)


async def purge(file_id: uuid.UUID) -> None:
    """Remove a file's objects, then its row (a crash in between leaves the row: the next sweep retries)."""
    row = await db.pool.fetchrow("SELECT object_key FROM files WHERE id = $1", file_id)
    if row is None:
        return
    for v in await db.pool.fetch("SELECT object_key FROM variants WHERE file_id = $1", file_id):
        await variants.delete(v["object_key"])
    await originals.delete(row["object_key"])
    async with db.pool.acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM files WHERE id = $1", file_id)
        await conn.execute("DELETE FROM grants WHERE resource_type = 'file' AND resource_id = $1", file_id)
        await outbox.add(conn, "tasks", {"op": "index", "file_id": str(file_id)})
    outbox.kick()


@svc.background
async def sweep_trash() -> None:
    """Purge files whose trash retention has passed, every TRASH_SWEEP_S."""
    while True:
        await asyncio.sleep(TRASH_SWEEP_S)
        with contextlib.suppress(Exception):
            due = await db.pool.fetch(
                "SELECT id FROM files WHERE deleted_at < now() - make_interval(secs => $1) LIMIT 100",
                TRASH_RETENTION_DAYS * 86400)
            for r in due:
                await purge(r["id"])
            if due:
                log.info("purged %d files from the trash", len(due))


async def sweep_leftovers() -> tuple[int, int]:
    """Remove what killed uploads left, older than LEFTOVER_AGE_S; returns (unfinished writes, orphans).

    Unfinished writes: the originals store's temp files / incomplete multipart uploads. Orphans: complete
    objects under ``files/`` whose row was never inserted (the process died between the store's rename and
    the insert); a row, even a trashed one, keeps its object.
    """
    unfinished = await originals.sweep_unfinished(LEFTOVER_AGE_S)
    keys = [k for k in await originals.list("files/") if _object_id(k) is not None]
    orphans = 0
    for i in range(0, len(keys), 1000):
        batch = keys[i:i + 1000]
        known = {str(r["id"]) for r in await db.pool.fetch(
            "SELECT id FROM files WHERE id = ANY($1::uuid[])", [_object_id(k) for k in batch])}
        for key in batch:
            if str(_object_id(key)) in known:
                continue
            try:
                info = await originals.stat(key)
            except KeyError:
                continue
            # Young objects are left alone: their upload may be between the rename and the row's commit.
            if info.modified < datetime.now(UTC).timestamp() - LEFTOVER_AGE_S:
                await originals.delete(key)
                orphans += 1
    return unfinished, orphans


def _object_id(key: str) -> uuid.UUID | None:
    """The file id of an originals key ``files/<uuid>``, else None (not an upload's object: never swept)."""
    try:
        return uuid.UUID(key.removeprefix("files/")) if key.startswith("files/") and key.count("/") == 1 else None
    except ValueError:
        return None


@svc.background
async def sweep_uploads() -> None:
    """sweep_leftovers at start-up and every UPLOAD_SWEEP_S (a failed round is logged and retried next time)."""
    while True:
        try:
            unfinished, orphans = await sweep_leftovers()
            if unfinished or orphans:
                log.info("swept %d unfinished uploads and %d orphaned originals", unfinished, orphans)
        except Exception as exc:  # database or store down: the leftovers wait for the next round
            log.warning("sweeping upload leftovers failed: %s", exc)
        await asyncio.sleep(UPLOAD_SWEEP_S)


# ------------------------------------------------------------------ folders


class NewFolder(BaseModel):
    name: str = Field(max_length=1024)
    parent_id: uuid.UUID | None = None


class FolderPatch(BaseModel):
    name: str = Field(max_length=1024)


@app.post("/folders", status_code=201, responses=problem_responses(403, 404, 422))
async def create_folder(new: NewFolder, who: Caller) -> dict[str, Any]:
    """A folder at the top level (owned by the caller) or inside one the caller may edit."""
    name = clean_name(new.name)
    if new.parent_id is not None:
        await readable_folder(who.sub, new.parent_id, need=2)
    row = await db.pool.fetchrow(
        "INSERT INTO folders (id, parent_id, owner_id, name) VALUES ($1, $2, $3, $4) RETURNING *, 3 AS rank",
        uuid.uuid4(), new.parent_id, who.sub, name)
    return folder_json(row)


@app.get("/folders", responses=problem_responses(401))
async def list_folders(who: Caller) -> dict[str, Any]:
    """The caller's top-level folders and the folders shared with them."""
    rows = await db.pool.fetch(
        """SELECT d.*, folder_rank($1, d.id) AS rank FROM folders d
           WHERE (d.owner_id = $1 AND d.parent_id IS NULL) OR d.id IN (
               SELECT g.resource_id FROM grants g WHERE g.resource_type = 'folder' AND (
                   (g.principal_type = 'user' AND g.principal_id = $1) OR (g.principal_type = 'group' AND
                    g.principal_id IN (SELECT m.group_id::text FROM group_members m WHERE m.user_id = $1))))
           ORDER BY d.name, d.id LIMIT 500""", who.sub)
    return {"folders": [folder_json(r) for r in rows]}


@app.get("/folders/{folder_id}", responses=NOT_FOUND)
async def get_folder(folder_id: uuid.UUID, who: Caller) -> dict[str, Any]:
    """The folder, its subfolders and its files."""
    row = await readable_folder(who.sub, folder_id)
    subs = await db.pool.fetch(
        "SELECT d.*, folder_rank($1, d.id) AS rank FROM folders d WHERE d.parent_id = $2 ORDER BY d.name LIMIT 500",
        who.sub, folder_id)
    files = await db.pool.fetch(
        """SELECT f.*, file_rank($1, f.id) AS rank FROM files f WHERE f.folder_id = $2 AND f.deleted_at IS NULL
           ORDER BY f.name LIMIT 500""", who.sub, folder_id)
    return {**folder_json(row), "folders": [folder_json(r) for r in subs],
            "files": [await file_json(r) for r in files]}


@app.patch("/folders/{folder_id}", responses=problem_responses(403, 404, 422))
async def rename_folder(folder_id: uuid.UUID, change: FolderPatch, who: Caller) -> dict[str, Any]:
    """Rename (editor or owner)."""
    await readable_folder(who.sub, folder_id, need=2)
    row = await db.pool.fetchrow("UPDATE folders SET name = $2 WHERE id = $1 RETURNING *, folder_rank($3, id) AS rank",
                                 folder_id, clean_name(change.name), who.sub)
    return folder_json(row)


@app.delete("/folders/{folder_id}", status_code=204, responses=problem_responses(403, 404, 409))
async def delete_folder(folder_id: uuid.UUID, who: Caller) -> Response:
    """Delete an empty folder (owner only); trashed files in it move to the top level of their owners."""
    await readable_folder(who.sub, folder_id, need=3)
    async with db.pool.acquire() as conn, conn.transaction():
        busy = await conn.fetchval(
            """SELECT EXISTS (SELECT 1 FROM folders WHERE parent_id = $1)
                   OR EXISTS (SELECT 1 FROM files WHERE folder_id = $1 AND deleted_at IS NULL)""", folder_id)
        if busy:
            raise Problem(409, "the folder is not empty")
        await conn.execute("UPDATE files SET folder_id = NULL WHERE folder_id = $1", folder_id)
        await conn.execute("DELETE FROM grants WHERE resource_type = 'folder' AND resource_id = $1", folder_id)
        await conn.execute("DELETE FROM folders WHERE id = $1", folder_id)
    return Response(status_code=204)
