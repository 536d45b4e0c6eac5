"""The admission webhooks registered with the real API server: bad manifests refused at `kubectl
apply` with the field and the reason, the creator recorded, and a Trigger with its own jobTemplate
refused for a user who may not create Jobs (but not a Trigger without one)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chart import chart_identity, forget_cluster_rbac
from tests.harness import (
    ROOT,
    SUCCEEDS,
    Kube,
    Operator,
    actions_config_map,
    free_port,
    grant,
    service_account_token,
    token_kubeconfig,
    wait_for,
)
from tests.integration.triggers import trigger

sys.path.insert(0, str(ROOT / "hack"))
import webhook  # hack/webhook.py: the certificate and configurations make run registers too


@pytest.fixture
def webhooks(kube: Kube, namespace: str, tmp_path: Path) -> Iterator[Operator]:
    catalog = actions_config_map(namespace)
    del catalog["data"]["batch_rerun"]  # an action type with no template
    kube.apply(catalog)
    # The API server calls the operator under test on this machine: at 127.0.0.1 for the local
    # control plane, at the container network's gateway for kind (hack/kind-e2e.sh sets it).
    host = os.environ.get("TRIGGER_OPERATOR_TEST_WEBHOOK_HOST", "127.0.0.1")
    cert, key, ca = webhook.serving_certificate(tmp_path, host=host)
    identity = chart_identity(kube, namespace, tmp_path)
    operator = Operator(kube, namespace, tmp_path / "operator.log", kubeconfig=identity)
    operator.env.update(TRIGGER_OPERATOR_HTTP_TLS_CERT=str(cert), TRIGGER_OPERATOR_HTTP_TLS_KEY=str(key))
    operator.env["TRIGGER_OPERATOR_HTTP_WEBHOOK_PORT"] = str(port := free_port())
    if host != "127.0.0.1":
        operator.env["TRIGGER_OPERATOR_HTTP_HOST"] = "0.0.0.0"  # reachable from the cluster's network
    operator.start()
    configurations = webhook.configurations(port, ca, failure_policy="Fail", namespace=namespace,
                                            suffix=f"-{namespace}", host=host)
    try:
        for c in configurations:
            kube.apply(c)
        wait_for("the webhook to answer", lambda: "denied the request" in kube.apply(
            trigger("probe", cron="61 * * * *"), namespace=namespace, check=False).stderr, timeout=30)
        yield operator
    finally:
        for c in configurations:
            kube.kubectl("delete", c["kind"].lower(), c["metadata"]["name"], "--ignore-not-found")
        operator.stop()
        forget_cluster_rbac(kube, namespace)


@pytest.mark.parametrize(("spec", "says"), [
    pytest.param({"cron": "61 * * * *"}, "spec.scheduleConfig.cronExpression: minute field", id="minute-61"),
    pytest.param({"cron": "0 2 * * *", "timezone": "Mars/Base"}, "spec.scheduleConfig.timezone: unknown time zone",
                 id="unknown-zone"),
    pytest.param({"cron": "0 0 30 2 *"}, "never fires", id="february-30th"),
    pytest.param({"cron": "0 2 * * *", "actionType": "batch_rerun"},
                 "spec.actionType: no Job template for action type 'batch_rerun'", id="no-template"),
])
def test_kubectl_apply_of_a_bad_trigger_is_refused_naming_the_field(
        kube: Kube, namespace: str, webhooks: Operator, spec: dict[str, Any], says: str) -> None:
    manifest = trigger("bad", **spec)
    refused = kube.apply(manifest, namespace=namespace, check=False)
    assert refused.returncode != 0 and says in refused.stderr, refused.stderr
    assert kube.kubectl("get", "trg", "-n", namespace, "-o", "name").stdout.strip() == ""


def test_the_creator_is_recorded_and_job_templates_need_the_right_to_create_jobs(
        kube: Kube, namespace: str, webhooks: Operator, tmp_path: Path) -> None:
    token = service_account_token(kube, namespace, "limited")
    grant(kube, namespace, "limited", [{"apiGroups": ["trigger-operator.io"], "resources": ["triggers"],
                                        "verbs": ["get", "list", "create", "patch"]}])
    as_limited = token_kubeconfig(kube, token, tmp_path / "limited.kubeconfig")

    def apply(manifest: dict[str, Any]) -> Any:
        return kube.kubectl(f"--kubeconfig={as_limited}", "apply", "-n", namespace, "-f", "-",
                            input=json.dumps(manifest), check=False)

    plain = apply(trigger("plain", cron="0 2 * * *"))
    assert plain.returncode == 0, plain.stderr
    annotations = kube.trigger(namespace, "plain")["metadata"]["annotations"]
    assert annotations["trigger-operator.io/created-by"] == f"system:serviceaccount:{namespace}:limited"
    own = apply(trigger("own-template", cron="0 2 * * *", pod=SUCCEEDS))
    assert own.returncode != 0
    assert "may not create Jobs in namespace" in own.stderr and "spec.jobTemplate" in own.stderr
    grant(kube, namespace, "limited-jobs", [{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create"]}])
    kube.kubectl("create", "rolebinding", "limited-jobs-too", "-n", namespace, "--role=limited-jobs",
                 f"--serviceaccount={namespace}:limited")
    allowed = wait_for("the template allowed once the user may create Jobs",
                       lambda: (r := apply(trigger("own-template", cron="0 2 * * *", pod=SUCCEEDS))).returncode == 0
                       and r, timeout=30)
    assert allowed
    assert webhooks.errors() == []
