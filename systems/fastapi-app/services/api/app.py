"""fastapi-app `api` (seed 003): a CRUD API for items on PostgreSQL, with /health and Prometheus /metrics.

Built on ``stackwright.runtime``: the runtime's ``Service`` gives the app /healthz, /readyz, /metrics (the
seed's starlette-exporter metric names), RFC 9457 problem+json for every error, a body-size limit, the
asyncpg pool of the ``db`` resource (``DB_URL``, ``DB_POOL_MIN``/``DB_POOL_MAX``) and graceful shutdown.
This module adds the seed's ``/health`` and the items resource. Bad input is a 4xx, never a 500.
"""

import logging
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

import asyncpg
from fastapi import Depends, FastAPI, Header, Query, Request, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from starlette.responses import JSONResponse

from stackwright.runtime import Database, Problem, Service, Settings, problem_response, shutdown

log = logging.getLogger("fastapi-app.api")

MAX_INT4 = 2**31 - 1
DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


async def _on_database(request: Request, exc: Exception) -> JSONResponse:
    """Database errors: constraint violations are the client's (409/422), the rest an outage (503)."""
    if isinstance(exc, asyncpg.UniqueViolationError):
        return problem_response(409, "an item with this name already exists", instance=request.url.path)
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError | asyncpg.DataError):
        return problem_response(422, f"the database rejected the values: {exc.__class__.__name__}",
                                instance=request.url.path)
    log.warning("database unavailable: %r", exc)
    return problem_response(503, "the database is unavailable; retry shortly", instance=request.url.path,
                            headers={"Retry-After": "5"})


# ---------------------------------------------------------------- schemas


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


NoNul = AfterValidator(_no_nul)
Text = Annotated[str, NoNul]
ItemName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), NoNul]
Description = Annotated[str, StringConstraints(max_length=2000), NoNul]
Price = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=2, examples=["19.99"])]
Quantity = Annotated[int, Field(ge=0, le=MAX_INT4)]
Tag = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")]
Tags = Annotated[list[Tag], Field(max_length=20)]


class ItemIn(BaseModel):
    """Body of POST /items and PUT /items/{id} (PUT replaces every field)."""

    model_config = ConfigDict(extra="forbid")

    name: ItemName
    description: Description = ""
    price: Price
    quantity: Quantity = 0
    tags: Tags = Field(default_factory=list)


class ItemPatch(BaseModel):
    """Body of PATCH /items/{id}: only the fields given change; ``null`` is not a value for any field."""

    model_config = ConfigDict(extra="forbid")

    # Defaults are not validated, so "absent" is allowed while an explicit null fails validation.
    name: ItemName = None  # type: ignore[assignment]
    description: Description = None  # type: ignore[assignment]
    price: Price = None  # type: ignore[assignment]
    quantity: Quantity = None  # type: ignore[assignment]
    tags: Tags = None  # type: ignore[assignment]


class Item(BaseModel):
    """An item as the API returns it. ``price`` is a decimal string; ``version`` is also the ETag."""

    id: UUID
    name: str
    description: str
    price: Decimal
    quantity: int
    tags: list[str]
    version: int
    created_at: datetime
    updated_at: datetime


class ItemPage(BaseModel):
    """One page of GET /items."""

    items: list[Item]
    total: int
    limit: int
    offset: int
    next_offset: int | None


SORTS: dict[str, str] = {
    "created_at": "created_at ASC, id ASC", "-created_at": "created_at DESC, id DESC",
    "name": "lower(name) ASC, id ASC", "-name": "lower(name) DESC, id DESC",
    "price": "price ASC, id ASC", "-price": "price DESC, id DESC",
}
COLUMNS = "id, name, description, price, quantity, tags, version, created_at, updated_at"


# ---------------------------------------------------------------- helpers


def _etag(version: int) -> str:
    return f'"{version}"'


def _if_match_version(if_match: str | None) -> int | None:
    """The version an If-Match header requires (None: no precondition). Unknown tags never match."""
    if if_match is None or if_match.strip() == "*":
        return None
    tag = if_match.strip().removeprefix("W/").strip('"')
    return int(tag) if tag.isdigit() and len(tag) < 10 else -1


