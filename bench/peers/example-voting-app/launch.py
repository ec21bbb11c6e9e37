"""Start the vendored peer vote service (dockersamples/example-voting-app ``vote/``) with its Dockerfile CMD.

Used by the voting benchmark's ``peer_vote`` scenario and runnable by hand::

    python3 -m venv /tmp/peer-venv
    /tmp/peer-venv/bin/pip install -r bench/peers/example-voting-app/vote/requirements.txt
    python bench/peers/example-voting-app/launch.py /tmp/peer-venv 8099 6399   # then POST / with vote=a

The Dockerfile's CMD is ``gunicorn app:app -b 0.0.0.0:80 --log-file - --access-logfile - --workers 4
--keep-alive 0``; the only changes are the bind address (127.0.0.1 and a free port, not port 80 of a
container) and the Redis host (``gunicorn_conf.py``). The access log still goes to stdout (here /dev/null).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# From vote/Dockerfile (final stage), bind address aside.
CMD_ARGS = ["--log-file", "-", "--access-logfile", "-", "--workers", "4", "--keep-alive", "0"]


def command(venv: Path, port: int) -> list[str]:
    """The gunicorn command line of the peer's Dockerfile CMD, bound to 127.0.0.1:``port``."""
    return [str(venv / "bin" / "gunicorn"), "app:app", "-b", f"127.0.0.1:{port}", *CMD_ARGS,
            "-c", str(HERE / "gunicorn_conf.py")]


def start(venv: Path, port: int, redis_port: int) -> subprocess.Popen[bytes]:
    """Start gunicorn (4 workers) in ``vote/``, its logs discarded; the caller stops it (SIGTERM)."""
    env = {**os.environ, "PEER_REDIS_PORT": str(redis_port)}
    return subprocess.Popen(command(venv, port), cwd=HERE / "vote", env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: launch.py VENV PORT REDIS_PORT")
    sys.exit(start(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])).wait())
