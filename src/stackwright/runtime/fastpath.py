"""Fast routes: a service's hottest endpoints served as plain ASGI, ahead of FastAPI's machinery.

FastAPI resolves dependencies, re-encodes responses and runs a stack of middleware for every request;
profiling the vote service showed that machinery costing more than the vote itself. A fast route is
declared once (``@svc.fast_route(...)``) and gives two things:

- the request path served by :class:`FastRouter`: the same checks in the same order as FastAPI
  (body size, token and roles, declared headers, JSON body against its model), the same problem+json
  answers, the same Prometheus metrics, with nothing per request that the route does not need;
- a FastAPI route with an equivalent signature, so the OpenAPI document (and schemathesis, which tests
  the served path against it) describes the route exactly like any other.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

import orjson
from fastapi import Depends, Header, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from starlette.types import Receive, Scope, Send

from ..contract import EDGE_PROOF_HEADER
from .auth import Principal
from .metrics import RouteMetrics
from .problems import PROBLEM_JSON, Problem, dependency_unavailable, problem_body, validation_problem

if TYPE_CHECKING:
    from .service import Service

log = logging.getLogger("stackwright.runtime")

_PARAM = re.compile(r"{([A-Za-z_][A-Za-z0-9_]*)}")
_JSON = b"application/json"
_PROOF = EDGE_PROOF_HEADER.encode()


@dataclass
class Reply:
    """A handler's answer when the route's default status or headers are not enough."""

    body: Any
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FastRequest:
    """What a fast handler gets: path parameters, the validated body, the caller and declared headers."""

    path_params: dict[str, str]
    body: Any = None
    principal: Principal | None = None
    headers: dict[str, str] = field(default_factory=dict)
    authorization: str | None = None  # the caller's Authorization header, for a handler that calls on with it

    def header(self, name: str) -> str | None:
        """A header declared on the route (lower-case name), or None when absent."""
        return self.headers.get(name)


Handler = Callable[[FastRequest], Awaitable[Any]]


class _Invalid(Exception):
    def __init__(self, *errors: dict[str, Any]) -> None:
        self.errors = errors


@dataclass
class FastRoute:
    """One route: its template, what it checks, and its handler."""

    method: str
    path: str
    handler: Handler
    status_code: int = 200
    body: type[BaseModel] | None = None
    auth: bool = False
    roles: tuple[str, ...] = ()
    # lower-case name -> max length (optional header), or a fastapi Header(...) with its constraints
    headers: dict[str, int | FieldInfo] = field(default_factory=dict)
    regex: re.Pattern[str] = field(init=False)
    _header_checks: dict[str, TypeAdapter[str]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        pattern, last = "", 0
        for m in _PARAM.finditer(self.path):
            pattern += re.escape(self.path[last:m.start()]) + f"(?P<{m.group(1)}>[^/]+)"
            last = m.end()
        self.regex = re.compile(pattern + re.escape(self.path[last:]) + r"\Z")
        self.auth = self.auth or bool(self.roles)
        self._header_checks = {n: TypeAdapter(Annotated[str, spec]) for n, spec in self.headers.items()
                               if isinstance(spec, FieldInfo)}

    def check_headers(self, declared: dict[str, str]) -> None:
        """Validate the declared headers as FastAPI would (422 with ``loc`` ["header", name])."""
        for n, spec in self.headers.items():
            value = declared.get(n)
            if isinstance(spec, int):
                if value is not None and len(value) > spec:
                    raise _Invalid({"type": "string_too_long", "loc": ("header", n),
                                    "msg": f"String should have at most {spec} characters"})
            elif value is None:
                if spec.is_required():
                    raise _Invalid({"type": "missing", "loc": ("header", spec.alias or n), "msg": "Field required"})
            else:
                try:
                    self._header_checks[n].validate_python(value)
                except ValidationError as exc:
                    raise _Invalid(*({**e, "loc": ("header", spec.alias or n)}
                                     for e in exc.errors(include_url=False))) from None


class FastRouter:
    """Matches requests against the fast routes and serves them (see the module docstring)."""

    def __init__(self, service: Service, max_body_bytes: int) -> None:
        self.service = service
        self.max_body_bytes = max_body_bytes
        self._routes: dict[str, list[FastRoute]] = {}
        self._metrics = RouteMetrics(service.name)

    def __bool__(self) -> bool:
        return bool(self._routes)

    def add(self, route: FastRoute) -> None:
        self._routes.setdefault(route.method, []).append(route)

    def match(self, method: str, path: str) -> tuple[FastRoute, dict[str, str]] | None:
        """The route and path parameters for a request, or None to let FastAPI answer it."""
        for route in self._routes.get(method, ()):
            m = route.regex.match(path)
            if m:
                return route, m.groupdict()
        return None

    async def serve(self, route: FastRoute, params: dict[str, str], scope: Scope, receive: Receive,
                    send: Send) -> None:
        """Answer one request on ``route`` (never raises for bad input: every error is problem+json)."""
        start = time.perf_counter()
        in_progress = self._metrics.in_progress(route.method)
        in_progress.inc()
        status = 500
        try:
            try:
                fault = self.service.fault  # set only in canary rehearsals (runtime.faults)
                if fault is not None and await fault.before_request():
                    raise Problem(500, f"injected fault ({fault.describe()})")
                reply = await self._run(route, params, scope, receive)
            except _Disconnected:
                status = 499  # what nginx logs for a client that left; nothing is sent
                return
            except Exception as exc:
                reply = _problem_reply(_as_problem(exc, scope), scope["path"])
            status = reply.status or route.status_code
            body = reply.body if isinstance(reply.body, bytes) else orjson.dumps(reply.body)
            headers = [(b"content-length", str(len(body)).encode())]
            if not any(k.lower() == "content-type" for k in reply.headers):
                headers.append((b"content-type", _JSON))
            headers += [(k.lower().encode(), v.encode()) for k, v in reply.headers.items()]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        finally:
            count, duration = self._metrics.children(route.method, route.path, status)
            count.inc()
            duration.observe(time.perf_counter() - start)
            in_progress.dec()

    async def _run(self, route: FastRoute, params: dict[str, str], scope: Scope, receive: Receive) -> Reply:
        wanted = route.headers
        authorization = content_type = content_length = proof = None
        declared: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            if raw_name == b"authorization":
                authorization = raw_value.decode("latin-1")
            elif raw_name == b"content-type":
                content_type = raw_value.decode("latin-1")
            elif raw_name == b"content-length":
                content_length = raw_value
            elif raw_name == _PROOF:
                proof = raw_value.decode("latin-1")
            elif wanted:
                n = raw_name.decode("latin-1")
                if n in wanted:
                    declared[n] = raw_value.decode("latin-1")
        # Same order as the FastAPI stack: body size (outermost middleware), token, headers, body.
        if content_length is not None:
            try:
                too_big = int(content_length) > self.max_body_bytes
            except ValueError:
                raise Problem(400, "invalid Content-Length header") from None
            if too_big:
                raise Problem(413, f"request body exceeds {self.max_body_bytes} bytes")
        who = (await self.service.authenticate(authorization, route.roles, proof=proof, method=scope["method"],
                                               path=scope.get("raw_path") or scope["path"].encode())
               if route.auth else None)
        route.check_headers(declared)
        body = None
        if route.body is not None:
            body = self._validate(route.body, await self._read_body(receive), content_type)
        result = await route.handler(FastRequest(params, body, who, declared, authorization))
        return result if isinstance(result, Reply) else Reply(result)

    async def _read_body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise Problem(413, f"request body exceeds {self.max_body_bytes} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    @staticmethod
    def _validate(model: type[BaseModel], raw: bytes, content_type: str | None) -> BaseModel:
        if not raw:
            raise _Invalid({"type": "missing", "loc": ("body",), "msg": "Field required"})
        ctype = (content_type or "application/json").split(";", 1)[0].strip().lower()
        if ctype != "application/json" and not ctype.endswith("+json"):
            raise _Invalid({"type": "model_attributes_type", "loc": ("body",),
                            "msg": "Input should be a valid dictionary or object to extract fields from"})
        try:
            return model.model_validate_json(raw)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
        if errors and errors[0]["type"] == "json_invalid":
            # Where FastAPI puts it: the offset of the syntax error (json's, which pydantic does not report).
            try:
                json.loads(raw)
                offset = 0
            except (ValueError, RecursionError) as syntax:  # deep nesting exhausts json's recursion
                offset = getattr(syntax, "pos", 0)
            raise _Invalid({**errors[0], "loc": ("body", offset)})
        raise _Invalid(*({**e, "loc": ("body", *e["loc"])} for e in errors))


class _Disconnected(Exception):
    pass


def _as_problem(exc: Exception, scope: Scope) -> Problem:
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, _Invalid):
        return validation_problem(exc.errors)
    if dependency_unavailable(exc):
        log.warning("dependency unavailable on %s %s: %r", scope["method"], scope["path"], exc)
        return Problem(503, "a backing service is unavailable; please retry", headers={"Retry-After": "1"})
    log.exception("unhandled error on %s %s", scope["method"], scope["path"], exc_info=exc)
    return Problem(500, "unexpected error; it has been logged")


def _problem_reply(p: Problem, path: str) -> Reply:
    body = problem_body(p.status, p.detail, title=p.title, type=p.type, instance=path, **p.extra)
    return Reply(orjson.dumps(body), p.status, {"content-type": PROBLEM_JSON, **p.headers})


def documented_endpoint(service: Service, route: FastRoute) -> Callable[..., Awaitable[JSONResponse]]:
    """A FastAPI endpoint equivalent to ``route``: its signature is what the OpenAPI document shows."""
    params = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[str, PathParam()])
              for name in _PARAM.findall(route.path)]
    header_args: dict[str, str] = {}
    for i, (name, spec) in enumerate(route.headers.items()):
        arg = f"header_{i}"
        header_args[arg] = name
        if isinstance(spec, FieldInfo):
            params.append(inspect.Parameter(arg, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[str, spec],
                                            **({} if spec.is_required() else {"default": None})))
            continue
        params.append(inspect.Parameter(arg, inspect.Parameter.KEYWORD_ONLY, default=None,
                                        annotation=Annotated[str | None, Header(alias=name, max_length=spec)]))
    if route.body is not None:
        params.append(inspect.Parameter("body", inspect.Parameter.KEYWORD_ONLY, annotation=route.body))
    if route.auth:
        params.append(inspect.Parameter("principal", inspect.Parameter.KEYWORD_ONLY, annotation=Principal,
                                        default=Depends(service.principal(*route.roles))))

    params.append(inspect.Parameter("request", inspect.Parameter.KEYWORD_ONLY, annotation=Request))

    async def endpoint(**kwargs: Any) -> JSONResponse:
        headers = {name: kwargs[arg] for arg, name in header_args.items() if kwargs[arg] is not None}
        path_params = {name: kwargs[name] for name in _PARAM.findall(route.path)}
        result = await route.handler(FastRequest(path_params, kwargs.get("body"), kwargs.get("principal"), headers,
                                                 kwargs["request"].headers.get("authorization")))
        reply = result if isinstance(result, Reply) else Reply(result)
        return JSONResponse(reply.body, status_code=reply.status or route.status_code, headers=reply.headers)

    endpoint.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    endpoint.__name__ = route.handler.__name__
    endpoint.__doc__ = route.handler.__doc__
    return endpoint
