# syntax=docker/dockerfile:1
# One image for both streaming processes: `availability api` or `availability worker`
# (and `availability serve`, the embedded mode). The helm chart in helm/ runs it.
#
# The base is pinned by tag and by the digest of its multi-platform index, as public
# Dockerfiles that reviewed it record it; bump both together.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

# ---- builder: the project and its dependencies into a virtualenv -----------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /build
# Every dependency ships a manylinux wheel for CPython 3.11 (rocksdict, faust-streaming,
# uvloop, httptools, orjson, msgspec), so no compiler is needed. The constraints file
# pins the whole resolved set the image was tested with (docker/constraints.txt).
COPY pyproject.toml README.md ./
COPY docker/constraints.txt docker/constraints.txt
COPY availability availability
COPY api api
COPY streams streams
COPY embedded embedded
COPY service service
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --constraint docker/constraints.txt .

# ---- runtime: the virtualenv, nothing of the build ---------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="availability-service" \
      org.opencontainers.image.description="Real-time inventory availability: api or worker" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed uid/gid, so Kubernetes' runAsUser and fsGroup (helm/values.yaml) can name them.
ARG APP_UID=10001
RUN groupadd --system --gid ${APP_UID} availability \
 && useradd --system --uid ${APP_UID} --gid availability --no-create-home \
      --home-dir /var/lib/availability --shell /usr/sbin/nologin availability \
 && mkdir -p /var/lib/availability \
 && chown availability:availability /var/lib/availability
COPY --from=builder /opt/venv /opt/venv
COPY docker/healthcheck.py /opt/availability/healthcheck.py
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    AVAIL_DATA_DIR=/var/lib/availability
WORKDIR /var/lib/availability
USER ${APP_UID}:${APP_UID}
EXPOSE 8000 9102
# The api answers GET /healthz on AVAIL_PORT; a worker serves no HTTP API, only its
# Prometheus metrics on AVAIL_METRICS_PORT. The script reads PID 1's command line to tell
# which one runs. (Kubernetes ignores this; the chart has its own probes.)
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/opt/availability/healthcheck.py"]
ENTRYPOINT ["availability"]
CMD ["api"]
