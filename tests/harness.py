"""Test harness: a session-wide cluster, per-test namespaces, the operator as a subprocess, and
small waiting helpers. The same tests run against the local control plane the harness starts, or
against any cluster given by ``--kubeconfig`` / ``KUBECONFIG`` (e.g. kind)."""

from __future__ import annotations

import ctypes
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import kubernetes
from kubernetes.client.exceptions import ApiException

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "hack"))
from localcluster import free_port as free_port  # noqa: E402  (one rule for the ports of every server we start)

CRDS = ROOT / "crds"
GROUP, VERSION, PLURAL = "trigger-operator.io", "v1alpha1", "triggers"
T = TypeVar("T")


@dataclass
class Kube:
    """Typed access to the test cluster through the official client and kubectl."""

    kubeconfig: Path
    api: kubernetes.client.ApiClient

    @property
    def core(self) -> kubernetes.client.CoreV1Api:
        return kubernetes.client.CoreV1Api(self.api)

    @property
    def batch(self) -> kubernetes.client.BatchV1Api:
        return kubernetes.client.BatchV1Api(self.api)

    @property
    def custom(self) -> kubernetes.client.CustomObjectsApi:
        return kubernetes.client.CustomObjectsApi(self.api)

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["kubectl", f"--kubeconfig={self.kubeconfig}", *args], input=input,
                                capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result

    def apply(self, manifest: dict[str, Any], namespace: str | None = None,
              check: bool = True) -> subprocess.CompletedProcess[str]:
        args = ["apply", "-f", "-"] + (["-n", namespace] if namespace else [])
        return self.kubectl(*args, input=json.dumps(manifest), check=check)

    # --- Triggers and Jobs ----------------------------------------------------------------------

    def trigger(self, namespace: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        return result

    def status(self, namespace: str, name: str) -> dict[str, Any]:
        return dict(self.trigger(namespace, name).get("status") or {})

    def annotate(self, namespace: str, name: str, key: str, value: str) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name,
                                                   {"metadata": {"annotations": {key: value}}})

    def patch_spec(self, namespace: str, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, {"spec": spec})

    def jobs(self, namespace: str, trigger: str | None = None) -> list[Any]:
        selector = f"trigger-operator.io/trigger={trigger}" if trigger else ""
        items = self.batch.list_namespaced_job(namespace, label_selector=selector).items
        return sorted(items, key=lambda j: j.metadata.name)

    def events(self, namespace: str, reason: str | None = None) -> list[Any]:
        items = self.core.list_namespaced_event(namespace).items
        return [e for e in items if reason is None or e.reason == reason]


@dataclass(frozen=True)
class PodBehaviour:
    """How a test pod ends, alike on kwok's fake nodes (which read the annotations, see
    hack/kwok-stages.yaml) and on real nodes such as kind's (which run the command)."""

    annotations: dict[str, str]
    command: list[str]

    def pod_template(self) -> dict[str, Any]:
        return {"metadata": {"annotations": dict(self.annotations)},
                "spec": {"restartPolicy": "Never",
                         "containers": [{"name": "work", "image": "busybox:1.37", "command": list(self.command)}]}}


SUCCEEDS = PodBehaviour({}, ["sh", "-c", "true"])
HOLDS = PodBehaviour({"kwok.test/result": "hold"}, ["sleep", "3600"])


