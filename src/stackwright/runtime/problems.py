"""RFC 9457 problem+json: every error a service returns has this shape, and bad input is never a 500."""

from __future__ import annotations

import http
import json
import logging
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

log = logging.getLogger("stackwright.runtime")

PROBLEM_JSON = "application/problem+json"

# RFC 9110's names where Python's HTTPStatus still has the older ones (3.11/3.12: "Request Entity Too Large",
# "Unprocessable Entity", "Requested Range Not Satisfiable"), so a title does not depend on the interpreter.
_TITLES = {
    413: "Content Too Large", 416: "Range Not Satisfiable", 422: "Unprocessable Content",
}


def status_title(status: int) -> str:
    """The title of a problem with this status: its reason phrase (``412`` -> ``Precondition Failed``).

    Every status gets its own phrase, so no answer reads just "Error"; a code HTTP does not define (a
    service's own ``599``) gets its class (``Server Error``, ``Client Error``)."""
    if status in _TITLES:
        return _TITLES[status]
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return {4: "Client Error", 5: "Server Error"}.get(status // 100, "Error")


def _is_phrase(detail: str, status: int) -> bool:
    """True when ``detail`` only repeats the status's phrase (Starlette's default detail), which the title
    already says: either spelling, ours or Python's."""
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = None
    return detail in (status_title(status), phrase)


# The OpenAPI shape of every error body (inline, so it needs no component registered anywhere).
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details",
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object", "properties": {
            "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
            "msg": {"type": "string"}, "type": {"type": "string"}}}},
    },
    "additionalProperties": True,
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries declaring problem+json bodies for these status codes."""
    return {status: {"description": status_title(status),
                     "content": {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}}} for status in statuses}


class Problem(Exception):
    """Raise from a handler to answer with a problem+json body."""

    def __init__(self, status: int, detail: str = "", *, title: str | None = None, type: str = "about:blank",
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail or title or status_title(status))
        self.status = status
        self.detail = detail
        self.title = title or status_title(status)
        self.type = type
        self.headers = headers or {}
        self.extra = extra


def problem_body(status: int, detail: str = "", *, title: str | None = None, type: str = "about:blank",
                 instance: str | None = None, **extra: Any) -> dict[str, Any]:
    """The JSON object of a problem answer."""
    body: dict[str, Any] = {"type": type, "title": title or status_title(status), "status": status}
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    body.update(extra)
    return body


def problem_response(status: int, detail: str = "", *, title: str | None = None, type: str = "about:blank",
                     instance: str | None = None, headers: dict[str, str] | None = None,
                     **extra: Any) -> JSONResponse:
    """Build a problem+json response."""
    body = problem_body(status, detail, title=title, type=type, instance=instance, **extra)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def validation_problem(errors: Iterable[dict[str, Any]]) -> Problem:
    """The answer to input that failed validation: 400 when the body is not JSON at all, else 422."""
    cleaned = [_clean(e) for e in errors]
    # A body that is not JSON at all is a syntax problem (400), not a semantic one (422).
    if any(e.get("type") == "json_invalid" for e in cleaned):
        return Problem(400, "request body is not valid JSON", errors=cleaned)
    return Problem(422, "request failed validation", errors=cleaned)


def problem_bytes(status: int, detail: str = "", **extra: Any) -> bytes:
    """The body of a problem response as bytes, for raw ASGI code (gateway, body limits)."""
    return json.dumps(problem_body(status, detail, **extra)).encode()


def install_problem_handlers(app: FastAPI) -> None:
    """Make every error path of a FastAPI app answer problem+json."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.detail, title=exc.title, type=exc.type,
                                instance=request.url.path, headers=exc.headers, **exc.extra)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        if _is_phrase(detail, exc.status_code):
            detail = ""
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            # Starlette's Allow names the methods of the first route matching the path only (POST /items when
            # GET /items is a separate route); RFC 9110 wants every method the path accepts.
            headers = {k: v for k, v in headers.items() if k.lower() != "allow"}
            headers["Allow"] = ", ".join(allowed_methods(request.app, request.url.path))
        return problem_response(exc.status_code, detail, instance=request.url.path, headers=headers or None)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return await _problem(request, validation_problem(exc.errors()))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        if dependency_unavailable(exc):
            # A database or cache that is down (restarting) is the server's temporary state, not a bug.
            log.warning("dependency unavailable on %s %s: %r", request.method, request.url.path, exc)
            return problem_response(503, "a backing service is unavailable; please retry",
                                    instance=request.url.path, headers={"Retry-After": "1"})
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(500, "unexpected error; it has been logged", instance=request.url.path)


def allowed_methods(app: Any, path: str) -> list[str]:
    """Every method the routes of ``app`` accept on ``path`` (HEAD wherever GET is), sorted."""
    methods: set[str] = set()
    for route in getattr(app, "routes", ()):
        regex, accepted = getattr(route, "path_regex", None), getattr(route, "methods", None)
        if regex is not None and accepted and regex.match(path):
            methods |= set(accepted)
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def dependency_unavailable(exc: BaseException) -> bool:
    """True for errors that mean a backing service (Postgres, Redis, a peer) cannot be reached right now."""
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    try:
        import redis.exceptions as rx

        if isinstance(exc, rx.ConnectionError | rx.TimeoutError):
            return True
    except ImportError:  # pragma: no cover - redis is a dependency
        pass
    try:
        import asyncpg

        if isinstance(exc, asyncpg.PostgresConnectionError | asyncpg.exceptions.OperatorInterventionError
                      | asyncpg.exceptions.TooManyConnectionsError):
            return True
        # A network operation that failed on a connection leaves its protocol waiting for the server's sync
        # point; if the pool hands it out again before the broken socket is noticed as closed, the next
        # statement fails so (seen when Postgres is killed). The server went away: not a bug of the request.
        if isinstance(exc, asyncpg.exceptions.InternalClientError) and "another operation" in str(exc):
            return True
    except ImportError:  # pragma: no cover - asyncpg is a dependency
        pass
    return False


def _clean(error: dict[str, Any]) -> dict[str, Any]:
    out = {"loc": list(error.get("loc", ())), "msg": str(error.get("msg", "")), "type": error.get("type", "")}
    return out
