"""What only a real node shows (conftest.py installs the chart from the local OCI registry): the
operator's pod under the chart's securityContext and limits, its webhooks called by the API server
through the Service, a Trigger's Job running the action runner for real, an environment too large
for exec, the Lease handed over on the kubelet's SIGTERM, the image's `act` against a local
endpoint, then `helm upgrade` and `helm uninstall`. The tests run in this order (one install)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from tests.harness import wait_for
from tests.node.conftest import (
    LOCAL_IMAGE,
    RELEASE,
    RELEASE_NAMESPACE,
    Installed,
    Recorder,
    operator_ready,
    serve,
)


def trigger(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "trigger-operator.io/v1alpha1", "kind": "Trigger", "metadata": {"name": name},
            "spec": {"actionType": "cluster", "actionConfig": {"cluster_id": name},
                     "triggerType": "interval",
                     "scheduleConfig": {"intervalSeconds": 3600, "startImmediately": True}, **spec}}


def container_process(pod_uid: str, command: str) -> int:
    """The host's pid of the process running ``command`` in the pod (found by its cgroup path)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if pod_uid in (proc / "cgroup").read_text() and command in (proc / "cmdline").read_text():
                return int(proc.name)
        except OSError:
            continue
    raise AssertionError(f"no process {command!r} of pod {pod_uid} on this host")


def test_the_operator_pod_is_ready_on_the_real_node_under_the_charts_security_context(installed: Installed) -> None:
    pod = operator_ready(installed)
    assert pod.spec.node_name == installed.node.name
    container = pod.spec.containers[0]
    assert container.security_context.read_only_root_filesystem is True
    assert container.security_context.capabilities.drop == ["ALL"]
    assert pod.spec.security_context.run_as_user == 10001 and pod.spec.security_context.run_as_non_root
    assert container.resources.limits["memory"] == "512Mi"
    status = pod.status.container_statuses[0]
    assert status.restart_count == 0 and status.image.startswith(installed.image_repository)
    # What the runtime made of it, seen from the host: the operator's process in the pod's cgroup
    # runs as 10001, without capabilities, on a read-only root filesystem.
    pid = container_process(pod.metadata.uid, "trigger-operator")
    status = Path(f"/proc/{pid}/status").read_text()
    assert "\nUid:\t10001\t10001\t10001\t10001\n" in status
    assert "\nCapEff:\t0000000000000000\n" in status
    root = next(line.split() for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
                if line.split()[4] == "/")
    assert "ro" in root[5].split(","), root
    logs = installed.kube.kubectl("logs", "-n", RELEASE_NAMESPACE, pod.metadata.name).stdout
    assert "Traceback" not in logs


def test_the_webhooks_are_called_by_the_api_server_through_the_service(installed: Installed, namespace: str) -> None:
    service = installed.kube.core.read_namespaced_service(RELEASE, RELEASE_NAMESPACE)
    assert service.spec.cluster_ip  # the API server (on the host) reaches it by kube-proxy's rules
    configs = installed.kube.kubectl("get", "validatingwebhookconfigurations,mutatingwebhookconfigurations",
                                     "-o", "jsonpath={.items[*].webhooks[*].clientConfig.service.name}").stdout
    assert configs.split() and set(configs.split()) == {RELEASE}, configs  # by Service, never by URL
    installed.kube.apply(trigger("webhooked", scheduleConfig={"intervalSeconds": 3600}), namespace)
    annotations = installed.kube.trigger(namespace, "webhooked")["metadata"]["annotations"]
    assert annotations["trigger-operator.io/created-by"] == "admin"  # written by the mutating webhook
    refused = installed.kube.kubectl(
        "apply", "-n", namespace, "-f", "-", check=False,
        input='{"apiVersion": "trigger-operator.io/v1alpha1", "kind": "Trigger", "metadata": {"name": "bad"},'
              ' "spec": {"actionType": "cluster", "triggerType": "cron",'
              ' "scheduleConfig": {"cronExpression": "61 * * * *"}}}')
    assert refused.returncode != 0 and "spec.scheduleConfig.cronExpression" in refused.stderr


