# syntax=docker/dockerfile:1
# One image for everything npuobs runs in a container: the exporter (default command), the
# simulator (`npuobs sim run`) and the PagerDuty sink (docker-compose.yml), and the DaemonSet
# (deploy/helm/npuobs). Vendor CLIs (furiosa-smi, rbln-stat, neuron-monitor, hl-smi, amd-smi,
# tpu-info) are not in it: see docs/deploy.md.
#
# The base is pinned to an exact Python patch release and Debian suite so that a rebuild gets the
# same interpreter; both stages use it because the virtual environment built in the first one is
# copied into the second and must find the same interpreter at the same path.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/npuobs
WORKDIR /src
COPY pyproject.toml README.md ./
COPY npuobs ./npuobs
# Not editable: the runtime stage gets a self-contained venv, no source tree. The nvml extra lets
# the NVIDIA backend use NVML when the NVIDIA Container Toolkit injects the driver.
RUN /opt/npuobs/bin/pip install ".[nvml]"

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="npuobs" \
      org.opencontainers.image.description="Observability and SRE toolkit for NPU fleets" \
      org.opencontainers.image.source="https://github.com/npuobs/npuobs" \
      org.opencontainers.image.licenses="Apache-2.0"
# Bytecode was compiled at install time; the root filesystem is read-only at run time anyway.
ENV PATH=/opt/npuobs/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# A fixed numeric UID/GID (65532, the usual "nonroot") so Kubernetes' runAsNonRoot can verify it.
# /var/lib/npuobs is the only writable place the image prepares: a named volume mounted there
# starts out owned by this user (the simulator's state tree, the sink's event log).
RUN groupadd --system --gid 65532 npuobs \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin npuobs \
 && install -d -o 65532 -g 65532 -m 0755 /var/lib/npuobs
COPY --from=build /opt/npuobs /opt/npuobs
USER 65532:65532
WORKDIR /var/lib/npuobs
EXPOSE 9400
# Exec form, no shell in the loop: python (always in the image) asks the exporter's /healthz.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:9400/healthz', timeout=4).status != 200)"]
ENTRYPOINT ["npuobs"]
CMD ["exporter", "--backend", "auto", "--listen", "0.0.0.0:9400"]
