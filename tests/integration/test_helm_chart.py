"""The Helm chart on the real control plane: lint, renders the API server accepts (server-side dry
run) with default and other values, an install whose pods pass the `restricted` Pod Security level,
upgrade and uninstall; and the operator running with exactly the chart's RBAC (a token of the
chart's ServiceAccount), with the verb that fails when a rule is removed."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import yaml

from tests.chart import CHART, chart_identity, forget_cluster_rbac, helm, install_monitoring_crds, render
from tests.harness import (
    SUCCEEDS,
    Kube,
    Operator,
    new_namespace,
    release_and_delete_namespace,
    wait_for,
)
from tests.integration.triggers import trigger
from trigger_operator.jobs.catalog import parse_catalog
from trigger_operator.jobs.render import TriggerRef, render_job
from trigger_operator.model.spec import ActionType
from trigger_operator.model.status import RunKind


def test_the_chart_lints_and_renders_what_the_api_server_accepts(kube: Kube, namespace: str) -> None:
    helm(kube, "lint", str(CHART))
    assert "replicas" in helm(kube, "lint", str(CHART), "--set", "replicas=-1", check=False).stdout
    with_cert_manager = render(kube, namespace, "webhook.certManager.enabled=true")
    assert "Certificate" in {d["kind"] for d in with_cert_manager}
    assert all("cert-manager.io/inject-ca-from" in d["metadata"]["annotations"] for d in with_cert_manager
               if d["kind"].endswith("WebhookConfiguration"))
    install_monitoring_crds(kube)  # the real schemas of ServiceMonitor and PrometheusRule judge ours
    other = new_namespace(kube)
    try:
        for sets in [(), (f"watch.namespaces={{{namespace},{other}}}", "rbac.readSecrets=true",
                          "podDisruptionBudget.enabled=true", "networkPolicy.enabled=true",
                          "networkPolicy.apiServer={10.0.0.2/32}", "argocd.healthCheck=true",
                          "serviceMonitor.enabled=true", "prometheusRule.enabled=true", "dashboard.enabled=true",
                          "replicas=2", "rbac.objectSources[0].apiGroups[0]=example.io",
                          "rbac.objectSources[0].resources[0]=indexes")]:
            documents = render(kube, namespace, *sets)
            kinds = sorted({d["kind"] for d in documents})
            assert {"ClusterRole", "Deployment", "Service", "ServiceAccount", "ConfigMap"} <= set(kinds)
            if sets:
                assert {"ServiceMonitor", "PrometheusRule"} <= set(kinds)
                dashboard = next(d for d in documents if d["metadata"]["name"].endswith("-dashboard"))
                assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
                assert json.loads(dashboard["data"]["trigger-operator.json"])["uid"] == "trigger-operator"
            manifest = "\n---\n".join(yaml.safe_dump(d) for d in documents)
            kube.kubectl("apply", "--dry-run=server", "-f", "-", input=manifest)
    finally:
        release_and_delete_namespace(kube, other)


def test_the_network_policy_admits_only_the_api_server_to_the_webhook_port(kube: Kube, namespace: str) -> None:
    documents = render(kube, namespace, "networkPolicy.enabled=true",
                       "networkPolicy.apiServer={10.0.0.2/32,10.0.0.3/32}",
                       "networkPolicy.from[0].namespaceSelector.matchLabels.team=data")
    [policy] = [d for d in documents if d["kind"] == "NetworkPolicy"]
    by_port = {rule["ports"][0]["port"]: rule.get("from") for rule in policy["spec"]["ingress"]}
    assert by_port == {"http": [{"namespaceSelector": {"matchLabels": {"team": "data"}}}],
                       "webhooks": [{"ipBlock": {"cidr": "10.0.0.2/32"}}, {"ipBlock": {"cidr": "10.0.0.3/32"}}]}
    # Without the API server's addresses the webhooks could not be called: the chart refuses to render.
    refused = helm(kube, "template", "t", str(CHART), "--set", "networkPolicy.enabled=true", check=False)
    assert refused.returncode != 0 and "networkPolicy.apiServer is empty" in refused.stderr
    without_webhooks = render(kube, namespace, "networkPolicy.enabled=true", "webhook.enabled=false")
    [policy] = [d for d in without_webhooks if d["kind"] == "NetworkPolicy"]
    assert [rule["ports"][0]["port"] for rule in policy["spec"]["ingress"]] == ["http"]


def _config_map_verbs(documents: list[dict[str, Any]]) -> set[str]:
    """The verbs the chart's Roles grant on ConfigMaps (in the release namespace)."""
    return {verb for d in documents if d["kind"] == "Role" for rule in d.get("rules") or []
            if "configmaps" in rule.get("resources", []) for verb in rule["verbs"]}


