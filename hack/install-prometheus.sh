#!/usr/bin/env bash
# A real Prometheus for the tests that need one (the prometheus condition source): Debian's package,
# installed once per machine. Its service is not started: the tests run their own server.
set -euo pipefail
if command -v prometheus >/dev/null 2>&1; then exit 0; fi
say() { printf '[prometheus] %s\n' "$*" >&2; }
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
say "installing Debian's prometheus package (once per machine, about a minute)"
policy=/usr/sbin/policy-rc.d
made_policy=""
if [ ! -e "$policy" ]; then  # keep the package's init script from starting a daemon
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null && $SUDO chmod +x "$policy" && made_policy=1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
[ -z "$made_policy" ] || $SUDO rm -f "$policy"
say "$(prometheus --version 2>&1 | head -1)"
