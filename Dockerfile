# syntax=docker/dockerfile:1
FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY pyproject.toml README.md ./
COPY domain ./domain
COPY usecase ./usecase
COPY repository ./repository
COPY adapter ./adapter
COPY api ./api
RUN pip install --no-cache-dir .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --create-home storage \
    && mkdir -p /data && chown storage /data
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    STORAGE_DATA_DIR=/data \
    STORAGE_HOST=0.0.0.0 \
    STORAGE_PORT=8000
USER storage
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
CMD ["chat-storage", "serve"]
