"""fastapi-app `api` (seed 003): a CRUD API for items on PostgreSQL, with /health and Prometheus /metrics.

Wiring comes from the environment (12-factor), named the same locally and on EKS:

* ``DB_URL``: PostgreSQL URL of the ``db`` resource (required); ``DB_POOL_MIN``/``DB_POOL_MAX`` size the pool.
* ``SERVICE_NAME``: the ``app_name`` label on every metric (``api``).

Every error is an RFC 9457 ``application/problem+json`` body; bad input is a 4xx, never a 500.
Until the service moves onto ``stackwright.runtime`` it is a plain FastAPI app: asyncpg for the pool and
starlette-exporter for the seed's metric names.
"""

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

import asyncpg
from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse
from starlette_exporter import PrometheusMiddleware, handle_metrics

log = logging.getLogger("fastapi-app.api")

PROBLEM_JSON = "application/problem+json"
MAX_INT4 = 2**31 - 1
# Same buckets as stackwright.runtime: fine around the 200-500 ms p99 SLOs the specs use.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
NOT_USER_TRAFFIC = ["/metrics", "/health", "/livez"]

_TITLES = {400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
           412: "Precondition Failed", 415: "Unsupported Media Type", 422: "Unprocessable Content",
           500: "Internal Server Error", 503: "Service Unavailable"}


# ---------------------------------------------------------------- problems (RFC 9457)


class Problem(Exception):
    """Raise from a handler to answer with ``application/problem+json``."""

    def __init__(self, status: int, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.extra = extra


def problem(status: int, detail: str = "", instance: str | None = None, headers: dict[str, str] | None = None,
            **extra: Any) -> JSONResponse:
    """An RFC 9457 problem response."""
    body: dict[str, Any] = {"type": "about:blank", "title": _TITLES.get(status, "Error"), "status": status}
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _loc(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(p) for p in loc)


async def _on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return problem(400, "the request body is not valid JSON", request.url.path)
    details = [{"field": _loc(e.get("loc", ())), "message": str(e.get("msg", "")), "type": str(e.get("type", ""))}
               for e in errors]
    summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:3])
    return problem(422, f"invalid input: {summary}", request.url.path, errors=details)


async def _on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return problem(exc.status_code, str(exc.detail) if exc.detail else "", request.url.path,
                   headers=getattr(exc, "headers", None))


async def _on_problem(request: Request, exc: Problem) -> JSONResponse:
    return problem(exc.status, exc.detail, request.url.path, **exc.extra)


async def _on_database(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, asyncpg.UniqueViolationError):
        return problem(409, "an item with this name already exists", request.url.path)
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError | asyncpg.DataError):
        return problem(422, f"the database rejected the values: {exc.__class__.__name__}", request.url.path)
    log.warning("database unavailable: %r", exc)
    return problem(503, "the database is unavailable; retry shortly", request.url.path,
                   headers={"Retry-After": "5"})


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem(500, "unexpected error; it has been logged", request.url.path)


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


def _pool(request: Request) -> asyncpg.Pool:
    return request.app.state.pool


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


