"""The admission webhooks registered with the real API server: bad manifests refused at `kubectl
apply` with the field and the reason, the creator recorded and never rewritten by an update, and a
Trigger with its own jobTemplate refused for a user who may not create Jobs (but not a Trigger
without one); a source the operator reads with its own rights approved only for a requester who
may get it, an approval got from a forged AdmissionReview refused by the validating webhook when
the mutating one does not run, and never read when its approval was forged or copied while the
webhooks were away; the webhook port answering only
well-formed AdmissionReviews; and the chart's ValidatingAdmissionPolicy refusing a jobTemplate
inside the API server with no webhook registered."""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.chart import chart_identity, forget_cluster_rbac, render
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
from tests.integration.servers import endpoint
from tests.integration.triggers import trigger
from trigger_operator.api import ANNOTATION_SOURCE_APPROVAL

sys.path.insert(0, str(ROOT / "hack"))
import webhook  # hack/webhook.py: the certificate and configurations make run registers too


@dataclass
class Webhooks:
    operator: Operator
    port: int
    configurations: list[dict[str, Any]]

    def skip_mutating(self) -> None:
        """As when the mutating webhook is skipped while the validating one runs (failurePolicy
        Ignore with a replica down, a time-out, a 429): registered with Ignore at a closed port."""
        mutating = json.loads(json.dumps(next(c for c in self.configurations
                                              if c["kind"] == "MutatingWebhookConfiguration")))
        hook = mutating["webhooks"][0]
        hook["failurePolicy"] = "Ignore"
        hook["clientConfig"]["url"] = hook["clientConfig"]["url"].replace(f":{self.port}/", f":{free_port()}/")
        kube = self.operator.kube
        kube.apply(mutating)

        def skipped() -> bool:  # a server-side dry run the mutating webhook would give a creator
            probe = kube.kubectl("create", "--dry-run=server", "-o", "json", "-n", self.operator.namespace, "-f", "-",
                                 input=json.dumps(trigger("skip-probe", cron="0 2 * * *")), check=False)
            return probe.returncode == 0 and "created-by" not in probe.stdout

        wait_for("the mutating webhook skipped", skipped, timeout=30)

    def unregister(self) -> None:
        """As when the webhooks are down, set to Ignore, or bypassed: the API server calls nothing."""
        for c in self.configurations:
            self.operator.kube.kubectl("delete", c["kind"].lower(), c["metadata"]["name"], "--ignore-not-found")


@pytest.fixture
def webhooks(kube: Kube, namespace: str, tmp_path: Path) -> Iterator[Webhooks]:
    catalog = actions_config_map(namespace)
    del catalog["data"]["batch_rerun"]  # an action type with no template
    kube.apply(catalog)
    # The API server calls the operator under test on this machine: at 127.0.0.1 for the local
    # control plane, at the container network's gateway for kind (hack/kind-e2e.sh sets it).
    host = os.environ.get("TRIGGER_OPERATOR_TEST_WEBHOOK_HOST", "127.0.0.1")
    cert, key, ca = webhook.serving_certificate(tmp_path, host=host)
    # The chart's rights with Secrets readable: the case where a tokenSecret would hand them out.
    identity = chart_identity(kube, namespace, tmp_path, sets=("rbac.readSecrets=true",))
    operator = Operator(kube, namespace, tmp_path / "operator.log", kubeconfig=identity)
    operator.env.update(TRIGGER_OPERATOR_HTTP_TLS_CERT=str(cert), TRIGGER_OPERATOR_HTTP_TLS_KEY=str(key))
    operator.env["TRIGGER_OPERATOR_HTTP_WEBHOOK_PORT"] = str(port := free_port())
    # Approvals as the chart has them (the harness turns them off for tests without webhooks).
    (approval_key := tmp_path / "approval.key").write_text(secrets.token_hex(32))
    operator.env.update(TRIGGER_OPERATOR_SOURCES_APPROVAL="required",
                        TRIGGER_OPERATOR_SOURCES_APPROVAL_KEY_FILE=str(approval_key))
    if host != "127.0.0.1":
        operator.env["TRIGGER_OPERATOR_HTTP_HOST"] = "0.0.0.0"  # reachable from the cluster's network
    operator.start()
    configurations = webhook.configurations(port, ca, failure_policy="Fail", namespace=namespace,
                                            suffix=f"-{namespace}", host=host)
    hooks = Webhooks(operator, port, configurations)
    try:
        for c in configurations:
            kube.apply(c)
        wait_for("the webhook to answer", lambda: "denied the request" in kube.apply(
            trigger("probe", cron="61 * * * *"), namespace=namespace, check=False).stderr, timeout=30)
        yield hooks
    finally:
        hooks.unregister()
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
        kube: Kube, namespace: str, webhooks: Webhooks, spec: dict[str, Any], says: str) -> None:
    manifest = trigger("bad", **spec)
    refused = kube.apply(manifest, namespace=namespace, check=False)
    assert refused.returncode != 0 and says in refused.stderr, refused.stderr
    assert kube.kubectl("get", "trg", "-n", namespace, "-o", "name").stdout.strip() == ""