def fails(exit_code: int, message: str) -> PodBehaviour:
    return PodBehaviour(
        {"kwok.test/result": "fail", "kwok.test/exit-code": str(exit_code), "kwok.test/message": message},
        ["sh", "-c", f"printf '%s' '{message}' > /dev/termination-log; exit {exit_code}"])


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60, interval: float = 0.5) -> T:
    """Polls ``probe`` until it returns something truthy; fails with ``what`` and the last value."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except ApiException as error:
            if error.status != 404:
                raise
            last = None
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}")


def service_account_token(kube: Kube, namespace: str, name: str) -> str:
    """A real token for a new ServiceAccount (the TokenRequest API, as kubectl create token)."""
    kube.core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
    request = kube.core.create_namespaced_service_account_token(name, namespace, {"spec": {"expirationSeconds": 3600}})
    return str(request.status.token)


def grant(kube: Kube, namespace: str, account: str, rules: list[dict[str, Any]]) -> None:
    """A Role with ``rules`` bound to a ServiceAccount of the namespace."""
    rbac = kubernetes.client.RbacAuthorizationV1Api(kube.api)
    rbac.create_namespaced_role(namespace, {"metadata": {"name": account}, "rules": rules})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": account}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                                   "name": account},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]})


def release_and_delete_namespace(kube: Kube, name: str) -> None:
    """Deletes a test namespace once its operator is gone: Jobs still holding our finalizer (runs not
    counted when the operator stopped) are released first, or the namespace would never go."""
    for job in kube.batch.list_namespaced_job(name).items:
        if "trigger-operator.io/count-result" in (job.metadata.finalizers or []):
            kept = [f for f in job.metadata.finalizers if f != "trigger-operator.io/count-result"]
            kube.batch.patch_namespaced_job(job.metadata.name, name, {"metadata": {"finalizers": kept or None}},
                                            _content_type="application/merge-patch+json")
    # ... and Triggers held by the notify finalizer (spec.notifications), which no operator takes off now.
    for item in kube.custom.list_namespaced_custom_object("trigger-operator.io", "v1alpha1", name, "triggers")["items"]:
        finalizers = item["metadata"].get("finalizers") or []
        if "trigger-operator.io/notify" in finalizers:
            kept = [f for f in finalizers if f != "trigger-operator.io/notify"]
            kube.custom.patch_namespaced_custom_object(
                "trigger-operator.io", "v1alpha1", name, "triggers", item["metadata"]["name"],
                {"metadata": {"finalizers": kept or None}}, _content_type="application/merge-patch+json")
    kube.core.delete_namespace(name)


def new_namespace(kube: Kube, labels: dict[str, str] | None = None) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    kube.core.create_namespace({"metadata": {"name": name, "labels": labels or {}}})
    # Pods need the default ServiceAccount, which the controller manager creates a moment later.
    wait_for(f"ServiceAccount default in {name}",
             lambda: kube.core.read_namespaced_service_account("default", name), timeout=60)
    return name


def install_crds(kube: Kube) -> None:
    kube.kubectl("apply", "-f", str(CRDS))
    for path in sorted(CRDS.glob("*.yaml")):
        import yaml

        crd = yaml.safe_load(path.read_text())
        kube.kubectl("wait", "--for=condition=Established", f"crd/{crd['metadata']['name']}", "--timeout=60s")
        # Established comes before the API server's watch cache for the kind is ready (a list from it
        # answers 429 "storage is (re)initializing" meanwhile): wait for that too.
        group, plural = crd["spec"]["group"], crd["spec"]["names"]["plural"]
        wait_for(f"the watch cache of {plural}", _served(
            kube, f"/apis/{group}/{crd['spec']['versions'][0]['name']}/{plural}?resourceVersion=0&limit=1"), timeout=60)


def _served(kube: Kube, raw_path: str) -> Callable[[], bool]:
    return lambda: kube.kubectl("get", "--raw", raw_path, check=False).returncode == 0


def die_with_parent() -> None:
    """In the child before exec: the kernel sends SIGTERM when the test run dies, even by SIGKILL."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def actions_config_map(namespace: str) -> dict[str, Any]:
    """The shipped default action catalog (deploy/actions.yaml), moved into ``namespace``."""
    import yaml

    config_map: dict[str, Any] = yaml.safe_load((ROOT / "deploy" / "actions.yaml").read_text())
    config_map["metadata"]["namespace"] = namespace
    return config_map


