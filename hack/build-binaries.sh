#!/usr/bin/env bash
# Builds the control-plane binaries (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kwok, helm), the real node's (kubelet, kube-proxy: same Kubernetes module, same version ldflags),
# distribution's OCI registry and the robfig/cron oracle from the wrapper modules in hack/gomod/,
# into a cache folder keyed by their versions and go.sum files. A warm cache makes this a no-op.
#
# The versions live only in hack/gomod/*/go.mod; everything else (ldflags, folder name, tests) reads
# them from there. Prints the folder on stdout's last line; progress goes to stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
gomod="$here/gomod"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod

modver() { (cd "$gomod/$1" && go list -m -f '{{.Version}}' "$2"); }
k8s=$(modver kubernetes k8s.io/kubernetes)
etcd=$(modver etcd go.etcd.io/etcd/server/v3)
kwok=$(modver kwok sigs.k8s.io/kwok)
helm=$(modver helm helm.sh/helm/v3)
cron=$(modver robfig github.com/robfig/cron/v3)
registry=$(modver registry github.com/distribution/distribution/v3)
# Bump when the build flags below change, so that cached binaries are rebuilt.
# 2: kubelet, kube-proxy and registry added.
recipe=2
# The control plane's modules, named: hack/gomod/nats has its own script and cache key
# (hack/build-nats.sh), so adding or bumping it never rebuilds these.
mods=(etcd helm kubernetes kwok registry robfig)
digest=$(for f in go.mod go.sum; do for m in "${mods[@]}"; do cat "$gomod/$m/$f"; done; done 2>/dev/null
         cat "$gomod"/robfig/*.go 2>/dev/null; go version; echo "$recipe")
digest=$(printf '%s' "$digest" | sha256sum | cut -c1-10)
cache="${TRIGGER_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/trigger-operator}"
out="$cache/bin/k8s-$k8s-etcd-$etcd-kwok-$kwok-helm-$helm-$digest"

if [ -f "$out/.complete" ]; then
  echo "binaries: cached in $out" >&2
  echo "$out"; exit 0
fi
mkdir -p "$out"
log() { printf '[build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
started=$(date +%s)
log "cold build into $out (first time only: about 10-14 minutes on 2 cores, most of it kube-apiserver and kubelet)"

build() { # build <module dir> <output name> <package> <ldflags>
  local t0; t0=$(date +%s)
  log "building $2 ..."
  (cd "$gomod/$1" && go build -trimpath -tags notest,grpcnotrace -ldflags "-s -w $4" -o "$out/$2" "$3")
  log "built $2 in $(( $(date +%s) - t0 ))s ($(du -m "$out/$2" | cut -f1) MiB)"
}

minor=${k8s#v1.}; minor=${minor%%.*}
kv=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kv+=" -X $pkg.gitVersion=$k8s -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  kv+=" -X $pkg.gitTreeState=clean -X $pkg.gitCommit=0000000000000000000000000000000000000000"
  kv+=" -X $pkg.buildDate=2026-01-01T00:00:00Z"
done
build etcd etcd go.etcd.io/etcd/server/v3 "-X go.etcd.io/etcd/api/v3/version.GitSHA=$etcd"
build kwok kwok sigs.k8s.io/kwok/cmd/kwok ""
build kubernetes kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$kv"
build kubernetes kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$kv"
build kubernetes kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler "$kv"
build kubernetes kubelet k8s.io/kubernetes/cmd/kubelet "$kv"
build kubernetes kube-proxy k8s.io/kubernetes/cmd/kube-proxy "$kv"
build registry registry github.com/distribution/distribution/v3/cmd/registry \
  "-X github.com/distribution/distribution/v3/version.version=$registry"
hv="-X helm.sh/helm/v3/internal/version.version=$helm -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
hv+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor"
hv+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor"
build helm helm helm.sh/helm/v3/cmd/helm "$hv"
build robfig cron-oracle . ""

cat > "$out/versions.json" <<JSON
{"kubernetes": "$k8s", "etcd": "$etcd", "kwok": "$kwok", "helm": "$helm", "robfig-cron": "$cron", "registry": "$registry"}
JSON
touch "$out/.complete"
log "all binaries built in $(( $(date +%s) - started ))s"
echo "$out"