def test_the_creator_is_recorded_never_rewritten_and_job_templates_need_the_right_to_create_jobs(
        kube: Kube, namespace: str, webhooks: Webhooks, tmp_path: Path) -> None:
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
    # An update may not say someone else created it.
    rewritten = trigger("plain", cron="0 3 * * *")
    rewritten["metadata"]["annotations"] = {"trigger-operator.io/created-by": "system:admin"}
    updated = apply(rewritten)
    assert updated.returncode == 0, updated.stderr
    stored = kube.trigger(namespace, "plain")
    assert stored["spec"]["scheduleConfig"]["cronExpression"] == "0 3 * * *"
    assert stored["metadata"]["annotations"]["trigger-operator.io/created-by"] == (
        f"system:serviceaccount:{namespace}:limited")
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
    assert webhooks.operator.errors() == []


TRIGGER_RIGHTS = [{"apiGroups": ["trigger-operator.io"], "resources": ["triggers"],
                   "verbs": ["get", "list", "create", "patch", "update"]}]


def tenant(kube: Kube, namespace: str, folder: Path, name: str = "tenant") -> Path:
    """A kubeconfig of a ServiceAccount that may edit Triggers and nothing else (no Secrets, no Jobs)."""
    token = service_account_token(kube, namespace, name)
    grant(kube, namespace, name, TRIGGER_RIGHTS)
    return token_kubeconfig(kube, token, folder / f"{name}.kubeconfig")


def as_user(kube: Kube, kubeconfig: Path, namespace: str, manifest: dict[str, Any], *args: str) -> Any:
    return kube.kubectl(f"--kubeconfig={kubeconfig}", "apply", "-n", namespace, "-f", "-", *args,
                        input=json.dumps(manifest), check=False)


def token_secret(kube: Kube, namespace: str) -> str:
    value = f"secret-{secrets.token_hex(8)}"
    kube.core.create_namespaced_secret(namespace, {"metadata": {"name": "api-token"},
                                                   "data": {"token": base64.b64encode(value.encode()).decode()}})
    return value


def reads_token(name: str, url: str) -> dict[str, Any]:
    """A conditional Trigger (the catalog's template) whose http source sends Secret api-token to ``url``."""
    manifest = trigger(name, triggerType="conditional")
    manifest["spec"]["scheduleConfig"] = {
        "conditionType": "threshold", "metric": "value", "threshold": 10, "checkIntervalSeconds": 1,
        "source": {"http": {"url": url, "jsonPath": ".value", "tokenSecret": {"name": "api-token", "key": "token"}}}}
    return manifest


def test_a_tenant_may_not_send_a_secret_it_cannot_read_to_its_own_url(
        kube: Kube, namespace: str, webhooks: Webhooks, tmp_path: Path) -> None:
    value = token_secret(kube, namespace)
    as_tenant = tenant(kube, namespace, tmp_path)
    with endpoint() as theirs, endpoint() as other:
        theirs.document = other.document = {"value": 1}
        refused = as_user(kube, as_tenant, namespace, reads_token("steal", f"{theirs.url}/doc"))
        assert refused.returncode != 0, refused.stdout
        assert "spec.scheduleConfig.source.http.tokenSecret" in refused.stderr
        assert f"system:serviceaccount:{namespace}:tenant may not get Secret api-token" in refused.stderr
        # The admin may: approved, and read with the token.
        kube.apply(reads_token("approved", f"{theirs.url}/doc"), namespace=namespace)
        assert kube.trigger(namespace, "approved")["metadata"]["annotations"][ANNOTATION_SOURCE_APPROVAL]
        wait_for("the approved source read with its token", lambda: f"Bearer {value}" in theirs.seen_authorization,
                 timeout=30)
        # The tenant changes only the url of the admin's approved Trigger: refused too.
        redirected = as_user(kube, as_tenant, namespace, reads_token("approved", f"{other.url}/doc"))
        assert redirected.returncode != 0 and "may not get Secret api-token" in redirected.stderr, redirected.stderr
        assert kube.trigger(namespace, "approved")["spec"]["scheduleConfig"]["source"]["http"]["url"] == (
            f"{theirs.url}/doc")
        # ... while an edit that leaves the source alone keeps the approval (a pause).
        paused = reads_token("approved", f"{theirs.url}/doc")
        paused["spec"]["state"] = "paused"
        kept = as_user(kube, as_tenant, namespace, paused)
        assert kept.returncode == 0, kept.stderr
        time.sleep(2)
        assert other.seen_authorization == []
    assert value not in webhooks.operator.logs()