class Operator:
    """The operator as a subprocess (``trigger-operator run -n <namespace>``), logging to a file."""

    def __init__(self, kube: Kube, namespace: str, log_path: Path, env: dict[str, str] | None = None,
                 kubeconfig: Path | None = None) -> None:
        self.kube = kube
        self.kubeconfig = kubeconfig or kube.kubeconfig  # the operator's own identity
        self.namespace = namespace
        self.log_path = log_path
        self.http_port = free_port()
        self.probe_port = free_port()  # each operator's own: several run at once
        self.env = {**os.environ, "KUBECONFIG": str(self.kubeconfig),
                    "TRIGGER_OPERATOR_ACTIONS_NAMESPACE": namespace, "PYTHONUNBUFFERED": "1",
                    "TRIGGER_OPERATOR_ACTIONS_POLL_SECONDS": "1", "TRIGGER_OPERATOR_HTTP_HOST": "127.0.0.1",
                    # A shorter name hold than the minute of production, so that tests need not wait
                    # that long for fast Jobs to be released; still longer than any pause they make.
                    "TRIGGER_OPERATOR_SCHEDULER_NAME_HOLD_SECONDS": "15",
                    "TRIGGER_OPERATOR_SCHEDULER_CREATE_WITHIN_SECONDS": "5",
                    # The test's own servers (Prometheus, HTTP sources) listen on loopback, which the
                    # egress rules refuse unless the admin opens it; and most tests create Triggers
                    # with no webhook to approve their sources. The isolation tests set both back.
                    "TRIGGER_OPERATOR_SOURCES_ALLOWED_NETWORKS": "127.0.0.0/8",
                    "TRIGGER_OPERATOR_SOURCES_APPROVAL": "off",
                    "TRIGGER_OPERATOR_HTTP_PORT": str(self.http_port),
                    "TRIGGER_OPERATOR_HTTP_PROBE_PORT": str(self.probe_port), **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The operator's HTTP API (event intake, probes)."""
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> Operator:
        started_before = self.logs().count("scheduler started")
        log = self.log_path.open("ab")
        log.write(f"\n===== operator started at {time.strftime('%H:%M:%S')} =====\n".encode())
        log.flush()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "trigger_operator", "run", "-n", self.namespace],
            stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT, start_new_session=True,
            preexec_fn=die_with_parent)
        wait_for("the operator's scheduler to start",
                 lambda: self.logs().count("scheduler started") > started_before or self._died(), timeout=60)
        if self._died():
            raise AssertionError(f"the operator exited at start:\n{self.logs()}")
        wait_for("the operator's HTTP server to be ready", self._ready, timeout=30, interval=0.2)
        return self

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def _died(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def kill(self) -> None:
        """SIGKILL: no clean-up runs, as when a node dies."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def created_jobs(self) -> list[str]:
        """The Jobs this process says it created in its namespace (its `created Job ns/name` lines)."""
        return re.findall(rf"created Job {re.escape(self.namespace)}/(\S+)", self.logs())

    def errors(self) -> list[str]:
        """Tracebacks and ERROR lines: a healthy operator logs none (kopf's retried requests aside)."""
        return [line for line in self.logs().splitlines()
                if ("Traceback" in line or " ERROR " in line) and "will retry" not in line]


@contextmanager
def running_operator(kube: Kube, namespace: str, log_path: Path) -> Iterator[Operator]:
    operator = Operator(kube, namespace, log_path).start()
    try:
        yield operator
    finally:
        operator.stop()


def token_kubeconfig(kube: Kube, token: str, path: Path) -> Path:
    """A kubeconfig for the same cluster that authenticates with ``token`` alone (no client certificate)."""
    import yaml

    config = yaml.safe_load(kube.kubeconfig.read_text())
    cluster = config["clusters"][0]
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "clusters": [cluster], "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "c", "context": {"cluster": cluster["name"], "user": "u"}}], "current-context": "c"}))
    return path
