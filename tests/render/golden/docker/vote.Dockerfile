# syntax=docker/dockerfile:1
# Service 'vote' of system 'voting' (rendered by stackwright render; edit system.yaml instead).
# Build from the repository root:
#   docker build -f docker/vote.Dockerfile -t voting/vote <repository root>

FROM python:3.11.13-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src/ src/
RUN pip install --no-compile .
COPY systems/voting/services/vote/ /app/
RUN if [ -f /app/requirements.txt ]; then pip install --no-compile -r /app/requirements.txt; fi
COPY systems/voting/migrations/ /app/migrations/db/

FROM python:3.11.13-slim-bookworm
LABEL org.opencontainers.image.title="voting-vote" \
      org.opencontainers.image.description="creates polls and accepts votes (one per viewer and poll) onto the queue"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    PLATFORM_PORT=9464
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /app
USER 10001:10001
EXPOSE 8000 9464
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=2).status == 200 else 1)"]
STOPSIGNAL SIGTERM
CMD ["python", "-m", "stackwright.runtime.serve", "app:app", "--host", "0.0.0.0", "--port", "8000", \
     "--platform-port", "9464", "--graceful", "30"]