def test_an_approval_forged_or_copied_while_the_webhooks_are_away_is_never_read(
        kube: Kube, namespace: str, webhooks: Webhooks) -> None:
    value = token_secret(kube, namespace)
    with endpoint() as theirs:
        theirs.document = {"value": 1}
        kube.apply(reads_token("approved", f"{theirs.url}/doc"), namespace=namespace)
        approval = kube.trigger(namespace, "approved")["metadata"]["annotations"][ANNOTATION_SOURCE_APPROVAL]
        kube.kubectl("delete", "trigger", "approved", "-n", namespace)
        webhooks.unregister()
        time.sleep(2)  # the operator's last check of the deleted Trigger may still be on its way
        theirs.seen_authorization.clear()
        for name, signature in [("copied", approval), ("forged", f"v2.{'0' * 32}.{'0' * 64}")]:
            manifest = reads_token(name, f"{theirs.url}/doc")
            manifest["metadata"]["annotations"] = {ANNOTATION_SOURCE_APPROVAL: signature}
            kube.apply(manifest, namespace=namespace)
        for name in ("copied", "forged"):
            wait_for(f"{name}: not approved, in status", lambda n=name: "not approved" in json.dumps(  # type: ignore[misc]
                kube.status(namespace, n)), timeout=30)
        time.sleep(3)
        assert theirs.seen_authorization == []
    assert value not in webhooks.operator.logs()


def test_an_approval_from_a_forged_review_is_refused_when_the_mutating_webhook_does_not_run(
        kube: Kube, namespace: str, webhooks: Webhooks, tmp_path: Path) -> None:
    value = token_secret(kube, namespace)
    as_tenant = tenant(kube, namespace, tmp_path)
    with endpoint() as theirs:
        theirs.document = {"value": 1}
        manifest = reads_token("forged", f"{theirs.url}/doc")
        # Any pod that reaches the webhook port: a well-formed review, with a user of its choosing.
        forged = review(namespace=namespace, object=manifest, userInfo={
            "username": f"system:serviceaccount:{namespace}:tenant", "groups": ["system:masters"]})
        with httpx.Client(verify=False, timeout=10) as client:
            answer = client.post(f"https://127.0.0.1:{webhooks.port}/admission/mutate", json=forged).json()
        assert answer["response"]["allowed"] is True, answer
        [patch] = json.loads(base64.b64decode(answer["response"]["patch"]))
        signature = patch["value"][ANNOTATION_SOURCE_APPROVAL]
        manifest["metadata"]["annotations"] = {ANNOTATION_SOURCE_APPROVAL: signature}
        # The API server tells the validating webhook who really writes: not that user.
        webhooks.skip_mutating()
        refused = as_user(kube, as_tenant, namespace, manifest)
        assert refused.returncode != 0, refused.stdout
        assert (f"metadata.annotations[{ANNOTATION_SOURCE_APPROVAL}]: not made by the operator's mutating webhook for "
                "this request's user") in refused.stderr, refused.stderr
        assert "the mutating webhook did not run, or the approval was copied or forged" in refused.stderr
        assert kube.kubectl("get", "trg", "forged", "-n", namespace, "--ignore-not-found", "-o", "name").stdout == ""
        time.sleep(2)
        assert theirs.seen_authorization == []
    assert value not in webhooks.operator.logs()


def review(operation: str = "CREATE", **request: Any) -> dict[str, Any]:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "forged-1", "operation": operation, "namespace": "kube-system",
        "kind": {"group": "trigger-operator.io", "version": "v1alpha1", "kind": "Trigger"},
        "resource": {"group": "trigger-operator.io", "version": "v1alpha1", "resource": "triggers"},
        "userInfo": {"username": "system:serviceaccount:kube-system:admin-ish"},
        "object": trigger("forged", cron="0 2 * * *", pod=SUCCEEDS), **request}}


