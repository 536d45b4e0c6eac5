#!/usr/bin/env bash
# `make kind-e2e`: the install path on a real cluster. A kind cluster (kept for re-runs), the
# operator's image built and loaded into it, the chart installed (real image, real pods), one Trigger
# fired end to end by the installed operator, the chart uninstalled, then the same integration tests
# as `make test` against that cluster (KUBECONFIG), exactly as they run on the local control plane.
# Needs Docker or Podman and kind; our CI machines have no kind, so `make test` never calls it (its
# real-node tier, tests/node, installs the chart on a real node of the local control plane instead).
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '[kind-e2e] %s\n' "$*" >&2; }
cluster="${KIND_CLUSTER:-trigger-operator-e2e}"
image="${IMAGE:-ghcr.io/trigger-operator/trigger-operator:0.1.0}"
command -v kind >/dev/null || { say "needs kind (https://kind.sigs.k8s.io)"; exit 2; }
engine=$(bash hack/engine.sh) || { say "needs Docker or Podman"; exit 2; }
export KUBECONFIG="$PWD/.cluster-kind/kubeconfig"
mkdir -p .cluster-kind
if ! kind get clusters | grep -qx "$cluster"; then
  say "creating kind cluster $cluster"
  kind create cluster --name "$cluster" --kubeconfig "$KUBECONFIG" --wait 120s
fi
say "building $image and loading it into the cluster"
bash hack/image.sh "$image"
kind load docker-image "$image" --name "$cluster"
helm="$(bash hack/build-binaries.sh)/helm"
say "installing the chart"
"$helm" upgrade --install trigger-operator helm/trigger-operator -n trigger-operator-system --create-namespace \
  --set image.repository="${image%:*}" --set image.tag="${image##*:}" --set image.pullPolicy=Never --wait --timeout 180s
kubectl apply -f examples/every-minute.yaml -n default
say "waiting for the every-minute sample's first Job to complete (up to 2 minutes)"
for _ in $(seq 1 60); do
  if kubectl get jobs -n default -l trigger-operator.io/trigger=every-minute \
      -o jsonpath='{.items[*].status.succeeded}' | grep -q 1; then ok=1; break; fi
  sleep 2
done
[ -n "${ok:-}" ] || { say "no Job of the every-minute sample completed"; exit 1; }
kubectl delete -f examples/every-minute.yaml -n default --wait=true
"$helm" uninstall trigger-operator -n trigger-operator-system --wait
# The webhook tests serve from this machine: kind's API server reaches it at the gateway of the
# container network "kind" (its IPv4 one).
gateway=$("$engine" network inspect kind -f '{{range .IPAM.Config}}{{.Gateway}} {{end}}' | tr ' ' '\n' | grep -m1 '\.')
say "running the integration tests against kind (webhooks served at $gateway)"
TRIGGER_OPERATOR_TEST_WEBHOOK_HOST="$gateway" .venv/bin/pytest tests/integration -v
