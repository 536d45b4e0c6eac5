#!/usr/bin/env bash
# Configures podman (and buildah) for these machines once, in a drop-in of its own
# (/etc/containers/containers.conf.d/50-trigger-operator.conf), so every call works without flags:
# - runtime runc: crun refuses the hybrid cgroup layout ("cgroups in hybrid mode not supported");
# - default ulimits nofile and nproc at the host's hard limits (nproc at most kernel.pid_max): root here lacks CAP_SYS_RESOURCE,
#   so podman's default (higher) limits are refused ("setrlimit RLIMIT_NPROC: Operation not permitted");
# - cgroupfs and file events: no systemd or journald here.
# Rewritten only when its content changes. A machine with Docker never needs it.
set -euo pipefail
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
nofile=$(ulimit -Hn); nproc=$(ulimit -Hu)
[ "$nofile" = unlimited ] && nofile=1048576
[ "$nproc" = unlimited ] && nproc=65536
# Found by trying: an nproc above kernel.pid_max (32768 here) is refused as well.
pid_max=$(cat /proc/sys/kernel/pid_max 2>/dev/null || echo 32768)
[ "$nproc" -gt "$pid_max" ] && nproc=$pid_max
conf=/etc/containers/containers.conf.d/50-trigger-operator.conf
want=$(cat <<CONF
# Written by trigger-operator's hack/podman-setup.sh (see there why).
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
)
if [ "$(cat "$conf" 2>/dev/null)" != "$want" ]; then
  $SUDO mkdir -p "$(dirname "$conf")"
  printf '%s\n' "$want" | $SUDO tee "$conf" >/dev/null
  printf '[podman] configured %s (runc; nofile %s, nproc %s)\n' "$conf" "$nofile" "$nproc" >&2
fi
