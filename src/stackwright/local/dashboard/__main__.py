"""Run the dashboard of a local run: ``python -m stackwright.local.dashboard SPEC STATE_DIR PORT``.

The runner starts it as one more supervised process; it reads only the run's state file, the processes'
HTTP endpoints and the log files, so it can crash or restart without touching the system, and the system
can crash or restart without breaking the page.
"""

from __future__ import annotations

import sys
from pathlib import Path

HOST = "127.0.0.1"  # the dashboard shows logs and internals: never reachable from another machine


def main(argv: list[str] | None = None) -> None:
    """Serve the dashboard of the system at SPEC whose run lives in STATE_DIR, on 127.0.0.1:PORT."""
    import uvicorn

    from ...spec import load_system
    from .app import create_app

    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 3 or not args[2].isdigit():
        sys.exit("usage: python -m stackwright.local.dashboard SPEC STATE_DIR PORT")
    app = create_app(load_system(Path(args[0])), Path(args[1]))
    uvicorn.run(app, host=HOST, port=int(args[2]), log_level="warning", access_log=False,
                timeout_graceful_shutdown=1)


if __name__ == "__main__":
    main()
