# The operator's image: `make image` (hack/image.sh: Docker or Podman). One image for the operator
# (`trigger-operator run`, the default) and the Jobs' action runner (`trigger-operator act`).
# BASE is debian:bookworm-slim; where no registry can be reached, hack/image.sh makes an equivalent
# from Debian's archive with mmdebstrap under that name, so this file builds the same everywhere.
# Python is Debian's (3.11); the package and its pinned dependencies live in a venv at /opt/venv.
# Runs as a non-root user and works on a read-only root filesystem (the chart mounts /tmp).
ARG BASE=docker.io/library/debian:bookworm-slim

FROM ${BASE} AS build
ENV DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY operator ./operator
# The secret "cacert" is the builder's CA bundle (hack/image.sh passes it): PyPI behind a proxy
# that re-signs TLS is then trusted at build time, and nothing of it stays in the image.
# Removed to keep the image small: pip and setuptools (not needed at run time), test folders, and
# kubernetes.aio, the client's asyncio copy (68 MB) that nothing here imports (the operator uses
# kopf for its watches and the sync client; checked below by importing what the operator imports).
# The generated kubernetes client (35 MB of sources, mostly docstrings, plus 24 MB of bytecode) is
# shipped as bytecode without docstrings (python -OO, sourceless .pyc): 12 MB; its frames in a
# traceback then show no source line.
RUN --mount=type=secret,id=cacert \
    if [ -s /run/secrets/cacert ]; then export PIP_CERT=/run/secrets/cacert; fi \
    && python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --quiet -c constraints.txt . \
    && /opt/venv/bin/pip uninstall --quiet -y pip setuptools \
    && find /opt/venv -depth -type d -name tests -path '*/site-packages/*' -exec rm -rf {} + \
    && rm -rf /opt/venv/lib/python3*/site-packages/kubernetes/aio \
    && cd /opt/venv/lib/python3*/site-packages/kubernetes \
    && /opt/venv/bin/python -OO -m compileall -q -b . && find . -name '*.py' -delete && find . -name __pycache__ -prune -exec rm -rf {} + \
    && cd / \
    && /opt/venv/bin/python -c 'import kubernetes.client, kubernetes.config, trigger_operator.kube.api, trigger_operator.cli' \
    && /opt/venv/bin/trigger-operator --help >/dev/null

FROM ${BASE}
ENV DEBIAN_FRONTEND=noninteractive
# Debian's python3 without recommends; apt's lists and caches dropped in the same layer.
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends python3 ca-certificates >/dev/null \
    && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/cache/debconf/*-old /var/log/apt /var/log/dpkg.log \
    && useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin trigger-operator
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:/usr/sbin:/usr/bin:/sbin:/bin PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["trigger-operator"]
CMD ["run"]
# Last, so that a new revision or date rebuilds only this layer.
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
LABEL org.opencontainers.image.title="trigger-operator" \
      org.opencontainers.image.description="A Kubernetes operator that runs Jobs on cron, interval, event and conditional schedules" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/trigger-operator/trigger-operator" \
      org.opencontainers.image.base.name="debian:bookworm-slim"
