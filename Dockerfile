# syntax=docker/dockerfile:1
# Keyturn's image: ghcr.io/keyturn/keyturn:0.1.0 (docs/technical/2026-12-06_backend_deployment.md).
#   docker build -t ghcr.io/keyturn/keyturn:0.1.0 .
# Two stages: the builder makes the keyturn wheel and a wheel of every dependency (pinned by
# requirements.lock); the runtime installs those wheels offline and keeps none of them.
# tests/deploy/test_wheel.py runs this file's ENTRYPOINT, CMD and HEALTHCHECK commands
# against an installed wheel, and tests/deploy/test_dockerfile.py checks it with hadolint.

FROM python:3.11-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# The build frontend and its own dependencies come pinned from the lock; the backend
# (setuptools) is pinned by pyproject.toml's build-system.
COPY requirements.lock ./
RUN python -m pip install --no-cache-dir -c requirements.lock build==1.6.1

COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m build --wheel --outdir /wheels . \
    && python -m pip wheel --no-cache-dir --wheel-dir /wheels -c requirements.lock \
        /wheels/keyturn-0.1.0-py3-none-any.whl


FROM python:3.11-slim

LABEL org.opencontainers.image.title="Keyturn" \
      org.opencontainers.image.description="Self-hosted identity and authentication service: users, sessions, JWTs, OAuth 2.0 / OpenID Connect." \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim"

# No .pyc writes at run time (the root filesystem may be read-only; pip compiled the
# bytecode at install time), logs unbuffered, and the settings every deployment shares.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    KEYTURN_DATA_DIR=/var/lib/keyturn \
    KEYTURN_HOST=0.0.0.0 \
    KEYTURN_PORT=8000

# The wheels are bind-mounted from the builder for this one step, so no layer keeps them;
# --no-index: nothing is fetched here, only what the builder pinned is installed.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m pip install --no-cache-dir --no-index --find-links=/wheels keyturn==0.1.0 \
    && groupadd --system --gid 10001 keyturn \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/keyturn \
        --no-create-home --shell /usr/sbin/nologin keyturn \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/keyturn

# The one writable place besides /tmp: the dev SQLite file and generated key live here
# when no database URL or secret is configured.
VOLUME ["/var/lib/keyturn"]
WORKDIR /var/lib/keyturn
USER 10001:10001
EXPOSE 8000

# `keyturn healthcheck` asks this container's own listener; it starts a Python process, so
# it gets more than Docker's default timeout on a busy host.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 CMD ["keyturn", "healthcheck"]
# uvicorn drains in-flight requests for up to 30 s after SIGTERM: give it 40 s to stop.
STOPSIGNAL SIGTERM
ENTRYPOINT ["keyturn"]
CMD ["serve"]