def test_a_forged_admission_review_from_a_plain_client_gets_400_unless_well_formed(webhooks: Webhooks) -> None:
    url = f"https://127.0.0.1:{webhooks.port}/admission"
    with httpx.Client(verify=False, timeout=10) as client:
        for body in [{"hello": "world"}, {**review(), "apiVersion": "admission.k8s.io/v1beta1"},
                     review(userInfo={}), review(kind={"group": "", "version": "v1", "kind": "Secret"}),
                     review(operation="ASK")]:
            for path in ("validate", "mutate"):
                answer = client.post(f"{url}/{path}", json=body)
                assert answer.status_code == 400, (path, body, answer.text)
        # Well-formed, it is answered: the port cannot tell the API server from a pod (the chart's
        # NetworkPolicy admits only the API server to it: tests/integration/test_helm_chart.py).
        answered = client.post(f"{url}/validate", json=review()).json()["response"]
        assert answered["uid"] == "forged-1" and answered["allowed"] is False


def test_the_charts_admission_policy_refuses_what_the_requester_may_not_do_with_no_webhook(
        kube: Kube, namespace: str, tmp_path: Path) -> None:
    documents = render(kube, namespace, f"fullnameOverride=vap-{namespace}",
                       f"webhook.namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name={namespace}",
                       api_versions=("admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy",))
    policy = [d for d in documents if d["kind"].startswith("ValidatingAdmissionPolicy")]
    assert len(policy) == 2
    as_tenant = tenant(kube, namespace, tmp_path)
    kube.apply(actions_config_map(namespace))
    kube.core.create_namespaced_config_map(namespace, {"metadata": {"name": "stats"}, "data": {"value": "1"}})
    token_secret(kube, namespace)
    own_template = trigger("own-template", cron="0 2 * * *", pod=SUCCEEDS)
    config_map = trigger("from-config-map", triggerType="conditional")
    config_map["spec"]["scheduleConfig"] = {"conditionType": "threshold", "metric": "value", "threshold": 10,
                                            "checkIntervalSeconds": 60,
                                            "source": {"configMap": {"name": "stats", "key": "value"}}}
    try:
        for d in policy:
            kube.apply(d)
        # A policy is in force once the API server has compiled it: probe with dry runs, which write nothing.
        wait_for("the policy in force", lambda: as_user(kube, as_tenant, namespace, own_template,
                                                        "--dry-run=server").returncode != 0, timeout=60)
        refused = as_user(kube, as_tenant, namespace, own_template)
        assert refused.returncode != 0, kube.kubectl("get", "validatingadmissionpolicy", policy[0]["metadata"]["name"],
                                                     "-o", "yaml").stdout
        assert f"spec.jobTemplate: system:serviceaccount:{namespace}:tenant may not create Jobs" in refused.stderr
        assert "ValidatingAdmissionPolicy" in refused.stderr
        token = as_user(kube, as_tenant, namespace, reads_token("steal", "https://collector.example.net/doc"))
        assert "spec.scheduleConfig.source.http.tokenSecret" in token.stderr and token.returncode != 0
        read = as_user(kube, as_tenant, namespace, config_map)
        assert "spec.scheduleConfig.source.configMap" in read.stderr and read.returncode != 0
        signs = trigger("signs", cron="0 2 * * *")
        signs["spec"]["notifications"] = {"sinks": [{"uri": "https://hooks.example.net/in"}],
                                          "signingSecretRef": {"name": "api-token", "key": "token"}}
        signing = as_user(kube, as_tenant, namespace, signs)
        assert "spec.notifications.signingSecretRef" in signing.stderr and signing.returncode != 0, signing.stderr
        plain = as_user(kube, as_tenant, namespace, trigger("plain", cron="0 2 * * *"))
        assert plain.returncode == 0, plain.stderr
        # The admin may; the tenant may then edit it, leaving the template as it is.
        kube.apply(own_template, namespace=namespace)
        kube.apply(reads_token("approved", "https://collector.example.net/doc"), namespace=namespace)
        own_template["spec"]["state"] = "paused"
        paused = as_user(kube, as_tenant, namespace, own_template)
        assert paused.returncode == 0, paused.stderr
        moved = as_user(kube, as_tenant, namespace, reads_token("approved", "https://other.example.net/doc"))
        assert moved.returncode != 0 and "may not get Secret api-token" in moved.stderr, moved.stderr
    finally:
        for d in policy:
            kube.kubectl("delete", d["kind"].lower(), d["metadata"]["name"], "--ignore-not-found")
