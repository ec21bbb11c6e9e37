"""One Dockerfile per service: multi-stage, slim Python pinned by tag, non-root (uid 10001),
HEALTHCHECK, no secrets. The build context is the repository root; the image installs the stackwright
package, then the service folder (and its optional requirements.txt), and serves the ASGI app with
uvicorn through ``stackwright.runtime.serve`` (which flips /readyz to 503 on SIGTERM and drains).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from ..contract import CONTAINER_PLATFORM_PORT, PLATFORM_PATHS
from ..resources import kind_of
from ..spec import System
from ..spec.shutdown import termination
from .k8s.context import RUN_AS
from .k8s.migrations import MIGRATIONS_ROOT

PYTHON_IMAGE = "python:3.11.13-slim-bookworm"

DOCKERIGNORE = """\
# Per-Dockerfile ignore file (BuildKit): the build context is the repository root.
**/.git
**/.venv
**/__pycache__
**/*.pyc
**/.pytest_cache
**/.ruff_cache
**/node_modules
.stackwright
out
cdk.out
bench
**/.env
**/*.pem
**/*.key
"""


def repo_root(system: System) -> Path:
    """The folder holding pyproject.toml above the spec (the Docker build context)."""
    if system.source is not None:
        for folder in system.source.parents:
            if (folder / "pyproject.toml").is_file():
                return folder
    return Path.cwd()


def _rel(system: System, path: Path, fallback: str) -> str:
    try:
        return PurePosixPath(path.resolve().relative_to(repo_root(system).resolve())).as_posix()
    except ValueError:
        return fallback


def service_source(system: System, service: str) -> str:
    """Service folder relative to the build context (``systems/<system>/services/<svc>``)."""
    svc = system.services[service]
    return _rel(system, system.service_dir(service), f"systems/{system.name}/{svc.path or f'services/{service}'}")


def migration_sources(system: System, service: str) -> dict[str, str]:
    """``resource -> migrations folder`` (relative to the build context) a service's image carries."""
    out: dict[str, str] = {}
    for name in system.services[service].uses:
        res = system.resources[name]
        folder = kind_of(res).image_migrations(res)
        if folder:
            out[name] = _rel(system, system.base_dir / folder, f"systems/{system.name}/{folder}")
    return out


def dockerfile(system: System, service: str) -> str:
    """The Dockerfile text of one service."""
    svc = system.services[service]
    src = service_source(system, service)
    migrations = "".join(f"COPY {folder}/ {MIGRATIONS_ROOT}/{res}/\n"
                         for res, folder in sorted(migration_sources(system, service).items()))
    port = svc.port
    platform = CONTAINER_PLATFORM_PORT
    probe_port = platform if svc.probes.liveness.path in PLATFORM_PATHS else port
    # The same drain as the ConfigMap's SHUTDOWN_GRACE_SECONDS, which the pod's grace period is built on.
    drain_s = termination(system, service).drain_s
    probe = (f"import sys, urllib.request; "
             f"sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:{probe_port}{svc.probes.liveness.path}', "
             f"timeout=2).status == 200 else 1)")
    return f"""\
# syntax=docker/dockerfile:1
# Service '{service}' of system '{system.name}' (rendered by stackwright render; edit system.yaml instead).
# Build from the repository root:
#   docker build -f docker/{service}.Dockerfile -t {system.name}/{service} <repository root>

FROM {PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src/ src/
RUN pip install --no-compile .
COPY {src}/ /app/
RUN if [ -f /app/requirements.txt ]; then pip install --no-compile -r /app/requirements.txt; fi
{migrations}
FROM {PYTHON_IMAGE}
LABEL org.opencontainers.image.title="{system.name}-{service}" \\
      org.opencontainers.image.description="{_label(svc.description or service)}"
ENV PATH=/opt/venv/bin:$PATH \\
    PYTHONUNBUFFERED=1 \\
    PYTHONDONTWRITEBYTECODE=1 \\
    HOST=0.0.0.0 \\
    PORT={port} \\
    PLATFORM_PORT={platform}
RUN groupadd --system --gid {RUN_AS} app \\
    && useradd --system --uid {RUN_AS} --gid {RUN_AS} --home-dir /nonexistent --no-create-home \\
       --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /app
USER {RUN_AS}:{RUN_AS}
EXPOSE {port} {platform}
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \\
    CMD ["python", "-c", "{probe}"]
STOPSIGNAL SIGTERM
CMD ["python", "-m", "stackwright.runtime.serve", "{svc.app}", "--host", "0.0.0.0", "--port", "{port}", \\
     "--platform-port", "{platform}", "--graceful", "{drain_s}"]
"""


def _label(text: str) -> str:
    return text.replace("\\", "").replace('"', "'").replace("\n", " ")


def render_docker(system: System) -> dict[str, str]:
    """``docker/<service>.Dockerfile`` (+ its BuildKit ``.dockerignore``) for every service."""
    files: dict[str, str] = {}
    for name in system.services:
        files[f"docker/{name}.Dockerfile"] = dockerfile(system, name)
        files[f"docker/{name}.Dockerfile.dockerignore"] = DOCKERIGNORE
    return files
