"""Search: files by name, tags, type, owner and (for text files) content, filtered to what the caller may read.

The index is the ``index`` search resource: a Postgres database with full-text search locally (a generated
``tsvector`` over name, tags and content, GIN-indexed); OpenSearch on AWS is what the resource renders, and
this service's OpenSearch client is not written yet (see the README). The index holds no permissions:
candidates come from the index and every one is checked against the record (``file_rank`` in the main
database) in the same request, so a revoked share or trashed file drops out of results at once.

The index follows the record through the ``tasks`` queue (``{"op": "index", "file_id"}`` after each upload,
change, trash, restore or purge: the consumer re-reads the file and upserts or deletes its document, so
messages are idempotent and their order does not matter). An empty index is rebuilt from Postgres at start.
"""

from __future__ import annotations

import logging
import unicodedata
import uuid
from typing import Annotated, Any

from fastapi import Depends, Query

from stackwright.runtime import Principal, Problem, Service, consume, problem_responses

svc = Service(title="search")
db = svc.postgres("db")
index = svc.postgres("index")
originals = svc.store("originals")
tasks = svc.queue("tasks")
app = svc.app
Caller = Annotated[Principal, Depends(svc.principal())]

log = logging.getLogger("files.search")

#: Text files up to this size have their content indexed (the first CONTENT_LIMIT bytes of larger ones).
CONTENT_LIMIT = int(svc.settings.get("INDEX_CONTENT_BYTES", str(1 << 20)) or 1 << 20)
PAGE = 200
MAX_PAGES = 20

SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    file_id       uuid PRIMARY KEY,
    name          text NOT NULL,
    tags          text[] NOT NULL,
    content_type  text NOT NULL,
    owner_id      text NOT NULL,
    content       text NOT NULL DEFAULT '',
    -- Written with the row (array_to_string is not immutable, so this cannot be a generated column).
    tsv           tsvector NOT NULL
);
CREATE INDEX IF NOT EXISTS docs_tsv ON docs USING gin (tsv);
CREATE INDEX IF NOT EXISTS docs_tags ON docs USING gin (tags);
CREATE INDEX IF NOT EXISTS docs_owner ON docs (owner_id);
"""


@svc.on_startup
async def create_schema() -> None:
    async with index.pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock(4114)")  # replicas starting together create it once
        try:
            await conn.execute(SCHEMA)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(4114)")


async def reindex(file_id: uuid.UUID) -> str:
    """Make the document of one file match the record: upserted if it is live, deleted otherwise."""
    row = await db.pool.fetchrow(
        "SELECT id, name, tags, content_type, owner_id, object_key, size FROM files "
        "WHERE id = $1 AND deleted_at IS NULL", file_id)
    if row is None:
        await index.pool.execute("DELETE FROM docs WHERE file_id = $1", file_id)
        return "removed"
    content = ""
    if row["content_type"].startswith("text/"):
        try:
            raw = b"".join([c async for c in originals.read_range(row["object_key"], 0, CONTENT_LIMIT)])
            # Postgres text cannot hold NUL; a cut multi-byte character at the end is dropped by "ignore".
            content = raw.decode("utf-8", "ignore").replace("\x00", " ")
        except KeyError:
            content = ""
    await index.pool.execute(
        """INSERT INTO docs (file_id, name, tags, content_type, owner_id, content, tsv)
           VALUES ($1, $2, $3, $4, $5, $6, setweight(to_tsvector('simple', $2), 'A')
                   || setweight(to_tsvector('simple', array_to_string($3::text[], ' ')), 'B')
                   || setweight(to_tsvector('simple', $6), 'C'))
           ON CONFLICT (file_id) DO UPDATE SET name = EXCLUDED.name, tags = EXCLUDED.tags,
               content_type = EXCLUDED.content_type, owner_id = EXCLUDED.owner_id, content = EXCLUDED.content,
               tsv = EXCLUDED.tsv""",
        row["id"], row["name"], list(row["tags"]), row["content_type"], row["owner_id"], content)
    return "indexed"


async def handle(messages: list[Any]) -> None:
    for file_id in dict.fromkeys(str(m.body["file_id"]) for m in messages):  # a batch may repeat a file
        await reindex(uuid.UUID(file_id))


async def rebuild_if_empty() -> int:
    """Index every live file when the index holds nothing (a new or lost index); returns files indexed."""
    if await index.pool.fetchval("SELECT EXISTS (SELECT 1 FROM docs)"):
        return 0
    done = 0
    last = uuid.UUID(int=0)
    while True:
        ids = [r["id"] for r in await db.pool.fetch(
            "SELECT id FROM files WHERE deleted_at IS NULL AND id > $1 ORDER BY id LIMIT 500", last)]
        if not ids:
            break
        for file_id in ids:
            await reindex(file_id)
        done += len(ids)
        last = ids[-1]
    if done:
        log.info("index was empty: rebuilt %d documents from Postgres", done)
    return done


@svc.background
async def follow_record() -> None:
    await rebuild_if_empty()
    await consume(tasks, handle, batch_size=50, wait_seconds=1.0)


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _clean(v: str | None, what: str) -> str | None:
    if v is None:
        return None
    v = unicodedata.normalize("NFC", v).strip()
    if "\x00" in v:
        raise Problem(422, f"{what} may not contain NUL")
    return v or None


@app.get("/search", responses=problem_responses(401, 422))
async def search(who: Caller,
                 q: Annotated[str | None, Query(max_length=200, description="words in the name, tags or text")] = None,
                 tag: Annotated[str | None, Query(max_length=64)] = None,
                 type: Annotated[str | None, Query(max_length=100, description="image, text/plain, ...")] = None,
                 owner: Annotated[str | None, Query(max_length=200)] = None,
                 limit: Annotated[int, Query(ge=1, le=100)] = 20) -> dict[str, Any]:
    """Files the caller may read that match every given filter, best matches first."""
    q, tag, type, owner = _clean(q, "q"), _clean(tag, "tag"), _clean(type, "type"), _clean(owner, "owner")
    where: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    order = "file_id"
    if q:
        tsq = f"websearch_to_tsquery('simple', {arg(q)})"
        where.append(f"(tsv @@ {tsq} OR name ILIKE {arg(_like(q))})")
        order = f"ts_rank(tsv, {tsq}) DESC, file_id"
    if tag:
        where.append(f"{arg(tag.lower())} = ANY(tags)")
    if type:
        where.append(f"content_type LIKE {arg(_like(type.lower())[1:] if '/' in type else type.lower() + '/%')}")
    if owner:
        where.append(f"owner_id = {arg(owner)}")
    sql = (f"SELECT file_id FROM docs {'WHERE ' + ' AND '.join(where) if where else ''} "
           f"ORDER BY {order} LIMIT {PAGE} OFFSET ")
    found: list[Any] = []
    for page in range(MAX_PAGES):
        ids = [r["file_id"] for r in await index.pool.fetch(sql + str(page * PAGE), *args)]
        if not ids:
            break
        # The record decides, not the index: live files the caller may read, in the index's order.
        allowed = await db.pool.fetch(
            """SELECT f.id, f.name, f.tags, f.content_type, f.owner_id, f.size, f.folder_id, f.updated_at
               FROM unnest($1::uuid[]) WITH ORDINALITY AS c(id, n) JOIN files f ON f.id = c.id
               WHERE f.deleted_at IS NULL AND file_rank($2, f.id) >= 1 ORDER BY c.n""", ids, who.sub)
        found += allowed
        if len(found) >= limit or len(ids) < PAGE:
            break
    return {"results": [{"id": str(r["id"]), "name": r["name"], "tags": list(r["tags"]),
                         "content_type": r["content_type"], "owner": r["owner_id"], "size": r["size"],
                         "folder_id": str(r["folder_id"]) if r["folder_id"] else None,
                         "updated_at": r["updated_at"].isoformat()} for r in found[:limit]]}
