"""The local edge: what ALB + API Gateway + WAF do in production, on one port.

Path routing to service replicas (round robin) by the rules of :mod:`stackwright.deploy.routes`, the same
ones the ALB Ingress is rendered from (internal endpoints answered 404, the health check 200, a wrong
method 405, all by the edge itself), the ALB's request-line and header limits (400), JWT validation and
role checks for routes that need them, per-client rate limits (429 + Retry-After), body size limits,
WebSocket proxying for ``websocket: true`` routes (:mod:`.ws_proxy`), and the dev identity provider. Every
error it produces is problem+json. Bodies stream both ways as through the ALB: a request body that did not come
complete in the first message and is over ``BUFFER_UP_TO`` goes to the upstream as it arrives (with backpressure),
a response not complete in the first read and over ``BUFFER_UP_TO`` (or of unknown length) goes to the client as
it arrives; small ones are buffered and sent in one write, the cheap path that most API calls take.
The gateway's own health and metrics are on a second, local-only port (``admin_port``:
``/healthz``, ``/metrics``), which production does not have. Not applied locally: the WAF's rules
(:func:`stackwright.deploy.routes.production_only`).
Run as ``python -m stackwright.local.gateway CONFIG.json``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.types import Message, Receive, Scope, Send

from ..contract import EDGE_PROOF_HEADER
from ..deploy.routes import ALB_LIMITS, AlbLimits, table_from_dict
from ..runtime.auth import AuthError, EdgeProof, JWTVerifier, Principal, bearer_token
from ..runtime.metrics import REQUESTS, UNMATCHED, MetricsMiddleware, metrics_endpoint
from ..runtime.problems import PROBLEM_JSON, problem_bytes
from .idp import DevIdP
from .ratelimit import TokenBuckets, retry_after_header
from .routing import EdgeRoute
from .traffic_split import TrafficSplit, admin_routes
from .upstream import UpstreamPool, UpstreamResponse
from .ws_proxy import proxy_websocket, refuse, split_access_token

log = logging.getLogger("stackwright.gateway")

HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
                        b"trailers", b"transfer-encoding", b"upgrade", b"host", b"content-length"})
# Not passed on from the client: the gateway sets its own (a client's own edge proof is dropped, never checked).
_PROOF = EDGE_PROOF_HEADER.encode()
_FORWARDED = HOP_BY_HOP | {b"x-forwarded-for", b"x-forwarded-proto", _PROOF}
# Not passed on from the upstream: the server the gateway runs in (uvicorn) writes its own Date (and Server,
# unless turned off) on every response, so the upstream's copies went out as a second date: / server: header.
_SERVER_SET = frozenset({b"date", b"server"})
_NOT_RETURNED = HOP_BY_HOP | _SERVER_SET
BUFFER_UP_TO = 65536  # bytes: bodies up to this size (when known) are read whole and sent in one write


class Gateway:
    """The edge as an ASGI app, configured from the JSON the runner writes."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.table = table_from_dict(config)
        self.limits_alb: AlbLimits = ALB_LIMITS
        # Round robin over each service's replicas, plus a canary's weighted share during `stackwright rollout`.
        self.upstreams = TrafficSplit(config["upstreams"])
        self.max_body = int(config.get("max_body", 1048576))
        self.limits = {name: TokenBuckets(v["requests_per_second"], v["burst"]) for name, v in
                       config.get("rate_limits", {}).items()}
        self.limit_keys = {name: v.get("key", "sub") for name, v in config.get("rate_limits", {}).items()}
        self.default_limit = config.get("default_rate_limit")
        ident = config.get("identity")
        self.idp: DevIdP | None = None
        self.verifier: JWTVerifier | None = None
        idp_app = None
        if ident:
            self.idp = DevIdP(Path(config["idp_key_file"]), issuer=ident["issuer"], audience=ident["audience"],
                              roles_claim=ident.get("roles_claim", "roles"))
            self.verifier = JWTVerifier(jwks_url=config["jwks_url"], issuer=ident["issuer"],
                                        audience=ident["audience"], algorithms=ident.get("algorithms"),
                                        roles_claim=ident.get("roles_claim", "roles"))
            # The keys are the dev IdP's own: held from the start, so the first token is not kept waiting for a
            # request this process cannot answer before it serves.
            self.verifier.jwks.load(self.idp.jwks)
            idp_app = Starlette(routes=self.idp.routes(ident.get("mount", "/auth")))
            self.idp_prefix = ident.get("mount", "/auth").rstrip("/")
        self.idp_app = idp_app
        # Services given the same per-run secret trust this proof instead of verifying the token again.
        secret = config.get("edge_proof_secret")
        self.edge_proof: EdgeProof | None = EdgeProof(secret) if secret else None
        # Our own keep-alive client rather than httpx (httpcore's pool bookkeeping is quadratic in concurrent
        # requests) or aiohttp (100-150 µs of client CPU per proxied POST, against 25-40 µs for UpstreamPool).
        self.pool = UpstreamPool(timeout=30, connect_timeout=2, max_connections=500)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        too_large = _over_limits(scope, self.limits_alb)
        if too_large:
            await _reply(send, self.limits_alb.status, too_large)
            return
        path: str = scope["path"]
        if self.idp_app is not None and (path.startswith(self.idp_prefix + "/dev/")
                                         or path.startswith(self.idp_prefix + "/.well-known/")):
            await self.idp_app(scope, receive, send)
            return
        outcome = self.table.match(scope["method"], _raw_path(scope), _host(scope))
        route = outcome.route
        if route is None:
            if outcome.status == 200:  # the health check the edge answers itself
                await _json(send, 200, {"status": "ok"})
            elif outcome.status == 405:
                await _reply(send, 405, f"method {scope['method']} is not allowed here",
                             [(b"allow", ", ".join(outcome.allow).encode("latin-1"))])
            else:
                await _reply(send, outcome.status or 404, "no route for this path")
            return
        scope["route"] = route  # request metrics label by the route template, as in the services
        headers = dict(scope["headers"])
        authorization = _str(headers.get(b"authorization"))
        try:
            principal = await self._admit(route, scope, headers, authorization)
        except _Refused as refused:
            await _reply(send, refused.status, refused.detail, refused.headers)
            return
        proof = None
        if principal is not None and self.edge_proof is not None:
            proof = self.edge_proof.sign(scope["method"], scope["raw_path"], bearer_token(authorization))
        max_body = route.max_body or self.max_body
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit():
                await _reply(send, 400, "invalid Content-Length header")
                return
            if int(length) > max_body:
                await _reply(send, 413, f"request body exceeds {max_body} bytes")
                return
        first: Message = await receive()
        if first["type"] == "http.disconnect":
            return
        chunk: bytes = first.get("body", b"")
        if first.get("more_body") and (length is None or int(length) > BUFFER_UP_TO):
            # A large or chunked body streams: counted against max_body as it goes (see _request_body).
            if len(chunk) > max_body:
                await _reply(send, 413, f"request body exceeds {max_body} bytes")
                return
            stream = _request_body(receive, chunk, max_body)
            try:
                await self._proxy(scope, receive, send, route, b"", proof, stream,
                                  int(length) if length is not None else None)
            finally:
                await stream.aclose()
            return
        try:
            body = await _read_body(receive, max_body, chunk, bool(first.get("more_body")))
        except _ClientGone:  # a cut-off body must not reach the service as if it were the whole request
            return
        if body is None:
            await _reply(send, 413, f"request body exceeds {max_body} bytes")
            return
        await self._proxy(scope, receive, send, route, body, proof)

    async def _admit(self, route: EdgeRoute, scope: Scope, headers: dict[bytes, bytes],
                     authorization: str | None) -> Principal | None:
        """Token, roles and rate limit checks shared by HTTP and WebSocket; raises _Refused."""
        principal: Principal | None = None
        if route.auth == "required" and not route.passes_through(_credential(authorization)):
            try:
                assert self.verifier is not None
                principal = await self.verifier.verify(bearer_token(authorization))
            except AuthError as exc:
                raise _Refused(401, str(exc), [(b"www-authenticate", b'Bearer error="invalid_token"')]) from exc
            if route.roles and not principal.has_roles(route.roles):
                raise _Refused(403, f"requires role(s): {', '.join(route.roles)}")
        limit_name = route.rate_limit or self.default_limit
        if limit_name:
            key_kind = self.limit_keys[limit_name]
            client = scope.get("client") or ("unknown", 0)
            key = principal.sub if (key_kind == "sub" and principal) else _client_ip(headers, client[0])
            wait = self.limits[limit_name].take(key)
            if wait > 0:
                raise _Refused(429, f"rate limit '{limit_name}' exceeded",
                               [(b"retry-after", retry_after_header(wait).encode())])
        return principal

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Admit a WebSocket like an HTTP GET, then proxy it (see ws_proxy); refusals are 403 handshakes."""
        if (await receive())["type"] != "websocket.connect":
            return
        too_large = _over_limits(scope, self.limits_alb)
        if too_large:
            # The ALB answers such a handshake 400, as any request; with the server's denial-response
            # extension the gateway does too, else it can only close before accept (a 403).
            if "websocket.http.response" in (scope.get("extensions") or {}):
                body = problem_bytes(self.limits_alb.status, too_large)
                await send({"type": "websocket.http.response.start", "status": self.limits_alb.status,
                            "headers": [(b"content-type", PROBLEM_JSON.encode()),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "websocket.http.response.body", "body": body})
                _count_websocket(None, self.limits_alb.status)
            else:
                await refuse(send, 1009)
                _count_websocket(None, 403)
            return
        route = self.table.match("GET", _raw_path(scope), _host(scope)).route  # the handshake is a GET
        if route is None or not route.websocket:
            await refuse(send, 1008)  # policy violation: not a WebSocket route
            _count_websocket(None, 403)
            return
        scope["route"] = route  # ws_proxy applies the route's connection limit and idle timeout
        headers = dict(scope["headers"])
        authorization = _str(headers.get(b"authorization"))
        if authorization is None:
            token, _ = split_access_token(scope.get("query_string", b""))
            authorization = f"Bearer {token}" if token else None
        try:
            await self._admit(route, scope, headers, authorization)
        except _Refused as refused:
            # The close code is not visible to the client (it sees the 403), only to our logs and tests.
            await refuse(send, 1013 if refused.status == 429 else 1008)
            _count_websocket(route, 403)
            return
        accepted = await proxy_websocket(scope, receive, send, self.upstreams.pick(route.service), authorization)
        if not accepted:
            log.warning("upstream %s refused or did not answer a WebSocket handshake", route.service)
        _count_websocket(route, 101 if accepted else 403)

    async def _proxy(self, scope: Scope, receive: Receive, send: Send, route: EdgeRoute, body: bytes,
                     proof: str | None = None, stream: AsyncIterator[bytes] | None = None,
                     length: int | None = None) -> None:
        """Forward one request and its answer. ``body`` goes in one write with the head unless ``stream`` is
        given: then the body comes from it (``length`` bytes, or chunked when None), never retried.

        A streamed body over the route's limit is answered 413 and the upstream exchange aborted: the client's
        response never starts before the whole request body has been forwarded (or the upstream has answered
        early), so the 413 can always be sent. A client that leaves mid-upload aborts the exchange too."""
        origin = self.upstreams.pick(route.service)
        target = scope["raw_path"]
        if scope.get("query_string"):
            target += b"?" + scope["query_string"]
        out_headers = [(k, v) for k, v in scope["headers"] if k not in _FORWARDED]
        out_headers.append((b"x-forwarded-for", (scope.get("client") or ("unknown", 0))[0].encode("latin-1")))
        out_headers.append((b"x-forwarded-proto", b"http"))
        if proof is not None:
            out_headers.append((_PROOF, proof.encode("latin-1")))
        try:
            if stream is None:
                response = await self.pool.request(scope["method"], origin, target, out_headers, body)
            else:
                response = await self.pool.stream_request(scope["method"], origin, target, out_headers, stream,
                                                          length)
        except _BodyTooLarge as exc:
            await _reply(send, 413, f"request body exceeds {exc.limit} bytes")
            return
        except _ClientGone:
            return
        except TimeoutError:
            await _reply(send, 504, f"{route.service} did not answer in time")
            return
        except ConnectionError:
            await _reply(send, 502, f"{route.service} is unavailable")
            return
        started = False
        try:
            resp_headers = [(k, v) for k, v in response.headers if k not in _NOT_RETURNED]
            streaming = any(k == b"content-type" and v.startswith(b"text/event-stream") for k, v in response.headers)
            declared = _content_length(response.headers)
            if scope["method"] == "HEAD":  # no body, but the length of the one a GET would get
                await response.read()
                if declared is not None:
                    resp_headers.append((b"content-length", str(declared).encode()))
                started = True
                await send({"type": "http.response.start", "status": response.status, "headers": resp_headers})
                await send({"type": "http.response.body", "body": b""})
                return
            if not streaming and (response.complete or (declared is not None and declared <= BUFFER_UP_TO)):
                content = await response.read()
                resp_headers.append((b"content-length", str(len(content)).encode()))
                started = True
                await send({"type": "http.response.start", "status": response.status, "headers": resp_headers})
                await send({"type": "http.response.body", "body": content})
                return
            if declared is not None:  # else uvicorn sends it chunked
                resp_headers.append((b"content-length", str(declared).encode()))
            started = True
            await send({"type": "http.response.start", "status": response.status, "headers": resp_headers})
            # uvicorn's send() is a no-op once the client has gone, so an endless event stream (or a large
            # download) would keep its upstream connection: watch for the disconnect and drop the upstream
            # response then. Flow control both ways: send() waits while the client's socket buffer is full, and
            # the upstream connection stops reading once 1 MiB is buffered (upstream._PAUSE_AT).
            watcher = asyncio.create_task(_release_on_disconnect(receive, response))
            try:
                async for chunk in response.iter_chunks():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            finally:
                watcher.cancel()
            await send({"type": "http.response.body", "body": b""})
        except OSError:  # UpstreamUnavailable (a ConnectionError) or TimeoutError
            log.warning("upstream %s broke off a response", route.service)
            if not started:
                await _reply(send, 502, f"{route.service} broke off its response")
        finally:
            response.release()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.pool.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


class _Refused(Exception):
    """A request the edge turns away: status, detail and extra headers of the problem response."""

    def __init__(self, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers or []


def _count_websocket(route: EdgeRoute | None, status: int) -> None:
    # MetricsMiddleware passes WebSocket scopes straight through; a session counts once here (101 accepted,
    # counted when it ends, as HTTP requests are; 403 refused). Not in the duration histogram: a session that
    # lasts an hour would distort the request latencies.
    REQUESTS.labels("edge", "GET", route.pattern if route else UNMATCHED, str(status)).inc()


async def _release_on_disconnect(receive: Receive, response: UpstreamResponse) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    response.release()  # ends the proxy's iter_chunks()


class _BodyTooLarge(Exception):
    """A streamed request body passed the route's limit (``limit`` bytes)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds {limit} bytes")
        self.limit = limit