def create_app(db_url: str | None = None, service_name: str | None = None) -> FastAPI:
    """Build the API. ``db_url`` defaults to ``$DB_URL``, read when the app starts (not at import)."""
    name = service_name or os.environ.get("SERVICE_NAME", "api")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = db_url or os.environ.get("DB_URL")
        if not url:
            raise RuntimeError("DB_URL is not set: the spec wires the 'db' resource into this service as DB_URL")
        app.state.pool = await asyncpg.create_pool(
            url, min_size=int(os.environ.get("DB_POOL_MIN", "2")), max_size=int(os.environ.get("DB_POOL_MAX", "10")),
            command_timeout=10)
        try:
            yield
        finally:
            await app.state.pool.close()

    app = FastAPI(title="fastapi-app items API", version="1.0.0", lifespan=lifespan,
                  description="CRUD for items (seed 003). Errors are application/problem+json (RFC 9457).")
    app.add_middleware(PrometheusMiddleware, app_name=name, group_paths=True, buckets=BUCKETS,
                       skip_paths=NOT_USER_TRAFFIC)
    app.add_route("/metrics", handle_metrics, include_in_schema=False)
    app.add_exception_handler(RequestValidationError, _on_validation)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _on_http)  # type: ignore[arg-type]
    app.add_exception_handler(Problem, _on_problem)  # type: ignore[arg-type]
    for exc_type in (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
        app.add_exception_handler(exc_type, _on_database)
    app.add_exception_handler(Exception, _on_unexpected)

    @app.get("/health", tags=["ops"])
    async def health(request: Request) -> JSONResponse:
        """Liveness, readiness and load-balancer check (as in the seed): the database answers."""
        try:
            async with _pool(request).acquire(timeout=2) as conn:
                await conn.fetchval("SELECT 1", timeout=2)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            return problem(503, f"database check failed: {exc.__class__.__name__}", "/health",
                           service=name, checks={"database": "failing"})
        return JSONResponse({"status": "ok", "service": name, "checks": {"database": "ok"}})

    @app.get("/livez", tags=["ops"])
    async def livez() -> dict[str, str]:
        """Process liveness only (no dependencies), for probes that must not restart on a database outage."""
        return {"status": "ok"}

    @app.post("/items", status_code=201, response_model=Item, tags=["items"], dependencies=[Depends(require_json)])
    async def create_item(body: ItemIn, request: Request, response: Response) -> Item:
        """Create an item. 409 if the name (case-insensitive) is taken."""
        row = await _pool(request).fetchrow(
            f"INSERT INTO items (name, description, price, quantity, tags) VALUES ($1, $2, $3, $4, $5) "
            f"RETURNING {COLUMNS}", body.name, body.description, body.price, body.quantity, body.tags)
        item = _item(row)
        response.headers["Location"] = f"/items/{item.id}"
        response.headers["ETag"] = _etag(item.version)
        return item

    @app.get("/items", response_model=ItemPage, tags=["items"])
    async def list_items(
        request: Request,
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
        async with _pool(request).acquire() as conn:
            total = await conn.fetchval(f"SELECT count(*) FROM items{clause}", *args)
            rows = await conn.fetch(
                f"SELECT {COLUMNS} FROM items{clause} ORDER BY {SORTS[sort]} "
                f"LIMIT ${len(args) + 1} OFFSET ${len(args) + 2}", *args, limit, offset)
        next_offset = offset + limit if offset + limit < total else None
        return ItemPage(items=[_item(r) for r in rows], total=total, limit=limit, offset=offset,
                        next_offset=next_offset)

    @app.get("/items/{item_id}", response_model=Item, tags=["items"])
    async def get_item(item_id: UUID, request: Request, response: Response) -> Item:
        """One item; its ETag is its version."""
        row = await _pool(request).fetchrow(f"SELECT {COLUMNS} FROM items WHERE id = $1", item_id)
        if row is None:
            raise Problem(404, f"item {item_id} does not exist")
        response.headers["ETag"] = _etag(row["version"])
        return _item(row)

    @app.put("/items/{item_id}", response_model=Item, tags=["items"], dependencies=[Depends(require_json)])
    async def replace_item(item_id: UUID, body: ItemIn, request: Request, response: Response,
                           if_match: Annotated[str | None, Header()] = None) -> Item:
        """Replace every field of an item. With If-Match, 412 unless the version matches."""
        return await _update(request, response, item_id, body.model_dump(), if_match)

    @app.patch("/items/{item_id}", response_model=Item, tags=["items"], dependencies=[Depends(require_json)])
    async def patch_item(item_id: UUID, body: ItemPatch, request: Request, response: Response,
                         if_match: Annotated[str | None, Header()] = None) -> Item:
        """Change the given fields only (JSON merge patch without nulls)."""
        return await _update(request, response, item_id, body.model_dump(exclude_unset=True), if_match)

    @app.delete("/items/{item_id}", status_code=204, tags=["items"])
    async def delete_item(item_id: UUID, request: Request,
                          if_match: Annotated[str | None, Header()] = None) -> Response:
        """Delete an item. With If-Match, 412 unless the version matches."""
        version = _if_match_version(if_match)
        async with _pool(request).acquire() as conn:
            deleted = await conn.fetchval(
                "DELETE FROM items WHERE id = $1 AND ($2::int IS NULL OR version = $2) RETURNING id",
                item_id, version)
            if deleted is None:
                raise await _missing_or_conflict(conn, item_id)
        return Response(status_code=204)

    return app


async def _update(request: Request, response: Response, item_id: UUID, fields: dict[str, Any],
                  if_match: str | None) -> Item:
    version = _if_match_version(if_match)
    sets = [f"{column} = ${i}" for i, column in enumerate(fields, start=3)]  # column names come from the model
    sets += ["version = version + 1", "updated_at = now()"] if fields else []
    async with _pool(request).acquire() as conn:
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
