"""The search index behind the search service: Postgres full-text locally, OpenSearch on AWS.

Which one is decided by the ``index`` resource's URL (``INDEX_URL``): ``postgresql://`` (what ``stackwright up``
wires) is a Postgres database with a weighted ``tsvector``; ``https://`` (the rendered OpenSearch domain's
endpoint, which the AWS render puts in the service's secret) or ``http://`` is an OpenSearch cluster. Requests
to an ``*.amazonaws.com`` endpoint are signed with SigV4 (service ``es``) from the pod's AWS credentials.

Both hold the same document per live file (``file_id``, ``name``, ``tags``, ``content_type``, ``owner_id``,
``content``) and answer the same question: the ids of the documents matching every given filter, best
matches first, one page at a time. Neither holds permissions: the search service checks every candidate
against the record.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Doc:
    """One file's searchable fields (``content``: the text of a text file, else empty)."""

    file_id: uuid.UUID
    name: str
    tags: list[str]
    content_type: str
    owner_id: str
    content: str


@dataclass(frozen=True)
class SearchQuery:
    """What a search asks: words (``q``), a tag, a type (``image`` or ``text/plain``), an owner; None: any."""

    q: str | None = None
    tag: str | None = None
    type: str | None = None
    owner: str | None = None


class Index(Protocol):
    """The operations the search service needs of its index."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def upsert(self, doc: Doc) -> None: ...

    async def delete(self, file_id: uuid.UUID) -> None: ...

    async def is_empty(self) -> bool: ...

    async def candidates(self, query: SearchQuery, offset: int, size: int) -> list[uuid.UUID]:
        """Ids of matching documents ``offset`` to ``offset + size``, best first (ties by id)."""
        ...


def is_opensearch(url: str) -> bool:
    """True for an OpenSearch endpoint (http/https), False for a Postgres URL."""
    return urlsplit(url).scheme in ("http", "https")


def like_pattern(text: str) -> str:
    """``%text%`` for SQL LIKE with the wildcards in ``text`` escaped."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


# ---------------------------------------------------------------------------------------------- Postgres

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


class PostgresIndex:
    """A ``docs`` table with a weighted tsvector (name A, tags B, content C) in the ``index`` database."""

    def __init__(self, database: Any) -> None:
        self.db = database  # a stackwright.runtime Database, opened and closed by the Service

    async def open(self) -> None:
        async with self.db.pool.acquire() as conn:
            await conn.execute("SELECT pg_advisory_lock(4114)")  # replicas starting together create it once
            try:
                await conn.execute(SCHEMA)
            finally:
                await conn.execute("SELECT pg_advisory_unlock(4114)")

    async def close(self) -> None:
        return None

    async def upsert(self, doc: Doc) -> None:
        await self.db.pool.execute(
            """INSERT INTO docs (file_id, name, tags, content_type, owner_id, content, tsv)
               VALUES ($1, $2, $3, $4, $5, $6, setweight(to_tsvector('simple', $2), 'A')
                       || setweight(to_tsvector('simple', array_to_string($3::text[], ' ')), 'B')
                       || setweight(to_tsvector('simple', $6), 'C'))
               ON CONFLICT (file_id) DO UPDATE SET name = EXCLUDED.name, tags = EXCLUDED.tags,
                   content_type = EXCLUDED.content_type, owner_id = EXCLUDED.owner_id, content = EXCLUDED.content,
                   tsv = EXCLUDED.tsv""",
            doc.file_id, doc.name, doc.tags, doc.content_type, doc.owner_id, doc.content)

    async def delete(self, file_id: uuid.UUID) -> None:
        await self.db.pool.execute("DELETE FROM docs WHERE file_id = $1", file_id)

    async def is_empty(self) -> bool:
        return not await self.db.pool.fetchval("SELECT EXISTS (SELECT 1 FROM docs)")

    async def candidates(self, query: SearchQuery, offset: int, size: int) -> list[uuid.UUID]:
        where: list[str] = []
        args: list[Any] = []

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        order = "file_id"
        if query.q:
            tsq = f"websearch_to_tsquery('simple', {arg(query.q)})"
            where.append(f"(tsv @@ {tsq} OR name ILIKE {arg(like_pattern(query.q))})")
            order = f"ts_rank(tsv, {tsq}) DESC, file_id"
        if query.tag:
            where.append(f"{arg(query.tag.lower())} = ANY(tags)")
        if query.type:
            t = query.type.lower()
            where.append(f"content_type LIKE {arg(like_pattern(t)[1:] if '/' in t else t + '/%')}")
        if query.owner:
            where.append(f"owner_id = {arg(query.owner)}")
        sql = (f"SELECT file_id FROM docs {'WHERE ' + ' AND '.join(where) if where else ''} "
               f"ORDER BY {order} LIMIT {int(size)} OFFSET {int(offset)}")
        return [r["file_id"] for r in await self.db.pool.fetch(sql, *args)]


