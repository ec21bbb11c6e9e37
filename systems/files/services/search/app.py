"""Search: files by name, tags, type, owner and (for text files) content, filtered to what the caller may read.

The index is the ``index`` search resource (``engines.py``): a Postgres database with full-text search locally
(a weighted ``tsvector`` over name, tags and content, GIN-indexed), the OpenSearch domain the AWS render
makes when ``INDEX_URL`` is its https endpoint. The index holds no permissions:
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

from engines import Doc, Index, OpenSearchIndex, PostgresIndex, SearchQuery, is_opensearch
from fastapi import Depends, Query

from stackwright.runtime import Principal, Problem, Service, consume, problem_responses

svc = Service(title="search")
db = svc.postgres("db")
originals = svc.store("originals")
tasks = svc.queue("tasks")
app = svc.app
Caller = Annotated[Principal, Depends(svc.principal())]

log = logging.getLogger("files.search")

#: Text files up to this size have their content indexed (the first CONTENT_LIMIT bytes of larger ones).
CONTENT_LIMIT = int(svc.settings.get("INDEX_CONTENT_BYTES", str(1 << 20)) or 1 << 20)
PAGE = 200
MAX_PAGES = 20

_index_url = svc.settings.resource_url("index")
index: Index = (OpenSearchIndex(_index_url, index_name=svc.settings.get("INDEX_NAME", "files-docs") or "files-docs")
                if is_opensearch(_index_url) else PostgresIndex(svc.postgres("index")))
svc.on_startup(index.open)  # after the pools (a Postgres index creates its table on its pool)
svc.on_shutdown(index.close)


async def reindex(file_id: uuid.UUID) -> str:
    """Make the document of one file match the record: upserted if it is live, deleted otherwise."""
    row = await db.pool.fetchrow(
        "SELECT id, name, tags, content_type, owner_id, object_key, size FROM files "
        "WHERE id = $1 AND deleted_at IS NULL", file_id)
    if row is None:
        await index.delete(file_id)
        return "removed"
    content = ""
    if row["content_type"].startswith("text/"):
        try:
            raw = b"".join([c async for c in originals.read_range(row["object_key"], 0, CONTENT_LIMIT)])
            # Postgres text cannot hold NUL; a cut multi-byte character at the end is dropped by "ignore".
            content = raw.decode("utf-8", "ignore").replace("\x00", " ")
        except KeyError:
            content = ""
    await index.upsert(Doc(row["id"], row["name"], list(row["tags"]), row["content_type"], row["owner_id"], content))
    return "indexed"


async def handle(messages: list[Any]) -> None:
    for file_id in dict.fromkeys(str(m.body["file_id"]) for m in messages):  # a batch may repeat a file
        await reindex(uuid.UUID(file_id))


async def rebuild_if_empty() -> int:
    """Index every live file when the index holds nothing (a new or lost index); returns files indexed."""
    if not await index.is_empty():
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
    query = SearchQuery(_clean(q, "q"), _clean(tag, "tag"), _clean(type, "type"), _clean(owner, "owner"))
    found: list[Any] = []
    for page in range(MAX_PAGES):
        ids = await index.candidates(query, page * PAGE, PAGE)
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