def test_the_chart_is_safe_by_default(kube: Kube, namespace: str) -> None:
    documents = render(kube, namespace, api_versions=("admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy",))
    [deployment] = [d for d in documents if d["kind"] == "Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["TRIGGER_OPERATOR_SOURCES_APPROVAL"] == "required"
    assert env["TRIGGER_OPERATOR_HTTP_METRICS_AUTH"] == "true"
    # The kubelet probes a port of their own, never competing with the API's clients for connections.
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert env["TRIGGER_OPERATOR_HTTP_PROBE_PORT"] == str(ports["probes"]) == "8081"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "probes"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "probes"}
    key_file = env["TRIGGER_OPERATOR_SOURCES_APPROVAL_KEY_FILE"]
    [mount] = [m for m in container["volumeMounts"] if m["name"] == "approval-key"]
    assert mount["readOnly"] is True and key_file.startswith(mount["mountPath"] + "/")
    assert {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"} <= {d["kind"] for d in documents}
    mutating = next(d for d in documents if d["kind"] == "MutatingWebhookConfiguration")
    assert mutating["webhooks"][0]["rules"][0]["operations"] == ["CREATE", "UPDATE"]
    # The event inbox's ConfigMap rights (create, list, delete in the release namespace) only when it is on.
    assert _config_map_verbs(documents) == {"get"}
    inbox = _config_map_verbs(render(kube, namespace, "events.inbox=true"))
    assert inbox == {"get", "create", "list", "delete"}
    opened = render(kube, namespace, "sources.allowedUrls={https://prom.example.com/,https://x.example.com/}",
                    "sources.allowedNetworks={10.96.0.0/12}", "http.tls.secretName=api-tls",
                    "http.eventsAudience=trigger-operator", "sources.approval=off")
    container = next(d for d in opened if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["TRIGGER_OPERATOR_SOURCES_ALLOWED_URLS"] == "https://prom.example.com/,https://x.example.com/"
    assert env["TRIGGER_OPERATOR_SOURCES_ALLOWED_NETWORKS"] == "10.96.0.0/12"
    assert env["TRIGGER_OPERATOR_SOURCES_APPROVAL"] == "off"
    assert env["TRIGGER_OPERATOR_HTTP_EVENTS_AUDIENCE"] == "trigger-operator"
    assert env["TRIGGER_OPERATOR_HTTP_API_TLS_CERT"] == "/etc/trigger-operator/api-tls/tls.crt"
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "probes"}  # plain HTTP, its own port


def test_the_chart_installs_in_a_restricted_namespace_upgrades_and_uninstalls(kube: Kube, tmp_path: Path) -> None:
    ops = new_namespace(kube, labels={"pod-security.kubernetes.io/enforce": "restricted"})
    # The webhooks answer only for this namespace's Triggers: kwok's pods serve nothing, and the
    # other tests' Triggers must not meet a webhook that never answers (failurePolicy Fail).
    values = tmp_path / "values.json"
    values.write_text(json.dumps({"webhook": {"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": ops}}}}))
    try:
        helm(kube, "install", "trg", str(CHART), "-n", ops, "--skip-crds", "--wait=false", "-f", str(values))
        hooks = kube.kubectl("get", "validatingwebhookconfiguration", "trg-trigger-operator", "-o", "json").stdout
        assert json.loads(hooks)["webhooks"][0]["clientConfig"]["caBundle"]
        key = kube.core.read_namespaced_secret("trg-trigger-operator-approval-key", ops).data["key"]
        assert len(key) >= 64
        assert "trg-trigger-operator" in kube.kubectl("get", "validatingadmissionpolicy", "-o", "name").stdout
        pods = wait_for("the operator's pod admitted", lambda: kube.core.list_namespaced_pod(ops).items, timeout=60)
        assert pods[0].spec.security_context.run_as_non_root is True
        helm(kube, "upgrade", "trg", str(CHART), "-n", ops, "--skip-crds", "--set", "replicas=2", "--wait=false",
             "-f", str(values))
        after = kube.kubectl("get", "validatingwebhookconfiguration", "trg-trigger-operator", "-o", "json").stdout
        assert json.loads(after)["webhooks"][0]["clientConfig"]["caBundle"] == json.loads(hooks)["webhooks"][0][
            "clientConfig"]["caBundle"]  # the generated certificate survives upgrades
        # Approvals signed before the upgrade still verify after it.
        assert kube.core.read_namespaced_secret("trg-trigger-operator-approval-key", ops).data["key"] == key
        wait_for("two pods after the upgrade", lambda: len(kube.core.list_namespaced_pod(ops).items) == 2, timeout=60)
        helm(kube, "uninstall", "trg", "-n", ops)
        wait_for("everything gone", lambda: not kube.kubectl("get", "deploy,svc,sa,cm,role", "-n", ops,
                                                             "-l", "app.kubernetes.io/instance=trg", "-o", "name"
                                                             ).stdout.strip(), timeout=60)
        assert "trg-trigger-operator" not in kube.kubectl("get", "clusterrole", "-o", "name").stdout
        assert "trg-trigger-operator" not in kube.kubectl("get", "validatingwebhookconfiguration", "-o", "name").stdout
        assert "trg-trigger-operator" not in kube.kubectl("get", "validatingadmissionpolicy", "-o", "name").stdout
    finally:
        release_and_delete_namespace(kube, ops)