async def require_json(request: Request) -> None:
    """Writes take JSON only (application/json or any +json type such as merge-patch+json)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype and ctype != "application/json" and not (ctype.startswith("application/") and ctype.endswith("+json")):
        raise Problem(415, f"send the body as application/json, not {ctype}")


def _item(row: asyncpg.Record) -> Item:
    return Item(**dict(row))


async def _missing_or_conflict(conn: asyncpg.Connection, item_id: UUID) -> Problem:
    exists = await conn.fetchval("SELECT version FROM items WHERE id = $1", item_id)
    if exists is None:
        return Problem(404, f"item {item_id} does not exist")
    return Problem(412, f"item {item_id} is at version {exists}; If-Match did not match", current_version=exists)


# ---------------------------------------------------------------- app


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API from ``settings`` (default: the environment). ``DB_URL`` must be set."""
    svc = Service(settings=settings, title="fastapi-app items API")
    db = svc.postgres("db")
    # Reads of one item or a page go to the region's replica where the region has one (DB_READ_URL: a secondary
    # region of a multi-region run; stale by the replication lag, and still served when the region is cut off
    # from the primary); elsewhere the same pool as the writes.
    reads = svc.postgres("db", reads=True) if svc.settings.resource_setting("db", "READ_URL") else db
    app = svc.app
    app.description = "CRUD for items (seed 003). Errors are application/problem+json (RFC 9457)."
    app.state.db = db
    for exc_type in DB_ERRORS:
        app.add_exception_handler(exc_type, _on_database)

    @app.get("/health", tags=["ops"])
    async def health() -> JSONResponse:
        """The seed's path for the load balancer, liveness and readiness: the process serves and is not
        draining (503 after SIGTERM, like the runtime's /readyz).

        It does not fail when the database does: the database is shared by every replica, so a failover
        would otherwise take every pod out of the load balancer (and, as the liveness probe, restart them
        all) at once. ``checks`` reports the last database check for humans; alert on the
        ``stackwright_dependency_up`` gauge, and item requests answer 503 + Retry-After while it is down.
        """
        if shutdown.is_draining():
            return problem_response(503, "shutting down", instance="/health", service=svc.name)
        return JSONResponse({"status": "ok", "service": svc.name, "checks": svc.dependencies})

    @app.post("/items", status_code=201, response_model=Item, tags=["items"], dependencies=[Depends(require_json)])
    async def create_item(body: ItemIn, response: Response) -> Item:
        """Create an item. 409 if the name (case-insensitive) is taken."""
        row = await db.pool.fetchrow(
            f"INSERT INTO items (name, description, price, quantity, tags) VALUES ($1, $2, $3, $4, $5) "
            f"RETURNING {COLUMNS}", body.name, body.description, body.price, body.quantity, body.tags)
        item = _item(row)
        response.headers["Location"] = f"/items/{item.id}"
        response.headers["ETag"] = _etag(item.version)
        return item

    @app.get("/items", response_model=ItemPage, tags=["items"])
    async def list_items(
        limit: Annotated[int, Query(ge=1, le=100, description="page size")] = 20,
        offset: Annotated[int, Query(ge=0, le=1_000_000, description="items to skip")] = 0,
        name: Annotated[Text | None, Query(max_length=200, description="case-insensitive substring")] = None,
        tag: Annotated[Tag | None, Query(description="items carrying this tag")] = None,
        min_price: Annotated[Price | None, Query()] = None,
        max_price: Annotated[Price | None, Query()] = None,
        in_stock: Annotated[bool | None, Query(description="true: quantity > 0; false: quantity = 0")] = None,
        sort: Annotated[Literal["created_at", "-created_at", "name", "-name", "price", "-price"],
                        Query(description="field, '-' for descending")] = "created_at",
    ) -> ItemPage:
        """List items, filtered and sorted, one page at a time (limit/offset)."""
        if min_price is not None and max_price is not None and min_price > max_price:
            raise Problem(400, f"min_price ({min_price}) is greater than max_price ({max_price})")
        where: list[str] = []
        args: list[Any] = []
        if name:
            escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            args.append(f"%{escaped}%")
            where.append(f"name ILIKE ${len(args)}")
        if tag:
            args.append(tag)
            where.append(f"tags @> ARRAY[${len(args)}::text]")
        if min_price is not None:
            args.append(min_price)
            where.append(f"price >= ${len(args)}")
        if max_price is not None:
            args.append(max_price)
            where.append(f"price <= ${len(args)}")
        if in_stock is not None:
            where.append("quantity > 0" if in_stock else "quantity = 0")
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        async with reads.pool.acquire() as conn:
            total = await conn.fetchval(f"SELECT count(*) FROM items{clause}", *args)
            rows = await conn.fetch(
                f"SELECT {COLUMNS} FROM items{clause} ORDER BY {SORTS[sort]} "
                f"LIMIT ${len(args) + 1} OFFSET ${len(args) + 2}", *args, limit, offset)
        next_offset = offset + limit if offset + limit < total else None
        return ItemPage(items=[_item(r) for r in rows], total=total, limit=limit, offset=offset,
                        next_offset=next_offset)

    @app.get("/items/{item_id}", response_model=Item, tags=["items"])
    async def get_item(item_id: UUID, response: Response) -> Item:
        """One item; its ETag is its version."""
        row = await reads.pool.fetchrow(f"SELECT {COLUMNS} FROM items WHERE id = $1", item_id)
        if row is None:
            raise Problem(404, f"item {item_id} does not exist")
        response.headers["ETag"] = _etag(row["version"])
        return _item(row)

    @app.put("/items/{item_id}", response_model=Item, tags=["items"], dependencies=[Depends(require_json)])
    async def replace_item(item_id: UUID, body: ItemIn, response: Response,
                           if_match: Annotated[str | None, Header()] = None) -> Item:
        """Replace every field of an item. With If-Match, 412 unless the version matches."""
        return await _update(db, response, item_id, body.model_dump(), if_match)

    @app.patch("/items/{item_id}", response_model=Item, tags=["items"], dependencies=[Depends(require_json)])
    async def patch_item(item_id: UUID, body: ItemPatch, response: Response,
                         if_match: Annotated[str | None, Header()] = None) -> Item:
        """Change the given fields only (JSON merge patch without nulls)."""
        return await _update(db, response, item_id, body.model_dump(exclude_unset=True), if_match)

    @app.delete("/items/{item_id}", status_code=204, tags=["items"])
    async def delete_item(item_id: UUID,
                          if_match: Annotated[str | None, Header()] = None) -> Response:
        """Delete an item. With If-Match, 412 unless the version matches."""
        version = _if_match_version(if_match)
        async with db.pool.acquire() as conn:
            deleted = await conn.fetchval(
                "DELETE FROM items WHERE id = $1 AND ($2::int IS NULL OR version = $2) RETURNING id",
                item_id, version)
            if deleted is None:
                raise await _missing_or_conflict(conn, item_id)
        return Response(status_code=204)

    return app


async def _update(db: Database, response: Response, item_id: UUID, fields: dict[str, Any],
                  if_match: str | None) -> Item:
    version = _if_match_version(if_match)
    sets = [f"{column} = ${i}" for i, column in enumerate(fields, start=3)]  # column names come from the model
    sets += ["version = version + 1", "updated_at = now()"] if fields else []
    async with db.pool.acquire() as conn:
        if sets:
            row = await conn.fetchrow(
                f"UPDATE items SET {', '.join(sets)} WHERE id = $1 AND ($2::int IS NULL OR version = $2) "
                f"RETURNING {COLUMNS}", item_id, version, *fields.values())
        else:  # empty patch: nothing changes, but the preconditions still apply
            row = await conn.fetchrow(
                f"SELECT {COLUMNS} FROM items WHERE id = $1 AND ($2::int IS NULL OR version = $2)", item_id, version)
        if row is None:
            raise await _missing_or_conflict(conn, item_id)
    response.headers["ETag"] = _etag(row["version"])
    return _item(row)


app = create_app()
