# syntax=docker/dockerfile:1
# The healthscale operator image. `make image` builds it without a Docker daemon (tools/build-image.sh:
# buildah on a Debian bookworm base made with mmdebstrap); with Docker: `docker build -t healthscale:0.1.0 .`
#
# Two stages. The first installs the pinned runtime dependencies (locks/runtime.txt, hash-checked;
# all ship binary wheels, so no compiler is needed even there), then healthscale itself, into a
# virtualenv, and drops what nothing runs (pip, setuptools, the scientific stack's test suites). The
# second copies only that virtualenv onto a clean base, without pip, and runs it as an unprivileged
# user. The chart runs it with a read-only root filesystem, so nothing here writes outside /tmp at
# run time. Both stages use the same base, whose Python the virtualenv links to.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# The dependencies in a layer of their own: a code change does not reinstall them.
COPY locks/runtime.txt locks/
RUN python3 -m venv /opt/healthscale \
    && /opt/healthscale/bin/pip install --require-hashes --no-deps -r locks/runtime.txt
# pyproject.toml names README.md as the package's readme, so both are needed to build.
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN /opt/healthscale/bin/pip install --no-deps . \
    # The virtualenv needs no installer at run time.
    && /opt/healthscale/bin/pip uninstall --yes pip setuptools \
    # numpy's, scipy's, pandas' and statsmodels' own test suites, and the kubernetes client's asyncio
    # copy of itself (kubernetes.aio; Kopf talks to the API with aiohttp): about 170 MB nothing imports.
    && find /opt/healthscale/lib -depth -type d -path '*/site-packages/*/tests' -exec rm -rf {} + \
    && rm -rf /opt/healthscale/lib/python3*/site-packages/kubernetes/aio \
    && /opt/healthscale/bin/python -c "import healthscale.runtime.handlers, healthscale.backtest.policies" \
    && /opt/healthscale/bin/healthscale --help >/dev/null

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="healthscale" \
      org.opencontainers.image.description="Kubernetes operator that scales clinical workloads ahead of predictable surges" \
      org.opencontainers.image.licenses="Apache-2.0"
# A numeric UID/GID, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
RUN groupadd --system --gid 10001 healthscale \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin healthscale \
    # Nothing installs packages at run time: drop the base's installers too (python:slim has pip
    # in /usr/local; Debian's python3 has none, only the wheels that python3 -m venv installs).
    && if python3 -m pip --version >/dev/null 2>&1; then python3 -m pip uninstall --yes pip setuptools wheel; fi \
    && rm -rf /usr/share/python-wheels
COPY --from=build /opt/healthscale /opt/healthscale
ENV PATH=/opt/healthscale/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 10001:10001
WORKDIR /tmp
# Metrics and the health endpoint (the operator's defaults; the chart sets both explicitly).
EXPOSE 9102 8080
ENTRYPOINT ["healthscale"]
CMD ["run", "--help"]
