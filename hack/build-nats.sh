#!/usr/bin/env bash
# Builds nats-server (the JetStream intake's tests and benchmark run it: issue 23 part 4) from the
# wrapper module hack/gomod/nats, into a cache folder of its own, keyed by its version and that
# module's go.mod and go.sum alone: bumping it never rebuilds the control plane (hack/build-binaries.sh),
# and a warm cache makes this a no-op. Prints the binary's path on stdout's last line; progress on stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
module="$here/gomod/nats"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod

version=$(cd "$module" && go list -m -f '{{.Version}}' github.com/nats-io/nats-server/v2)
recipe=1  # bump when the build flags below change
digest=$(cat "$module/go.mod" "$module/go.sum"; go version; echo "$recipe")
digest=$(printf '%s' "$digest" | sha256sum | cut -c1-10)
cache="${TRIGGER_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/trigger-operator}"
out="$cache/bin/nats-server-$version-$digest"

if [ -f "$out/.complete" ]; then
  echo "nats-server: cached in $out" >&2
  echo "$out/nats-server"; exit 0
fi
mkdir -p "$out"
log() { printf '[build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
t0=$(date +%s)
log "building nats-server $version into $out (first time only: about a minute on 2 cores)"
(cd "$module" && go build -trimpath -ldflags "-s -w" -o "$out/nats-server" github.com/nats-io/nats-server/v2)
log "built nats-server in $(( $(date +%s) - t0 ))s ($(du -m "$out/nats-server" | cut -f1) MiB)"
touch "$out/.complete"
echo "$out/nats-server"
