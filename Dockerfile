# The one image every jobstate process runs: `jobstate serve`, `jobstate gateway`,
# `jobstate reconcile` (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY protos ./protos
COPY jobstate ./jobstate
COPY gateway ./gateway
COPY jobstate_cli ./jobstate_cli
RUN pip install . \
    && useradd --system --home-dir /app jobstate \
    && mkdir -p /app/data \
    && chown jobstate /app/data

USER jobstate
# gRPC (jobstate serve) and HTTP/WebSocket (jobstate gateway).
EXPOSE 50051 8787
CMD ["jobstate", "serve", "--listen", "0.0.0.0:50051"]