def test_a_triggers_job_runs_the_action_runner_in_a_real_container(installed: Installed, namespace: str) -> None:
    recorder = installed.recorder
    before = len(recorder.requests)
    installed.kube.apply(trigger("runs"), namespace)
    request = wait_for("the action runner's POST", lambda: recorder.requests[before:] or None, timeout=120)[0]
    assert request["path"] == "/v1/clusters/runs/execute"
    assert request["body"].get("actionConfig", {"cluster_id": "runs"}) == {"cluster_id": "runs"}

    def succeeded() -> dict[str, Any] | None:
        status = installed.kube.status(namespace, "runs")
        return status if status.get("lastExecutionStatus") == "Succeeded" else None
    wait_for("the Trigger to record the run as Succeeded", succeeded, timeout=120)
    job = installed.kube.jobs(namespace, "runs")[0]
    pods = installed.kube.core.list_namespaced_pod(namespace, label_selector=f"job-name={job.metadata.name}").items
    assert pods and pods[0].spec.node_name == installed.node.name
    assert pods[0].status.container_statuses[0].state.terminated.exit_code == 0


def test_a_job_whose_environment_is_too_large_for_exec_fails_and_the_trigger_says_why(
        installed: Installed, namespace: str) -> None:
    """Linux refuses one environment string over 128 KiB (MAX_ARG_STRLEN) at exec: kwok would show
    Complete. The jobTemplate stays under its 64 KiB bound; the value comes from a ConfigMap. runc
    (1.1) starts the container and its exec fails: exit code 1, the reason only in the container's
    log, so the template asks for FallbackToLogsOnError (as the chart's action runner template does)."""
    kube = installed.kube
    kube.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"},
                "data": {"value": "x" * (200 * 1024)}}, namespace)
    image = f"{installed.image_repository}:{LOCAL_IMAGE.rsplit(':', 1)[1]}"
    kube.apply(trigger("too-large", jobTemplate={"spec": {"backoffLimit": 0, "template": {"spec": {
        "restartPolicy": "Never",
        "containers": [{"name": "action", "image": image, "command": ["/bin/true"],
                        "terminationMessagePolicy": "FallbackToLogsOnError",
                        "env": [{"name": "BIG", "valueFrom": {"configMapKeyRef": {"name": "big", "key": "value"}}}]}],
    }}}}), namespace)

    def failed() -> dict[str, Any] | None:
        status = kube.status(namespace, "too-large")
        return status if status.get("lastExecutionStatus") == "Failed" else None
    status = wait_for("the Trigger to record the run as Failed", failed, timeout=180)
    assert "argument list too long" in status.get("lastExecutionError", ""), status


def test_a_rolling_update_hands_the_lease_over_on_the_kubelets_sigterm(installed: Installed) -> None:
    kube = installed.kube
    old = operator_ready(installed).metadata.name

    def holder() -> str:
        lease = kube.kubectl("get", "lease", "-n", RELEASE_NAMESPACE, RELEASE, "-o",
                             "jsonpath={.spec.holderIdentity}", check=False).stdout
        return lease.strip()
    wait_for("the old pod to hold the Lease", lambda: old in holder() or None, timeout=60)
    kube.kubectl("rollout", "restart", f"deployment/{RELEASE}", "-n", RELEASE_NAMESPACE)

    def old_terminating() -> float | None:
        pods = kube.core.list_namespaced_pod(RELEASE_NAMESPACE, field_selector=f"metadata.name={old}").items
        return time.monotonic() if not pods or pods[0].metadata.deletion_timestamp else None
    sigterm_at = wait_for("the old pod to be told to stop", old_terminating, timeout=180, interval=0.2)
    new_holder = wait_for("a new pod to hold the Lease", lambda: ((h := holder()) and old not in h and h) or None,
                          timeout=60, interval=0.2)
    handed_over = time.monotonic() - sigterm_at
    # Released on SIGTERM, taken at the next poll (retry_seconds, 2 s). A leader that did not release
    # it would be taken over only after duration_seconds (10 s) of an unchanged Lease: 8 s or more.
    assert handed_over < 6, f"the Lease reached {new_holder} {handed_over:.1f}s after SIGTERM"
    kube.kubectl("rollout", "status", f"deployment/{RELEASE}", "-n", RELEASE_NAMESPACE, "--timeout=180s")


