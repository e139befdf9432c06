# syntax=docker/dockerfile:1
# The healthscale operator image: `docker build -t healthscale:0.1.0 .`
#
# Two stages: the first installs healthscale and its dependencies into a virtualenv (all of them
# ship binary wheels, so no compiler is needed even there); the second copies only that virtualenv
# onto a clean slim Python, without pip, and runs it as an unprivileged user. The chart runs it with
# a read-only root filesystem, so nothing here writes outside /tmp at run time.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# pyproject.toml names README.md as the package's readme, so both are needed to build.
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN python -m venv /opt/healthscale \
    && /opt/healthscale/bin/pip install . \
    # The virtualenv needs no installer at run time.
    && /opt/healthscale/bin/pip uninstall --yes pip setuptools \
    && /opt/healthscale/bin/healthscale --help >/dev/null

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="healthscale" \
      org.opencontainers.image.description="Kubernetes operator that scales clinical workloads ahead of predictable surges" \
      org.opencontainers.image.licenses="Apache-2.0"
# A numeric UID/GID, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
RUN groupadd --system --gid 10001 healthscale \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin healthscale \
    # Nothing installs packages at run time: drop the base image's own pip as well.
    && python -m pip uninstall --yes pip setuptools wheel
COPY --from=build /opt/healthscale /opt/healthscale
ENV PATH=/opt/healthscale/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib
USER 10001:10001
WORKDIR /tmp
# Metrics and the health endpoint (the operator's defaults; the chart sets both explicitly).
EXPOSE 9102 8080
ENTRYPOINT ["healthscale"]
CMD ["run", "--help"]
