"""Run a service: ``python -m stackwright.runtime.serve app:app --port 8000 --platform-port 9464``.

Wraps uvicorn so SIGTERM first flips readiness to 503, then drains in-flight requests, then runs the
app's shutdown (closing pools and stopping consumers). The same command runs locally and in containers.

With a platform port, one server listens on two ports: the application port serves the app without the
platform's endpoints (:data:`~stackwright.contract.PLATFORM_PATHS`: metrics, readiness, liveness, API docs;
404 unless the spec publishes one, see :data:`~stackwright.contract.PUBLISHED_PATHS_ENV`), and the platform
port serves only those (kubelet, the load balancers' health checks and Prometheus use it). Whatever
exposes the application port to the internet (an NLB passes TCP straight through) then cannot reach them.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn
from uvicorn.importer import import_from_string

from ..contract import (
    DEFAULT_WS_PING_INTERVAL_S,
    PLATFORM_PATHS,
    PLATFORM_PORT_ENV,
    PUBLISHED_PATHS_ENV,
    SHUTDOWN_GRACE_ENV,
    WS_PING_INTERVAL_ENV,
)
from . import shutdown
from .faults import CRASH_EXIT_CODE, FAULT_ENV, FaultSpecError, fault_from_env
from .http_protocol import LeanBodyHttpToolsProtocol
from .problems import problem_response

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


class _DrainingServer(uvicorn.Server):
    def handle_exit(self, sig: int, frame: Any) -> None:
        shutdown.start_draining()
        super().handle_exit(sig, frame)


class PlatformSplit:
    """ASGI wrapper that serves the platform's paths on the platform port only and only them there.

    A request's port is the local address of its connection (``scope["server"]``), so the split holds
    whatever the request says about itself (Host, forwarded headers). ``published``: platform paths the
    application port serves too. Paths are compared decoded, as the app routes them, so ``/%6detrics`` on the
    application port is refused like ``/metrics``. Other scopes (lifespan) pass through.
    """

    def __init__(self, app: ASGIApp, platform_port: int, published: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.platform_port = platform_port
        self.published = published

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        if scope["type"] in ("http", "websocket"):
            server = scope.get("server")
            on_platform = server is not None and server[1] == self.platform_port
            path = scope["path"]
            platform_path = path in PLATFORM_PATHS
            if on_platform != platform_path and not (platform_path and path in self.published):
                if scope["type"] == "websocket":  # closing before accept: the handshake gets a 403
                    await send({"type": "websocket.close", "code": 1008})
                    return
                where = "the platform port" if platform_path else "the application port"
                await problem_response(404, f"not found (served on {where} only)")(scope, receive, send)
                return
        await self.app(scope, receive, send)


def published_paths(value: str | None) -> frozenset[str]:
    """The platform paths a comma-separated :data:`~stackwright.contract.PUBLISHED_PATHS_ENV` value names."""
    return frozenset(p.strip() for p in (value or "").split(",") if p.strip() in PLATFORM_PATHS)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, with defaults from the environment; ``graceful`` is the drain after SIGTERM in
    seconds (``SHUTDOWN_GRACE_SECONDS``, which the rendered pod's terminationGracePeriodSeconds counts),
    ``ws_ping`` the seconds between WebSocket pings (``WS_PING_INTERVAL_SECONDS``, below the ALB idle
    timeout so a quiet stream is never cut, see :mod:`stackwright.contract`)."""
    parser = argparse.ArgumentParser(prog="python -m stackwright.runtime.serve")
    parser.add_argument("app", help="module:attribute of the ASGI app, e.g. app:app")
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--platform-port", type=int, default=int(os.environ.get(PLATFORM_PORT_ENV, "0") or 0),
                        help="port of the platform's endpoints (metrics, readiness, API docs); 0: the "
                             "application port serves them too")
    parser.add_argument("--graceful", type=float, default=float(os.environ.get(SHUTDOWN_GRACE_ENV, "10")))
    parser.add_argument("--ws-ping", type=float,
                        default=float(os.environ.get(WS_PING_INTERVAL_ENV, DEFAULT_WS_PING_INTERVAL_S)),
                        help="seconds between WebSocket pings (keeps idle connections open through load balancers)")
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "info"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and serve the ASGI app until SIGTERM/SIGINT."""
    args = parse_args(argv)
    try:
        fault = fault_from_env()
    except FaultSpecError as exc:
        sys.exit(f"{FAULT_ENV}: {exc}")
    if fault is not None and fault.crash:  # a canary rehearsal's version that never comes up
        print(f"exiting with code {CRASH_EXIT_CODE}: injected fault {FAULT_ENV}=crash", flush=True)
        sys.exit(CRASH_EXIT_CODE)
    sys.path.insert(0, os.getcwd())
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    app: Any = args.app
    if args.platform_port:
        if args.platform_port == args.port:
            sys.exit(f"--platform-port must differ from --port ({args.port})")
        app = PlatformSplit(import_from_string(args.app), args.platform_port,
                            published_paths(os.environ.get(PUBLISHED_PATHS_ENV)))
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level,
                            http=LeanBodyHttpToolsProtocol, access_log=False,
                            timeout_graceful_shutdown=args.graceful, lifespan="on",
                            server_header=False, proxy_headers=True, forwarded_allow_ips="127.0.0.1",
                            ws_ping_interval=args.ws_ping, ws_ping_timeout=args.ws_ping)
    quiet_connection_logs()  # after Config, which sets up uvicorn's loggers
    server = _DrainingServer(config)
    sockets = None
    if args.platform_port:
        # Both listening sockets belong to the one server: one event loop, one drain, one lifespan.
        sockets = [config.bind_socket(), _bind(args.host, args.platform_port)]
    server.run(sockets=sockets)
    if not server.started:
        sys.exit(3)


# What uvicorn logs at INFO for every WebSocket session: the handshake's access line and "connection open/closed".
_WS_SESSION_LINES = ('%s - "WebSocket %s" [accepted]', "connection open", "connection closed")


def _not_a_session_line(record: logging.LogRecord) -> bool:
    return record.levelno > logging.INFO or record.msg not in _WS_SESSION_LINES


def quiet_connection_logs() -> None:
    """No log line per WebSocket session or outbound HTTP call at INFO, as access_log=False gives none per
    request: uvicorn's handshake and open/closed lines, websockets' client open/closed, httpx's "HTTP Request:
    ..." (each ~0.2 ms of CPU, on a stream's handshake path: four to six per speech stream in ws-proxy).
    Refused handshakes (403) and warnings still log; LOG_LEVEL=debug keeps every line."""
    if logging.getLogger().getEffectiveLevel() < logging.INFO:
        return
    logging.getLogger("uvicorn.error").addFilter(_not_a_session_line)
    for name in ("websockets.client", "httpx"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (uvicorn's own binding, for a port besides its config's)."""
    # No logging set-up of its own: a default Config would re-install uvicorn's access log, one line per request.
    return uvicorn.Config("", host=host, port=port, log_config=None, access_log=False).bind_socket()


if __name__ == "__main__":
    main()