class _ClientGone(Exception):
    """The client disconnected before its request body was complete."""


async def _request_body(receive: Receive, first: bytes, limit: int) -> AsyncGenerator[bytes, None]:
    """The request body as it arrives: ``first`` (the first message's bytes), then each message's.

    Raises ``_BodyTooLarge`` once more than ``limit`` bytes came, ``_ClientGone`` on a disconnect. uvicorn stops
    reading the client's socket while it holds unread body bytes, so the client is slowed down with us."""
    size = len(first)
    yield first
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge(limit)
        yield chunk
        if not message.get("more_body"):
            return


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def _read_body(receive: Receive, limit: int, first: bytes = b"", more: bool = True) -> bytes | None:
    """The whole request body (``first`` plus the following messages if ``more``), or None past ``limit``;
    raises :class:`_ClientGone` when the client disconnects before the body is complete."""
    if len(first) > limit:
        return None
    if not more:
        return first
    chunks: list[bytes] = [first]
    size = len(first)
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def _raw_path(scope: Scope) -> str:
    """The path as the client sent it (percent-encoding kept): what the ALB's path patterns compare with."""
    raw = scope.get("raw_path")
    if raw is None:
        return str(scope["path"])
    return raw.split(b"?", 1)[0].decode("latin-1")


def _host(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"host":
            return value.decode("latin-1")
    return None


def _over_limits(scope: Scope, limits: AlbLimits) -> str | None:
    """Why the ALB would refuse this request with a 400 (request line, one header, all headers), or None.

    Sizes in bytes as :class:`~stackwright.deploy.routes.AlbLimits` counts them (its docstring has the
    source); the client's own header bytes only, before the gateway adds any.
    """
    target = len(scope.get("raw_path") or scope["path"].encode()) + (
        1 + len(scope["query_string"]) if scope.get("query_string") else 0)
    line = len(scope.get("method", "GET")) + 1 + target + 1 + len(f"HTTP/{scope.get('http_version', '1.1')}")
    if line > limits.request_line:
        return f"request line of {line} bytes exceeds the edge's limit of {limits.request_line}"
    total = 0
    for name, value in scope["headers"]:
        size = len(name) + 2 + len(value)
        if size > limits.single_header:
            return f"header {name.decode('latin-1')[:40]} of {size} bytes exceeds the edge's limit of " \
                   f"{limits.single_header}"
        total += size + 2
    if total > limits.total_headers:
        return f"request headers of {total} bytes exceed the edge's limit of {limits.total_headers}"
    return None


def _credential(authorization: str | None) -> str:
    """The value of a bearer ``Authorization`` header ("" for none or another scheme)."""
    scheme, _, value = (authorization or "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def _str(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value is not None else None


def _client_ip(headers: dict[bytes, bytes], peer: str) -> str:
    # Locally every client is 127.0.0.1; honour X-Forwarded-For so load tests can act as many clients.
    forwarded = headers.get(b"x-forwarded-for")
    return forwarded.split(b",")[0].strip().decode("latin-1") if forwarded else peer


async def _reply(send: Send, status: int, detail: str, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = problem_bytes(status, detail)
    headers = [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode()),
               *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _json(send: Send, status: int, data: Any) -> None:
    body = json.dumps(data).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def build_app(config: dict[str, Any]) -> Any:
    """The gateway wrapped in request metrics (labelled as service 'edge'). Every public request counts,
    /metrics and /readyz too: at the edge those are the internet's requests, answered by the edge."""
    return MetricsMiddleware(Gateway(config), app_name="edge", skip_paths=frozenset())


def build_admin_app(split: TrafficSplit | None = None) -> Starlette:
    """The gateway's local-only port: ``/healthz`` and ``/metrics`` (Prometheus text of this process), and,
    given the gateway's ``split``, the canary weights a rehearsal sets (:func:`.traffic_split.admin_routes`).

    Kept off the public port so that the public edge answers exactly what the ALB answers (production has
    no such paths); the runner, the dashboard and local Prometheus read it.
    """
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def healthz(_: Any) -> JSONResponse:
        # The event loop's package ("uvloop" or "asyncio"): what the edge runs on shows in its speed.
        loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
        return JSONResponse({"status": "ok", "event_loop": loop})

    routes = [Route("/healthz", healthz), Route("/metrics", metrics_endpoint())]
    return Starlette(routes=routes + (admin_routes(split) if split is not None else []))


def _servers(config: dict[str, Any]) -> tuple[Any, Any]:
    """The public server and, when the config has an ``admin_port``, the local-only admin server."""
    import uvicorn

    from ..runtime.http_protocol import LeanBodyHttpToolsProtocol

    app = build_app(config)
    # ws_per_message_deflate=False: an ALB never negotiates WebSocket compression (the extension is the
    # target's to accept), and uvicorn's default compressed every message to and from the client here: ~0.3 ms
    # of CPU per 6.4 kB audio frame on each end, for 25% fewer bytes on loopback.
    public = uvicorn.Server(uvicorn.Config(app, host=config.get("host", "127.0.0.1"), http=LeanBodyHttpToolsProtocol,
                                           port=int(config["port"]), log_level="warning", access_log=False,
                                           server_header=False, timeout_graceful_shutdown=5,
                                           ws_per_message_deflate=False))
    if not config.get("admin_port"):
        return public, None
    # Loopback only, whatever the public port binds to.
    split = app.app.upstreams  # the Gateway's (build_app wraps it in metrics): the admin port sets its canaries
    admin = uvicorn.Server(uvicorn.Config(build_admin_app(split), host="127.0.0.1", port=int(config["admin_port"]),
                                          log_level="warning", access_log=False, server_header=False,
                                          lifespan="off"))
    return public, admin


async def _serve(public: Any, admin: Any) -> None:
    if admin is None:
        await public.serve()
        return
    # The admin server's _serve() installs no signal handlers: the public server takes SIGINT/SIGTERM, and
    # the admin port closes when it has stopped.
    admin_task = asyncio.create_task(admin._serve())
    try:
        await public.serve()
    finally:
        admin.should_exit = True
        await admin_task


def main(argv: list[str] | None = None) -> None:
    """Serve the gateway described by a config file on its configured port (and ``admin_port``)."""
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        sys.exit("usage: python -m stackwright.local.gateway CONFIG.json")
    config = json.loads(Path(args[0]).read_text())
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    public, admin = _servers(config)
    # The loop uvicorn picks for itself (uvloop when installed, as for every service). asyncio.run() would
    # give the stdlib loop: py-spy showed its selector and Python-level transport writes taking a third of the
    # gateway's busy time on the vote path.
    with asyncio.Runner(loop_factory=public.config.get_loop_factory()) as runner:
        runner.run(_serve(public, admin))


if __name__ == "__main__":
    main()
