# syntax=docker/dockerfile:1
# chat-storage: `docker build -t chat-storage .`; `docker compose up` runs it on PostgreSQL.
# test/static/test_containers.py lints this file, and scripts/run_image_entrypoint.py runs
# its CMD with its ENV outside Docker, so both are checked in `make test`.

# --- build: a virtual environment with the service and its dependencies ---------------------
FROM python:3.11-slim-bookworm AS build
# every dependency has a wheel for this platform: no compiler in either stage
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY domain ./domain
COPY usecase ./usecase
COPY repository ./repository
COPY adapter ./adapter
COPY api ./api
# `tracing` adds the OpenTelemetry SDK and OTLP exporter (STORAGE_TRACING=otel);
# `--build-arg EXTRAS=` leaves them out
ARG EXTRAS=tracing
# DL3013 asks for pinned versions: this installs the project itself from /src
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".${EXTRAS:+[$EXTRAS]}"

# --- runtime: the environment, a non-root user and a data volume ------------------------------
FROM python:3.11-slim-bookworm AS runtime
LABEL org.opencontainers.image.title="chat-storage" \
      org.opencontainers.image.description="HTTP storage for workspaces, chats and their attachments"
RUN groupadd --system --gid 10001 storage \
    && useradd --system --uid 10001 --gid storage --home-dir /home/storage --create-home \
       --shell /usr/sbin/nologin storage \
    && install -d -o storage -g storage -m 0750 /data
COPY --from=build /opt/venv /opt/venv
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STORAGE_DATA_DIR=/data \
    STORAGE_HOST=0.0.0.0 \
    STORAGE_PORT=8000 \
    STORAGE_LOG_FORMAT=json
WORKDIR /home/storage
USER 10001:10001
VOLUME ["/data"]
EXPOSE 8000
# the image has no curl: the standard library asks /healthz (non-2xx or no answer -> exit 1)
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('STORAGE_PORT', '8000'), timeout=2)"]
# one server process a container, scaled by replicas (`docker compose up --scale storage=2`);
# more workers in one container need PROMETHEUS_MULTIPROC_DIR for whole metrics
# (docs/operations.md, docs/020-observability.md)
CMD ["chat-storage", "serve", "--server", "granian", "--workers", "1"]
