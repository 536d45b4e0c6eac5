#!/usr/bin/env bash
# `make image`: the operator's image with whichever engine answers (Docker, else Podman: hack/engine.sh).
# The Dockerfile builds FROM debian:bookworm-slim; when that cannot be pulled (no registry reachable)
# an equivalent is made here from Debian's archive with mmdebstrap and tagged with that name, so the
# same Dockerfile builds here and anywhere. Usage: hack/image.sh <image ref>.
set -euo pipefail
cd "$(dirname "$0")/.."
image=${1:?usage: hack/image.sh <image ref>}
base=${BASE:-docker.io/library/debian:bookworm-slim}
say() { printf '[image %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
t0=$(date +%s)
engine=$(bash hack/engine.sh)
say "engine: $engine"

if ! "$engine" image inspect "$base" >/dev/null 2>&1 && ! "$engine" pull -q "$base" >/dev/null 2>&1; then
  say "$base cannot be pulled: making an equivalent from Debian's archive with mmdebstrap (once, ~1 min)"
  command -v mmdebstrap >/dev/null || bash hack/install-node.sh
  tar=$(mktemp --suffix=.tar)
  trap 'rm -f "$tar"' EXIT
  # minbase, no docs, man pages or locales, apt lists emptied: what debian:bookworm-slim holds.
  # The merged-usr hook makes /usr merged as debootstrap does, without the usrmerge package (and
  # the ~45 MB of perl it pulls in).
  hooks=/usr/share/mmdebstrap/hooks/merged-usr
  mmdebstrap --quiet --variant=minbase --format=tar ${hooks:+$( [ -d "$hooks" ] && echo --hook-dir="$hooks")} \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
    bookworm "$tar" http://deb.debian.org/debian
  "$engine" import --change 'CMD ["bash"]' "$tar" "$base" >/dev/null
  say "made $base ($(( $(stat -c %s "$tar") / 1048576 )) MiB uncompressed)"
fi

# The builder's CA bundle, for pip behind a proxy that re-signs TLS (an empty file where none is needed).
cacert=${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}
[ -r "$cacert" ] || cacert=/dev/null
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
say "building $image"
"$engine" build --secret "id=cacert,src=$cacert" --build-arg "BASE=$base" --build-arg "REVISION=$revision" \
  --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)" -t "$image" .
size=$("$engine" image inspect "$image" --format '{{.Size}}')
say "built $image: $(( size / 1000000 )) MB in $(( $(date +%s) - t0 ))s"
