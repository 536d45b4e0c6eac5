"""The real-node tier: what only a real node shows. Once per run, as a user installs it:

1. the image built (``hack/image.sh``: Podman here, Docker elsewhere; a local Debian base when none
   can be pulled), the Debian packages a node needs installed (``hack/install-node.sh``);
2. the local control plane with one real node (``localcluster.up(real_node=True)``: containerd,
   kubelet, kube-proxy, a bridge CNI, an OCI registry on 127.0.0.1); kwok's nodes are cordoned, so
   every pod of this tier runs for real;
3. the image pushed to that registry, the chart packaged and pushed there as an OCI artifact, and
   ``helm install oci://127.0.0.1:<port>/charts/trigger-operator`` with the image from the registry
   and the action runner's URL pointing at an HTTP server of the tests on the node's address.

Nothing is skipped: a missing part fails the run with what is missing. Progress lines with timings
go to the terminal while it builds. Needs root (containerd, the kubelet, kube-proxy).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import kubernetes
import pytest

from tests.harness import ROOT, Kube, free_port, wait_for

sys.path.insert(0, str(ROOT / "hack"))
import localcluster
import realnode

CHART = ROOT / "helm" / "trigger-operator"
RELEASE = "trigger-operator"
RELEASE_NAMESPACE = "trigger-operator-system"
IMAGE_TAG = "node-test"
LOCAL_IMAGE = f"localhost/trigger-operator:{IMAGE_TAG}"


_capture: Any = None  # pytest's capture manager, set by the session fixture


def say(message: str, started: float | None = None) -> None:
    """A progress line on the terminal, past pytest's capture (the first run builds for minutes)."""
    took = f" ({time.monotonic() - started:.0f}s)" if started is not None else ""
    line = f"[node-tier {time.strftime('%H:%M:%S')}] {message}{took}"
    if _capture is None:
        print(line, file=sys.stderr, flush=True)
        return
    with _capture.global_and_fixture_disabled():
        print(line, file=sys.stderr, flush=True)


def run(*args: str, timeout: float = 1800) -> str:
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result.stdout


@dataclass
class Recorder:
    """The platform's endpoint the action runner POSTs to: records each request, answers ``status``."""

    host: str
    port: int = 0
    status: int = 200
    requests: list[dict[str, Any]] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"


def serve(recorder: Recorder) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            recorder.requests.append({"path": self.path, "headers": dict(self.headers),
                                      "body": json.loads(body or b"{}")})
            answer = b'{"ok": true}' if recorder.status < 400 else b'{"error": "refused by the test"}'
            self.send_response(recorder.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((recorder.host, recorder.port or free_port()), Handler)
    recorder.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@dataclass
class Installed:
    kube: Kube
    cluster: localcluster.Cluster
    node: realnode.RealNode
    engine: str
    helm: str
    chart_ref: str
    image_repository: str
    recorder: Recorder
    values: list[str]

    def helm_run(self, *args: str, timeout: float = 300) -> str:
        return run(self.helm, f"--kubeconfig={self.kube.kubeconfig}", *args, timeout=timeout)

    def operator_pods(self) -> list[Any]:
        pods = self.kube.core.list_namespaced_pod(
            RELEASE_NAMESPACE, label_selector=f"app.kubernetes.io/instance={RELEASE}").items
        return [p for p in pods if p.metadata.deletion_timestamp is None]


@pytest.fixture(scope="session")
def installed(request: pytest.FixtureRequest) -> Iterator[Installed]:
    global _capture
    _capture = request.config.pluginmanager.getplugin("capturemanager")
    t0 = time.monotonic()
    say("installing the Debian packages a node needs (once per machine)")
    step = time.monotonic()
    run("bash", "hack/install-node.sh")
    engine = run("bash", "hack/engine.sh").strip()
    say(f"packages ready; engine {engine}", step)
    say(f"building the image {LOCAL_IMAGE} (hack/image.sh; cold ~2 min, warm seconds)")
    step = time.monotonic()
    run("bash", "hack/image.sh", LOCAL_IMAGE)
    say("image built", step)

    say("starting the control plane with a real node (cold: builds kubelet and kube-proxy)")
    step = time.monotonic()
    folder = ROOT / ".cluster-node-tier"
    cluster = localcluster.up(folder, tie_to_parent=True, real_node=True)
    assert cluster.real_node is not None
    node = cluster.real_node
    say(f"control plane and {node.name} ready", step)
    server: ThreadingHTTPServer | None = None
    try:
        kube = Kube(kubeconfig=cluster.kubeconfig,
                    api=kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig)))
        for i in range(localcluster.NODE_COUNT):  # every pod of this tier runs for real
            kube.kubectl("cordon", f"kwok-node-{i}")
        assert cluster.bin_dir is not None
        helm = str(cluster.bin_dir / "helm")

        say(f"pushing the image and the chart to the registry {node.registry}")
        step = time.monotonic()
        image_repository = f"{node.registry}/trigger-operator"
        push = [engine, "push", f"{LOCAL_IMAGE}", f"{image_repository}:{IMAGE_TAG}"]
        if engine == "podman":
            push.insert(2, "--tls-verify=false")
        run(*push)
        version = run(helm, "show", "chart", str(CHART)).split("version:")[-1].split()[0]
        packaged = folder / "charts"
        packaged.mkdir(exist_ok=True)
        run(helm, "package", str(CHART), "-d", str(packaged))
        run(helm, "push", str(packaged / f"trigger-operator-{version}.tgz"), f"oci://{node.registry}/charts",
            "--plain-http")
        say("pushed", step)

        recorder = Recorder(host=node.node_ip)
        server = serve(recorder)
        values = [
            f"image.repository={image_repository}", f"image.tag={IMAGE_TAG}",
            "actionRunner.urls.cluster=" + recorder.url("/v1/clusters/{cluster_id}/execute"),
            "actionRunner.attempts=1",
        ]
        chart_ref = f"oci://{node.registry}/charts/trigger-operator"
        found = Installed(kube=kube, cluster=cluster, node=node, engine=engine, helm=helm, chart_ref=chart_ref,
                          image_repository=image_repository, recorder=recorder, values=values)
        say(f"helm install {chart_ref} --version {version}")
        step = time.monotonic()
        found.helm_run("install", RELEASE, chart_ref, "--version", version, "--plain-http",
                       "-n", RELEASE_NAMESPACE, "--create-namespace", "--wait", "--timeout", "180s",
                       *[a for v in values for a in ("--set", v)])
        say("installed; the operator is Ready", step)
        say("the real-node tier is set up", t0)
        yield found
    except BaseException:
        logs = folder / "logs"
        for name in ("kubelet", "containerd"):
            path = logs / f"{name}.log"
            if path.exists():
                say(f"----- {name} log (tail) -----\n" + "\n".join(path.read_text(errors="replace").splitlines()[-40:]))
        raise
    finally:
        if server is not None:
            server.shutdown()
        localcluster.down(folder)


@pytest.fixture
def namespace(installed: Installed) -> Iterator[str]:
    name = f"node-{int(time.time() * 1000) % 10**9}"
    installed.kube.kubectl("create", "namespace", name)
    yield name
    installed.kube.kubectl("delete", "namespace", name, "--wait=false", check=False)


def operator_ready(installed: Installed) -> Any:
    def ready() -> Any:
        pods = installed.operator_pods()
        for pod in pods:
            statuses = pod.status.container_statuses or []
            if pod.status.phase == "Running" and statuses and all(s.ready for s in statuses):
                return pod
        return None
    return wait_for("a Ready operator pod", ready, timeout=180)
