#!/usr/bin/env bash
# Prints the container engine to use: $ENGINE if set, else the one that answers (`docker info`, then
# `podman info`; podman is installed and configured for these machines first when missing). The
# engine is asked, not looked up: a `docker` CLI without a daemon is common. Exit 2 when none works.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${ENGINE:-}" ]; then echo "$ENGINE"; exit 0; fi
if docker info >/dev/null 2>&1; then echo docker; exit 0; fi
command -v podman >/dev/null 2>&1 || bash hack/install-node.sh
bash hack/podman-setup.sh
if podman info >/dev/null 2>&1; then echo podman; exit 0; fi
echo "needs a working Docker daemon or Podman (neither answered)" >&2
exit 2
