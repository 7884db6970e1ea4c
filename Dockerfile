# syntax=docker/dockerfile:1
# Lethe service image. The builder stage installs the locked dependencies (uv.lock) and the
# project into /opt/lethe; the runtime stage copies only that tree onto a clean slim base, runs
# as an unprivileged user and writes only under the /var/lib/lethe volume (and /tmp), so it runs
# with a read-only root filesystem.
ARG PYTHON_IMAGE=python:3.11-slim-trixie

FROM ${PYTHON_IMAGE} AS builder
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/lethe/.venv \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /opt/lethe
RUN pip install --no-cache-dir uv==0.13.9
# Third-party dependencies first: this layer is rebuilt only when the lock changes.
COPY pyproject.toml uv.lock README.md ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-default-groups --no-install-project
# The project itself, installed from its source tree so migrations/ sits next to app/.
COPY app ./app
COPY migrations ./migrations
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-default-groups \
    && /opt/lethe/.venv/bin/python -m compileall -q app migrations \
    && /opt/lethe/.venv/bin/lethe --help > /dev/null

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="lethe" \
      org.opencontainers.image.description="GDPR data-subject requests: access, rectification, erasure, retention, audit" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/lethe/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LETHE_ARTIFACTS_DIR=/var/lib/lethe/artifacts
RUN groupadd --system --gid 10001 lethe \
    && useradd --system --no-log-init --uid 10001 --gid lethe \
       --home-dir /var/lib/lethe --shell /usr/sbin/nologin lethe \
    && install -d -o lethe -g lethe -m 0750 /var/lib/lethe
COPY --from=builder /opt/lethe /opt/lethe
WORKDIR /var/lib/lethe
USER 10001:10001
VOLUME ["/var/lib/lethe"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
ENTRYPOINT ["lethe"]
CMD ["run", "--host", "0.0.0.0", "--port", "8000"]
