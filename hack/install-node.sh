#!/usr/bin/env bash
# What a real node and `make image` need from Debian's archive, installed once per machine (as
# hack/install-prometheus.sh installs Prometheus): podman and buildah (the image), mmdebstrap (a
# Debian base image made locally when none can be pulled), containerd and runc (the node's runtime),
# the CNI plugins, iptables (kube-proxy) and busybox-static (the pause image). No daemon is started.
set -euo pipefail
pkgs=(podman buildah mmdebstrap containerd runc containernetworking-plugins iptables conntrack busybox-static
      uidmap fuse-overlayfs)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} = 0 ] && exit 0
say() { printf '[node-packages %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
say "installing from Debian's archive (once per machine, 1-2 minutes): ${missing[*]}"
t0=$(date +%s)
policy=/usr/sbin/policy-rc.d
made_policy=""
if [ ! -e "$policy" ]; then  # keep the packages' init scripts from starting daemons (containerd)
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null && $SUDO chmod +x "$policy" && made_policy=1
fi
export DEBIAN_FRONTEND=noninteractive
# apt's lock may be held by another install running at the same time: wait for it.
$SUDO apt-get -o DPkg::Lock::Timeout=300 update -qq
$SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
[ -z "$made_policy" ] || $SUDO rm -f "$policy"
say "installed in $(( $(date +%s) - t0 ))s"
