"""The service defaults every stackwright service is built on (health, readiness, metrics, errors,
auth, resources, background work, graceful shutdown): one place, like eShop's ServiceDefaults.

    svc = Service()                      # name and wiring from the environment
    db = svc.postgres("db")              # pool opened at startup, watched by stackwright_dependency_up
    app = svc.app                        # a FastAPI app with /healthz, /readyz, /metrics

    @svc.fast_route("POST", "/polls/{poll_id}/votes", status_code=202, body=NewVote, auth=True)
    async def cast_vote(req: FastRequest) -> dict: ...   # a hot endpoint, served ahead of FastAPI
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from ..contract import EDGE_PROOF_HEADER, PLATFORM_PATHS
from . import shutdown
from .auth import AuthError, EdgeProof, JWTVerifier, Principal, bearer_token
from .db import Database, TenantDatabases
from .fastpath import FastRoute, FastRouter, Handler, documented_endpoint
from .faults import FaultMiddleware, fault_from_env
from .limits import BodyLimitMiddleware
from .metrics import DEPENDENCY_UP, REPLICATION_LAG, MetricsMiddleware, metrics_endpoint
from .problems import Problem, install_problem_handlers, problem_response, problem_responses
from .settings import Settings
from .storage import ObjectStore, store_from_url

log = logging.getLogger("stackwright.runtime")

Check = Callable[[], Awaitable[Any]]

CHECK_TIMEOUT_S = 2.0


class ServiceApp(FastAPI):
    """FastAPI, except that requests on a fast route are served before FastAPI's middleware and routing,
    the platform's endpoints answer only their plain spelling, and a path that differs from a route only by
    a trailing slash is answered 404 (problem+json), never redirected.

    Starlette's slash redirect builds its ``Location`` from the Host and scheme the service sees. Behind the
    local gateway that is the service's own loopback port (following it bypasses the edge: no auth, no
    rate limit); on EKS it is the ALB's forwarded Host over plain ``http`` (the ALB ends TLS and the service
    trusts no forwarded scheme), a downgrade; and a 307 replays a DELETE or POST to that address. The spec's
    routes name exact paths, so there is nothing to redirect to that the client could not have asked for:
    both paths answer 404 the same way."""

    fast_routes: FastRouter

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["redirect_slashes"] = False
        super().__init__(*args, **kwargs)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] in PLATFORM_PATHS:
            raw = scope.get("raw_path")
            # Both edges (ALB and local gateway) block these paths as sent, byte for byte, and the server
            # decodes percent-escapes before routing: /%6detrics would pass the edge and be served as
            # /metrics. Kubelet and Prometheus never spell them encoded, so an encoded spelling is refused.
            if raw is not None and raw.split(b"?", 1)[0] != scope["path"].encode():
                await problem_response(404, "not found")(scope, receive, send)
                return
        if scope["type"] == "http" and self.fast_routes:
            hit = self.fast_routes.match(scope["method"], scope["path"])
            if hit is not None:
                await self.fast_routes.serve(hit[0], hit[1], scope, receive, send)
                return
        await super().__call__(scope, receive, send)


class Service:
    """A service's app plus the resources it uses, opened and closed with the app's lifespan."""

    def __init__(self, name: str | None = None, *, settings: Settings | None = None, title: str | None = None,
                 max_body_bytes: int | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.name = name or self.settings.service
        self._checks: dict[str, Check] = {}
        self._startup: list[Callable[[], Awaitable[Any]]] = []
        self._shutdown: list[Callable[[], Awaitable[Any]]] = []
        self._background: list[Callable[[], Awaitable[Any]]] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._verifier: JWTVerifier | None = None
        secret = self.settings.edge_proof_secret
        self.edge_proof: EdgeProof | None = EdgeProof(secret) if secret else None
        self._muxes: dict[str, Any] = {}
        self._started = False
        self._dependencies: dict[str, str] = {}
        self._check_interval_s = float(self.settings.get("DEPENDENCY_CHECK_INTERVAL_S", "5") or 5)
        limit = max_body_bytes or int(self.settings.get("MAX_BODY_BYTES", "1048576") or 1048576)
        # Errors any route can answer (bad JSON, body too large, validation, a dependency down) are declared
        # once here; routes add their own (401, 404, 409, ...) with ``responses=problem_responses(...)``.
        self.app = ServiceApp(title=title or self.name, lifespan=self._lifespan,
                              responses=problem_responses(400, 413, 422, 503))
        self.app.fast_routes = FastRouter(self, limit)
        install_problem_handlers(self.app)
        # Only canary rehearsals set it (runtime.faults); added first, so it acts inside the request metrics.
        self.fault = fault_from_env()
        if self.fault is not None:
            self.app.add_middleware(FaultMiddleware, fault=self.fault, spared=PLATFORM_PATHS)
        self.app.add_middleware(BodyLimitMiddleware, max_bytes=limit)
        self.app.add_middleware(MetricsMiddleware, app_name=self.name)
        self.app.add_api_route("/healthz", self._healthz, methods=["GET"], include_in_schema=False)
        self.app.add_api_route("/readyz", self._readyz, methods=["GET"], include_in_schema=False)
        self.app.add_route("/metrics", metrics_endpoint(), methods=["GET"], include_in_schema=False)

    # ------------------------------------------------------------ resources

    def postgres(self, resource: str, *, reads: bool = False) -> Database:
        """The pool of a Postgres resource (size from ``<R>_POOL_MIN``/``<R>_POOL_MAX``).

        ``reads=True``: a pool for reads only, on the region's replica (``<R>_READ_URL``, set in secondary
        regions; stale by the replication lag, writes refused) and on ``<R>_URL`` where there is none.
        """
        replica = self.settings.resource_setting(resource, "READ_URL") if reads else None
        url = replica or self.settings.resource_url(resource)
        db = Database(url,
                      min_size=int(self.settings.resource_setting(resource, "POOL_MIN", "2") or 2),
                      max_size=int(self.settings.resource_setting(resource, "POOL_MAX", "20") or 20))
        self._startup.append(db.open)
        self._shutdown.append(db.close)
        self._checks[resource] = db.check
        if replica:
            gauge = REPLICATION_LAG.labels(self.settings.system, resource, self.settings.region)

            async def check_replica() -> None:
                # The check also samples the replica's lag (a failing query fails the check, as db.check would).
                lag = await db.replica_lag()
                if lag is not None:
                    gauge.set(lag)

            self._checks[resource] = check_replica
        return db

    def tenant_databases(self, resource: str) -> TenantDatabases:
        """Per-tenant pools on a Postgres server whose admin URL is ``<R>_URL``, bounded by
        ``<R>_CONNECTION_BUDGET`` when the spec sets ``tenants.connection_budget``."""
        budget = self.settings.resource_setting(resource, "CONNECTION_BUDGET", "")
        dbs = TenantDatabases(self.settings.resource_url(resource),
                              min_size=int(self.settings.resource_setting(resource, "POOL_MIN", "2") or 2),
                              max_size=int(self.settings.resource_setting(resource, "POOL_MAX", "20") or 20),
                              budget=int(budget) if budget else None)
        self._shutdown.append(dbs.close)
        return dbs

    def topic(self, resource: str) -> Any:
        """The :class:`~stackwright.runtime.topic.Topic` of a topic resource: ``publish`` for every user,
        ``subscription()`` (its own consumer group, ``<R>_GROUP``) for a subscriber."""
        from .topic import Topic

        topic = Topic(self.settings.resource_url(resource),
                      self.settings.resource_setting(resource, "TOPIC", resource) or resource,
                      group=self.settings.resource_setting(resource, "GROUP"),
                      visibility_timeout=float(self.settings.get("TOPIC_VISIBILITY_TIMEOUT_S", "30") or 30))
        self._shutdown.append(topic.close)
        return topic

    def secret_store(self, resource: str) -> Any:
        """The writable :class:`~stackwright.runtime.secretstore.SecretStore` of a secret resource."""
        from .secretstore import SecretStore

        return SecretStore(self.settings.resource_url(resource))

    def redis(self, resource: str) -> Any:
        """A Redis client for a Redis resource: redis-py's API (decode_responses=True), with the common
        commands served on one multiplexed connection (see :mod:`stackwright.runtime.redis_client`)."""
        import redis.asyncio as aioredis

        from .redis_client import RedisClient, redis_py_options

        url = self.settings.resource_url(resource)
        # Retries ride out a Redis restart (~1 s): without them the first command on each pooled connection
        # after a restart fails ("Connection closed by server") and the request answers an error. A Redis that
        # stops answering fails a command after REDIS_TIMEOUT_S (a 503), never repeated. The pool
        # waits for a free connection in a burst, where redis-py's default pool fails at once with
        # MaxConnectionsError (seen as 503s at the top of the benchmark's vote search).
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=200, timeout=5, decode_responses=True, health_check_interval=10,
            **redis_py_options(self._redis_timeout_s, retries=5, backoff_cap_s=0.5))
        client = RedisClient(aioredis.Redis.from_pool(pool), self._multiplexed(url))

        async def check() -> None:
            await client.ping()

        self._checks[resource] = check
        self._shutdown.append(client.aclose)
        return client

    def queue(self, resource: str) -> Any:
        """The durable queue of a queue resource (Redis Streams locally, SQS on AWS); ``<R>_FIFO=true`` (set
        by the wiring for ``fifo: true`` queues) makes SQS sends carry a message group and deduplication id."""
        from .queue import queue_from_url

        name = self.settings.resource_setting(resource, "QUEUE", resource) or resource
        url = self.settings.resource_url(resource)
        q = queue_from_url(
            url, name, producer=self._multiplexed(url),
            max_receive_count=int(self.settings.resource_setting(resource, "MAX_RECEIVE", "5") or 5),
            visibility_timeout=float(self.settings.resource_setting(resource, "VISIBILITY_TIMEOUT", "30") or 30),
            fifo=(self.settings.resource_setting(resource, "FIFO", "") or "").lower() in ("1", "true", "yes"),
        )
        self._checks[resource] = q.depth
        self._shutdown.append(q.close)
        return q

    @property
    def _redis_timeout_s(self) -> float:
        """Seconds a command of ``svc.redis()`` (and a queue send) waits for Redis's reply before failing into a
        503: ``REDIS_TIMEOUT_S``, default :data:`~.redis_mux.COMMAND_TIMEOUT_S`."""
        from .redis_mux import COMMAND_TIMEOUT_S

        return float(self.settings.get("REDIS_TIMEOUT_S", "") or COMMAND_TIMEOUT_S)

    def _multiplexed(self, url: str) -> Any:
        """The process's one multiplexed connection to the Redis at ``url`` (None for other URLs), shared by
        the cache client and queue sends: one socket, so a loop tick's commands go out in one write."""
        from .redis_mux import MultiplexedRedis, supports

        if not supports(url):
            return None
        mux = self._muxes.get(url)
        if mux is None:
            mux = self._muxes[url] = MultiplexedRedis(url, command_timeout=self._redis_timeout_s)
            self._shutdown.insert(0, mux.aclose)  # shutdown runs in reverse: closed after its users
        return mux

    def store(self, resource: str) -> ObjectStore:
        """The object store of a bucket resource."""
        return store_from_url(self.settings.resource_url(resource))

    # ------------------------------------------------------------ auth

    @property
    def verifier(self) -> JWTVerifier:
        if self._verifier is None:
            s = self.settings
            if not (s.jwks_url and s.jwt_issuer and s.jwt_audience):
                raise RuntimeError("JWKS_URL, JWT_ISSUER and JWT_AUDIENCE must be set to verify tokens")
            self._verifier = JWTVerifier(jwks_url=s.jwks_url, issuer=s.jwt_issuer, audience=s.jwt_audience,
                                         algorithms=s.jwt_algorithms, roles_claim=s.jwt_roles_claim,
                                         cache_size=s.jwt_cache_size)
        return self._verifier

    async def authenticate(self, authorization: str | None, roles: tuple[str, ...] = (), *,
                           proof: str | None = None, method: str = "", path: bytes = b"") -> Principal:
        """The caller of an ``Authorization`` header value; Problem 401 without a valid token, 403 without roles.

        With an edge proof (header ``x-edge-proof``, see :class:`~.auth.EdgeProof`) for this ``method`` and
        raw ``path`` the token's signature is not verified again, its claims are; a proof that does not check
        out is a 401, never a fall-back to the token alone, and a service given no secret ignores proofs.
        Without a proof the token is verified in full, as a request that did not pass the edge must be.
        """
        try:
            token = bearer_token(authorization)
            if proof is not None and self.edge_proof is not None:
                self.edge_proof.check(proof, method, path, token)
                who = self.verifier.edge_verified(token)
            else:
                who = await self.verifier.verify(token)
        except AuthError as exc:
            raise Problem(401, str(exc), headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}) from None
        if roles and not who.has_roles(roles):
            raise Problem(403, f"requires role(s): {', '.join(roles)}")
        return who

    def principal(self, *roles: str) -> Callable[[Request], Awaitable[Principal]]:
        """A FastAPI dependency yielding the verified caller; 401 without a valid token, 403 without roles."""

        async def dependency(request: Request) -> Principal:
            return await self.authenticate(request.headers.get("authorization"), roles,
                                           proof=request.headers.get(EDGE_PROOF_HEADER), method=request.method,
                                           path=request.scope.get("raw_path") or request.url.path.encode())

        return dependency

    # ------------------------------------------------------------ fast routes

    def fast_route(self, method: str, path: str, *, status_code: int = 200, body: type[BaseModel] | None = None,
                   auth: bool = False, roles: tuple[str, ...] = (), headers: dict[str, Any] | None = None,
                   responses: dict[int | str, dict[str, Any]] | None = None,
                   response_model: Any = None) -> Callable[[Handler], Handler]:
        """Serve a hot route without FastAPI's per-request machinery (see :mod:`stackwright.runtime.fastpath`).

        The handler takes a :class:`FastRequest` (``path_params``, validated ``body``, ``principal``, the
        declared ``headers``: {name: max length} for an optional one, or {name: ``fastapi.Header(...)``} checked
        and documented with its constraints) and returns a JSON-able value (answered with
        ``status_code``) or a :class:`Reply`. The route also appears in the OpenAPI document like any other;
        ``response_model`` only documents the answer there (the handler's value is not validated against it).
        """

        def register(handler: Handler) -> Handler:
            route = FastRoute(method.upper(), path, handler, status_code=status_code, body=body, auth=auth,
                              roles=tuple(roles), headers={k.lower(): v for k, v in (headers or {}).items()})
            self.app.fast_routes.add(route)
            self.app.add_api_route(path, documented_endpoint(self, route), methods=[route.method],
                                   status_code=status_code, responses=responses, response_model=response_model)
            return handler

        return register

    # ------------------------------------------------------------ lifecycle

    @property
    def dependencies(self) -> dict[str, str]:
        """The last check of each dependency: ``"ok"`` or ``"failing: <error class>"`` (checked every
        ``DEPENDENCY_CHECK_INTERVAL_S``, default 5 s)."""
        return dict(self._dependencies)

    def readiness_check(self, name: str, check: Check) -> None:
        """Watch one more dependency: its health is the ``stackwright_dependency_up`` gauge (and must pass
        once before the first /readyz 200); it never makes a started process unready (see :meth:`_readyz`)."""
        self._checks[name] = check

    def on_startup(self, fn: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[Any]]:
        self._startup.append(fn)
        return fn

    def on_shutdown(self, fn: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[Any]]:
        self._shutdown.append(fn)
        return fn

    def background(self, fn: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[Any]]:
        """Run ``fn()`` for the life of the process (e.g. a queue consumer); restarted if it crashes."""
        self._background.append(fn)
        return fn

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        shutdown.reset()
        for fn in self._startup:
            await _retry_start(fn)
        await self._prime_keys()
        # Everything alive after start-up (modules, pools, the app) lives as long as the process: move it to
        # the permanent generation so full collections stop re-scanning it. Under load this cut full-GC
        # pauses in the vote service from ~65 ms to ~10 ms (measured with gc.callbacks), a visible part of p99.
        gc.collect()
        gc.freeze()
        self._tasks = [asyncio.create_task(self._supervise(fn), name=getattr(fn, "__name__", "background"))
                       for fn in self._background]
        # One round now, so the first /readyz after start-up already knows; then a round every few seconds.
        await self._check_dependencies()
        self._tasks.append(asyncio.create_task(self._watch_dependencies(), name="dependency-checks"))
        try:
            yield
        finally:
            self._started = False
            shutdown.start_draining()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            for fn in reversed(self._shutdown):
                with contextlib.suppress(Exception):
                    await fn()

    async def _prime_keys(self) -> None:
        # A service that verifies tokens fetches the signing keys before it is ready: otherwise its first caller
        # waited for the JWKS request (and, before http_client, ~0.4 s of TLS set-up on the event loop).
        s = self.settings
        if s.jwks_url and s.jwt_issuer and s.jwt_audience and not await self.verifier.jwks.prime():
            log.warning("signing keys not fetched from %s at start-up; the first token check will", s.jwks_url)

    async def _supervise(self, fn: Callable[[], Awaitable[Any]]) -> None:
        delay = 0.2
        while True:
            try:
                await fn()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background task %s crashed; restarting in %.1fs", getattr(fn, "__name__", fn), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _healthz(self) -> dict[str, str]:
        # Liveness never depends on other systems: a dead database must not restart every pod.
        return {"status": "ok", "service": self.name}

    async def _readyz(self) -> JSONResponse:
        """Readiness: the process is up, has started once, and is not draining. Nothing else.

        Dependencies (Postgres, Redis, queues) are shared by every replica: if readiness followed them, a
        database failover longer than the probe's failure window would take every pod out of every Service
        (and the ALB, whose health check is this path) at once, turning a partial outage (votes still
        accepted, results still served from Redis) into a total one. Their health is the
        ``stackwright_dependency_up`` gauge instead (alert on it), and a request that needs a dependency
        that is down answers 503 + Retry-After by itself.

        "Started once" means the lifespan start-up ran (pools opened) and every dependency check has
        passed at least once since: a new pod whose database is unreachable or not migrated yet is no use
        to route to, and the local runner waits on this before starting the services that call it. After
        that first success a dependency outage never makes the process unready again.
        """
        body: dict[str, Any] = {"dependencies": dict(self._dependencies)}
        if shutdown.is_draining():
            return JSONResponse({"status": "draining", **body}, status_code=503)
        if not self._started:
            return JSONResponse({"status": "starting", **body}, status_code=503)
        return JSONResponse({"status": "ready", **body}, status_code=200)

    async def _check_dependencies(self) -> None:
        """Run every dependency check once (concurrently), record the gauge, and mark the service started
        when all of them pass for the first time."""
        names = list(self._checks)
        outcomes = await asyncio.gather(*(asyncio.wait_for(self._checks[n](), CHECK_TIMEOUT_S) for n in names),
                                        return_exceptions=True)
        for name, outcome in zip(names, outcomes, strict=True):
            up = not isinstance(outcome, BaseException)
            self._dependencies[name] = "ok" if up else f"failing: {outcome.__class__.__name__}"
            DEPENDENCY_UP.labels(self.name, name).set(1 if up else 0)
        if all(v == "ok" for v in self._dependencies.values()) and not shutdown.is_draining():
            self._started = True

    async def _watch_dependencies(self) -> None:
        while True:
            # Quickly until the first success (the runner and kubelet are waiting), then at the interval.
            await asyncio.sleep(self._check_interval_s if self._started else 0.5)
            try:
                await self._check_dependencies()
            except asyncio.CancelledError:
                raise
            except Exception:  # a check must never end the watch
                log.exception("dependency checks failed")


async def _retry_start(fn: Callable[[], Awaitable[Any]], attempts: int = 30) -> None:
    """Dependencies may come up after us (or restart); retry opening them for a while before giving up."""
    delay = 0.2
    for attempt in range(attempts):
        try:
            await fn()
            return
        except Exception as exc:
            if attempt == attempts - 1:
                raise
            log.warning("startup step %s failed (%s); retrying", getattr(fn, "__qualname__", fn), exc)
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 2.0)