def test_the_images_action_runner_against_a_local_endpoint(installed: Installed) -> None:
    recorder = Recorder(host="127.0.0.1")
    server = serve(recorder)
    try:
        def act(status: int) -> subprocess.CompletedProcess[str]:
            recorder.status = status
            return subprocess.run(
                [installed.engine, "run", "--rm", "--network=host", "--read-only", "--user=10001:10001",
                 "-e", "TRIGGER_ACTION_URL=" + recorder.url("/v1/clusters/{cluster_id}/execute"),
                 "-e", "TRIGGER_ACTION_TYPE=cluster", "-e", 'TRIGGER_ACTION_CONFIG={"cluster_id": "clust-1_a.b~c"}',
                 "-e", "TRIGGER_ACTION_ATTEMPTS=1", "-e", "TRIGGER_ACTION_TOKEN=t0ken",
                 "-e", "TRIGGER_TERMINATION_LOG=/dev/stderr", LOCAL_IMAGE, "act"],
                capture_output=True, text=True, timeout=120)
        ok = act(200)
        assert ok.returncode == 0, ok.stderr
        assert recorder.requests[-1]["path"] == "/v1/clusters/clust-1_a.b~c/execute"
        assert recorder.requests[-1]["headers"]["Authorization"] == "Bearer t0ken"
        refused = act(403)
        assert refused.returncode == 1 and "HTTP 403" in refused.stderr
    finally:
        server.shutdown()


def test_helm_upgrade_keeps_state_and_uninstall_leaves_what_the_docs_say(installed: Installed, namespace: str) -> None:
    kube = installed.kube
    kube.apply(trigger("kept", scheduleConfig={"intervalSeconds": 3600}), namespace)
    key_before = kube.kubectl("get", "secret", "-n", RELEASE_NAMESPACE, f"{RELEASE}-approval-key", "-o",
                              "jsonpath={.data}").stdout
    installed.helm_run("upgrade", RELEASE, installed.chart_ref, "--plain-http", "-n", RELEASE_NAMESPACE,
                       "--wait", "--timeout", "180s", "--reuse-values", "--set", "logFormat=json")
    pod = operator_ready(installed)
    assert any(e.name == "TRIGGER_OPERATOR_LOG_FORMAT" and e.value == "json" for e in pod.spec.containers[0].env)
    assert kube.trigger(namespace, "kept")["metadata"]["annotations"]["trigger-operator.io/created-by"] == "admin"
    assert kube.kubectl("get", "secret", "-n", RELEASE_NAMESPACE, f"{RELEASE}-approval-key", "-o",
                        "jsonpath={.data}").stdout == key_before

    installed.helm_run("uninstall", RELEASE, "-n", RELEASE_NAMESPACE, "--wait", "--timeout", "180s")
    # docs/install.md: the CRD and the Triggers (and their Jobs) stay; the operator and its RBAC go.
    assert kube.trigger(namespace, "kept")["metadata"]["name"] == "kept"
    assert kube.kubectl("get", "crd", "triggers.trigger-operator.io", check=False).returncode == 0
    assert kube.kubectl("get", "deployment", "-n", RELEASE_NAMESPACE, RELEASE, check=False).returncode != 0
    assert not kube.kubectl("get", "validatingwebhookconfigurations,mutatingwebhookconfigurations", "-o", "name",
                            check=False).stdout.strip()
