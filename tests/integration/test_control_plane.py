"""The control plane is real: nodes, Jobs, ServiceAccount tokens, RBAC, Pod Security, our CRDs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from tests.harness import HOLDS, ROOT, SUCCEEDS, Kube, PodBehaviour, fails, wait_for


def job(name: str, pod: PodBehaviour) -> dict[str, object]:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"backoffLimit": 0, "template": pod.pod_template()}}


def job_condition(kube: Kube, namespace: str, name: str) -> str | None:
    status = kube.batch.read_namespaced_job(name, namespace).status
    for condition in status.conditions or []:
        if condition.type in ("Complete", "Failed") and condition.status == "True":
            return str(condition.type)
    return None


def test_nodes_are_ready_and_schedulable(kube: Kube) -> None:
    nodes = kube.core.list_node().items
    assert nodes, "the cluster has no nodes"
    ready = [n.metadata.name for n in nodes
             if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])]
    assert sorted(ready) == sorted(n.metadata.name for n in nodes)
    assert any(not n.spec.unschedulable and not n.spec.taints for n in nodes)


def test_a_job_completes(kube: Kube, namespace: str) -> None:
    kube.apply(job("ok", SUCCEEDS), namespace)
    assert wait_for("Job ok to finish", lambda: job_condition(kube, namespace, "ok")) == "Complete"


def test_a_job_marked_to_fail_ends_failed_with_the_container_message(kube: Kube, namespace: str) -> None:
    kube.apply(job("bad", fails(42, "disk full")), namespace)
    assert wait_for("Job bad to finish", lambda: job_condition(kube, namespace, "bad")) == "Failed"
    pods = kube.core.list_namespaced_pod(namespace, label_selector="batch.kubernetes.io/job-name=bad").items
    terminated = pods[0].status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.message) == (42, "disk full")


def test_a_job_marked_to_hold_keeps_running(kube: Kube, namespace: str) -> None:
    kube.apply(job("held", HOLDS), namespace)
    wait_for("the held pod to run", lambda: [
        p for p in kube.core.list_namespaced_pod(namespace, label_selector="batch.kubernetes.io/job-name=held").items
        if p.status.phase == "Running"])
    assert job_condition(kube, namespace, "held") is None
    assert kube.batch.read_namespaced_job("held", namespace).status.active == 1


def token_kubeconfig(kube: Kube, token: str, path: Path) -> Path:
    """A kubeconfig for the same server that authenticates with nothing but ``token``."""
    config = yaml.safe_load(kube.kubeconfig.read_text())
    context = next(c for c in config["contexts"] if c["name"] == config["current-context"])["context"]
    cluster = next(c for c in config["clusters"] if c["name"] == context["cluster"])
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "token",
        "clusters": [cluster], "users": [{"name": "token", "user": {"token": token}}],
        "contexts": [{"name": "token", "context": {"cluster": cluster["name"], "user": "token"}}]}))
    return path


def test_a_service_account_token_is_accepted_and_rbac_denies_until_granted(
        kube: Kube, namespace: str, tmp_path: Path) -> None:
    kube.kubectl("create", "serviceaccount", "reader", "-n", namespace)
    token = kube.kubectl("create", "token", "reader", "-n", namespace).stdout.strip()
    as_reader = [f"--kubeconfig={token_kubeconfig(kube, token, tmp_path / 'token.kubeconfig')}", "-n", namespace]
    whoami = kube.kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}", *as_reader)
    assert whoami.stdout == f"system:serviceaccount:{namespace}:reader"
    denied = kube.kubectl("get", "pods", *as_reader, check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()
    sa = f"system:serviceaccount:{namespace}:reader"
    can_i = kube.kubectl("auth", "can-i", "list", "pods", "-n", namespace, f"--as={sa}", check=False)
    assert can_i.stdout.strip() == "no"
    kube.kubectl("create", "role", "pod-reader", "--verb=get,list", "--resource=pods", "-n", namespace)
    kube.kubectl("create", "rolebinding", "reader", "--role=pod-reader", f"--serviceaccount={namespace}:reader",
                 "-n", namespace)
    assert wait_for("RBAC to allow the reader", lambda: kube.kubectl(
        "get", "pods", *as_reader, check=False).returncode == 0, timeout=30)
    assert kube.kubectl("auth", "can-i", "delete", "pods", "-n", namespace, f"--as={sa}",
                        check=False).stdout.strip() == "no"


def test_pod_security_restricted_rejects_a_privileged_pod(kube: Kube, namespace: str) -> None:
    kube.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "root"},
           "spec": {"containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": True}}]}}
    result = kube.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(pod), check=False)
    assert result.returncode != 0
    assert 'violates PodSecurity "restricted' in result.stderr


def test_every_crd_in_the_repo_is_installed_and_served(kube: Kube) -> None:
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        plural, group = crd["spec"]["names"]["plural"], crd["spec"]["group"]
        served = kube.kubectl("api-resources", f"--api-group={group}", "-o", "name").stdout.split()
        assert f"{plural}.{group}" in served
        assert kube.kubectl("get", f"{plural}.{group}", "-A").returncode == 0


def test_the_server_reports_the_kubernetes_version_built_from_go_mod(kube: Kube) -> None:
    """On the harness's control plane the version is the one hack/gomod pins (ldflags are right);
    on another cluster (e.g. kind) it must be new enough for the CRD's CEL rules."""
    version = json.loads(kube.kubectl("get", "--raw", "/version").stdout)
    if "trigger-operator-local" in kube.kubeconfig.read_text():
        gomod = (ROOT / "hack" / "gomod" / "kubernetes" / "go.mod").read_text()
        wanted = re.search(r"^\s*k8s\.io/kubernetes (v\S+)", gomod, re.MULTILINE)
        assert wanted is not None
        assert version["gitVersion"] == wanted.group(1)
        assert version["gitTreeState"] == "clean"
    else:
        assert (int(version["major"]), int(version["minor"].rstrip("+"))) >= (1, 30)
