"""Run a service: ``python -m stackwright.runtime.serve app:app --port 8000``.

Wraps uvicorn so SIGTERM first flips readiness to 503, then drains in-flight requests, then runs the
app's shutdown (closing pools and stopping consumers). The same command runs locally and in containers.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

import uvicorn

from ..contract import DEFAULT_WS_PING_INTERVAL_S, SHUTDOWN_GRACE_ENV, WS_PING_INTERVAL_ENV
from . import shutdown
from .faults import CRASH_EXIT_CODE, FAULT_ENV, FaultSpecError, fault_from_env


class _DrainingServer(uvicorn.Server):
    def handle_exit(self, sig: int, frame: Any) -> None:
        shutdown.start_draining()
        super().handle_exit(sig, frame)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, with defaults from the environment; ``graceful`` is the drain after SIGTERM in
    seconds (``SHUTDOWN_GRACE_SECONDS``, which the rendered pod's terminationGracePeriodSeconds counts),
    ``ws_ping`` the seconds between WebSocket pings (``WS_PING_INTERVAL_SECONDS``, below the ALB idle
    timeout so a quiet stream is never cut, see :mod:`stackwright.contract`)."""
    parser = argparse.ArgumentParser(prog="python -m stackwright.runtime.serve")
    parser.add_argument("app", help="module:attribute of the ASGI app, e.g. app:app")
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
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
    config = uvicorn.Config(args.app, host=args.host, port=args.port, log_level=args.log_level,
                            access_log=False, timeout_graceful_shutdown=args.graceful, lifespan="on",
                            server_header=False, proxy_headers=True, forwarded_allow_ips="127.0.0.1",
                            ws_ping_interval=args.ws_ping, ws_ping_timeout=args.ws_ping)
    server = _DrainingServer(config)
    server.run()
    if not server.started:
        sys.exit(3)


if __name__ == "__main__":
    main()