def chart_operator(kube: Kube, namespace: str, tmp_path: Path, kubeconfig: Path) -> Operator:
    return Operator(kube, namespace, tmp_path / "chart-operator.log", kubeconfig=kubeconfig,
                    env={"TRIGGER_OPERATOR_ACTIONS_CONFIG_MAP": f"trg-{namespace}-actions"})


def test_the_operator_runs_with_exactly_the_charts_rbac(kube: Kube, namespace: str, tmp_path: Path) -> None:
    operator = chart_operator(kube, namespace, tmp_path, chart_identity(kube, namespace, tmp_path)).start()
    try:
        kube.apply(trigger("charted", interval=2, pod=SUCCEEDS, successfulJobsHistoryLimit=1), namespace)
        first = wait_for("the first Job", lambda: kube.jobs(namespace, "charted"), timeout=30)[0].metadata.name
        wait_for("runs counted under the chart's RBAC", lambda: kube.status(namespace, "charted")
                 .get("executionCount", 0) >= 3, timeout=60)
        wait_for("the first Job pruned and released (past the name hold)", lambda: first not in
                 [j.metadata.name for j in kube.jobs(namespace, "charted")], timeout=60)
        kube.apply(trigger("catalogued", cron="0 0 1 1 *"), namespace)  # the chart's action catalog
        wait_for("the catalog read", lambda: kube.status(namespace, "catalogued").get("phase") == "Active")
        assert "Forbidden" not in operator.logs() and operator.errors() == []
    finally:
        operator.stop()
        forget_cluster_rbac(kube, namespace)


def test_without_patch_on_jobs_the_finalizer_cannot_be_released_and_the_log_says_so(
        kube: Kube, namespace: str, tmp_path: Path) -> None:
    kubeconfig = chart_identity(kube, namespace, tmp_path, drop=("jobs", "patch"))
    operator = chart_operator(kube, namespace, tmp_path, kubeconfig).start()
    try:
        manifest = trigger("held", interval=3600, pod=SUCCEEDS)
        manifest["spec"]["scheduleConfig"]["startImmediately"] = True
        kube.apply(manifest, namespace)
        wait_for("the run counted", lambda: kube.status(namespace, "held").get("executionCount") == 1, timeout=60)
        [job] = kube.jobs(namespace, "held")
        kube.kubectl("delete", "job", job.metadata.name, "-n", namespace, "--wait=false")  # released after the hold
        wait_for("the refused patch in the log", lambda: "patch" in operator.logs() and "forbidden" in
                 operator.logs().lower(), timeout=30)
        time.sleep(2)
        [job] = kube.jobs(namespace, "held")
        assert "trigger-operator.io/count-result" in (job.metadata.finalizers or [])  # still held
    finally:
        operator.stop()
        forget_cluster_rbac(kube, namespace)


def test_with_a_url_an_action_type_runs_the_action_runner_in_a_job_the_api_server_accepts(
        kube: Kube, namespace: str) -> None:
    url = "https://api.example.com/v1/clusters/{cluster_id}/execute"
    documents = render(kube, namespace, f"actionRunner.urls.cluster={url}", "actionRunner.tokenSecret.name=platform")
    [actions] = [d for d in documents if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-actions")]
    catalog, problems = parse_catalog(actions["data"])
    assert problems == [] and sorted(catalog) == sorted(a.value for a in ActionType)  # a template for each
    container = catalog["cluster"]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["act"] and {"name": "TRIGGER_ACTION_URL", "value": url} in container["env"]
    job = render_job(TriggerRef(namespace=namespace, name="daily", uid="0", action_type="cluster",
                                action_config={"cluster_id": "clust_abc123"}), name="daily-1", kind=RunKind.MANUAL,
                     scheduled_time=dt.datetime.now(dt.UTC), template=catalog["cluster"])
    job["metadata"].pop("ownerReferences")
    kube.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(job))  # restricted-ready, valid