# ---------------------------------------------------------------------------------------------- OpenSearch

#: name: analysed text plus the exact name (``name.raw``) for substring matches; the rest are exact values.
MAPPING = {"mappings": {"properties": {
    "file_id": {"type": "keyword"},
    "name": {"type": "text", "fields": {"raw": {"type": "keyword"}}},
    "tags": {"type": "keyword"},
    "content_type": {"type": "keyword"},
    "owner_id": {"type": "keyword"},
    "content": {"type": "text"},
}}}


def opensearch_query(query: SearchQuery, offset: int, size: int) -> dict[str, Any]:
    """The search body for ``query``: the same matches and order as PostgresIndex.candidates."""
    must: list[dict[str, Any]] = []
    filters: list[dict[str, Any]] = []
    sort: list[Any] = [{"file_id": "asc"}]
    if query.q:
        # Words in name (strongest), tags or content, or the text anywhere inside the name.
        wildcard = query.q.replace("\\", "\\\\").replace("*", "\\*").replace("?", "\\?")
        must.append({"bool": {"minimum_should_match": 1, "should": [
            {"multi_match": {"query": query.q, "fields": ["name^3", "tags^2", "content"]}},
            {"wildcard": {"name.raw": {"value": f"*{wildcard}*", "case_insensitive": True}}}]}})
        sort = ["_score", {"file_id": "asc"}]
    if query.tag:
        filters.append({"term": {"tags": query.tag.lower()}})
    if query.type:
        t = query.type.lower()
        # "text/plain" matches "text/plain" and its parameters; "image" any image/...
        filters.append({"prefix": {"content_type": t if "/" in t else t + "/"}})
    if query.owner:
        filters.append({"term": {"owner_id": query.owner}})
    return {"query": {"bool": {"must": must or [{"match_all": {}}], "filter": filters}},
            "sort": sort, "from": offset, "size": size, "_source": False}


class OpenSearchIndex:
    """One OpenSearch index (``INDEX_NAME``, default ``files-docs``) on the domain at ``url``."""

    def __init__(self, url: str, *, index_name: str = "files-docs", region: str | None = None) -> None:
        self.url = url
        self.name = index_name
        self.region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        self.client: Any = None

    async def open(self) -> None:
        from opensearchpy import AsyncHttpConnection, AsyncOpenSearch, AWSV4SignerAsyncAuth

        parts = urlsplit(self.url)
        options: dict[str, Any] = {}
        host = parts.hostname or ""
        if host.endswith(".amazonaws.com"):
            import boto3

            # <domain>.<region>.es.amazonaws.com: the region is in the endpoint when the pod does not say it.
            region = self.region or host.split(".")[-4]
            options = {"http_auth": AWSV4SignerAsyncAuth(boto3.Session().get_credentials(), region, "es"),
                       "connection_class": AsyncHttpConnection}
        self.client = AsyncOpenSearch(hosts=[f"{parts.scheme}://{parts.netloc}"], use_ssl=parts.scheme == "https",
                                      verify_certs=parts.scheme == "https", timeout=10, **options)
        if not await self.client.indices.exists(index=self.name):
            from opensearchpy.exceptions import RequestError

            try:
                await self.client.indices.create(index=self.name, body=MAPPING)
            except RequestError as exc:  # another replica created it first
                if "already_exists" not in str(exc) and "exists" not in str(exc):
                    raise

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()

    async def upsert(self, doc: Doc) -> None:
        await self.client.index(index=self.name, id=str(doc.file_id), body={
            "file_id": str(doc.file_id), "name": doc.name, "tags": doc.tags, "content_type": doc.content_type,
            "owner_id": doc.owner_id, "content": doc.content})

    async def delete(self, file_id: uuid.UUID) -> None:
        from opensearchpy.exceptions import NotFoundError

        with contextlib.suppress(NotFoundError):  # already gone: the message is idempotent
            await self.client.delete(index=self.name, id=str(file_id))

    async def is_empty(self) -> bool:
        return int((await self.client.count(index=self.name))["count"]) == 0

    async def candidates(self, query: SearchQuery, offset: int, size: int) -> list[uuid.UUID]:
        found = await self.client.search(index=self.name, body=opensearch_query(query, offset, size))
        return [uuid.UUID(hit["_id"]) for hit in found["hits"]["hits"]]
