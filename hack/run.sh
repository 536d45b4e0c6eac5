#!/usr/bin/env bash
# `make run`: the operator in the foreground against KUBECONFIG, or against a local control plane
# started here (and left running for `kubectl`; `make cluster-down` stops it), with the CRD, the
# default action catalog and the sample Triggers installed.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '[run] %s\n' "$*" >&2; }

local_cluster=""
if [ -z "${KUBECONFIG:-}" ]; then
  local_cluster=1
  export KUBECONFIG="$PWD/.cluster/kubeconfig"
  if [ -f "$KUBECONFIG" ] && kubectl get --raw /readyz >/dev/null 2>&1; then
    say "using the local control plane already running (.cluster)"
  else
    say "starting a local control plane (the first time builds it from Go modules: several minutes)"
    .venv/bin/python hack/localcluster.py up --dir .cluster >/dev/null
  fi
else
  say "using KUBECONFIG=$KUBECONFIG"
fi

say "installing the CRD, the default action catalog and the sample Triggers (examples/)"
kubectl apply -f crds/ >/dev/null
kubectl wait --for=condition=Established crd/triggers.trigger-operator.io --timeout=60s >/dev/null
kubectl create namespace trigger-operator-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply -f deploy/actions.yaml >/dev/null
kubectl apply -f deploy/sample-event-sender.yaml -f deploy/sample-embedding-stats.yaml >/dev/null
export TRIGGER_OPERATOR_HTTP_HOST="${TRIGGER_OPERATOR_HTTP_HOST:-127.0.0.1}"
export TRIGGER_OPERATOR_HTTP_PORT="${TRIGGER_OPERATOR_HTTP_PORT:-8080}"
url="http://$TRIGGER_OPERATOR_HTTP_HOST:$TRIGGER_OPERATOR_HTTP_PORT"
if [ -n "$local_cluster" ]; then
  # The key that signs source approvals, kept with the cluster so approvals survive a restart.
  key_file="$PWD/.cluster/approval.key"
  [ -s "$key_file" ] || (umask 077 && .venv/bin/python -c 'import secrets; print(secrets.token_hex(32))' >"$key_file")
  export TRIGGER_OPERATOR_SOURCES_APPROVAL_KEY_FILE="$key_file"
  # The samples go in once the operator serves its webhooks, so the mutating one approves their
  # sources (the ConfigMap of recluster-on-drift) for the admin applying them.
  (
    for _ in $(seq 120); do
      curl -fsS "$url/readyz" >/dev/null 2>&1 && break
      sleep 1
    done
    for _ in 1 2 3 4 5; do kubectl apply -f examples/ && break; sleep 2; done
  ) &
else
  kubectl apply -f examples/
  say "KUBECONFIG is set: no webhooks approve sources here, so TRIGGER_OPERATOR_SOURCES_APPROVAL=off: the operator reads configMap, object and tokenSecret sources for any Trigger author"
  export TRIGGER_OPERATOR_SOURCES_APPROVAL="${TRIGGER_OPERATOR_SOURCES_APPROVAL:-off}"
fi
say "watch them with:  KUBECONFIG=$KUBECONFIG kubectl get triggers,jobs -w"
say "HTTP API: $url  (docs: $url/docs). Send events to the event sample:"
say "  TOKEN=\$(kubectl create token event-sender -n default)"
say "  curl -H \"Authorization: Bearer \$TOKEN\" -H 'X-Namespace: default' -H 'Content-Type: application/json' \\"
say "    -d '{\"event_type\": \"documents_added\", \"collection_id\": \"col_abc123\", \"count\": 100}' $url/v1/events"
if [ -n "$local_cluster" ]; then
  export TRIGGER_OPERATOR_HTTP_WEBHOOK_PORT="${TRIGGER_OPERATOR_HTTP_WEBHOOK_PORT:-8443}"
  read -r TRIGGER_OPERATOR_HTTP_TLS_CERT TRIGGER_OPERATOR_HTTP_TLS_KEY < <(
    .venv/bin/python hack/webhook.py .cluster/webhook "$TRIGGER_OPERATOR_HTTP_WEBHOOK_PORT")
  export TRIGGER_OPERATOR_HTTP_TLS_CERT TRIGGER_OPERATOR_HTTP_TLS_KEY
  say "admission webhooks registered: try  kubectl apply -f - <<< '{\"apiVersion\":\"trigger-operator.io/v1alpha1\",\"kind\":\"Trigger\",\"metadata\":{\"name\":\"bad\"},\"spec\":{\"actionType\":\"cluster\",\"triggerType\":\"cron\",\"scheduleConfig\":{\"cronExpression\":\"61 * * * *\"}}}'"
else
  say "KUBECONFIG is set: the admission webhooks are not registered (that API server cannot reach 127.0.0.1); install the chart for them"
fi
say "starting the operator (Ctrl-C stops it)"
exec .venv/bin/trigger-operator run
