"""The Helm chart from the tests: helm (built from Go modules), renders, and the chart's RBAC applied
for one namespace with a kubeconfig holding a token of the chart's ServiceAccount, so the operator
under test runs with exactly the rights the chart gives it."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

from tests.harness import ROOT, Kube, token_kubeconfig

CHART = ROOT / "helm" / "trigger-operator"
# The Prometheus Operator whose CRDs (ServiceMonitor, PrometheusRule) the chart's optional objects
# are validated against; fetched from the Go module proxy, as the control plane's binaries are.
PROMETHEUS_OPERATOR = "github.com/prometheus-operator/prometheus-operator@v0.79.2"
MONITORING_CRDS = ("servicemonitors", "prometheusrules")


def helm_binary() -> str:
    versions = sorted((Path.home() / ".cache" / "trigger-operator" / "bin").glob("*/helm"))
    assert versions, "helm is not built: run `make binaries` (make test does)"
    return str(versions[-1])


def helm(kube: Kube, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([helm_binary(), f"--kubeconfig={kube.kubeconfig}", *args], capture_output=True,
                            text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed: {result.stderr}")
    return result


def render(kube: Kube, namespace: str, *sets: str, api_versions: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """``helm template`` with these values; ``api_versions`` adds to the APIs helm assumes the
    cluster serves (it asks no cluster), e.g. for the ValidatingAdmissionPolicy."""
    args = ["template", "t", str(CHART), "-n", namespace, *[a for s in sets for a in ("--set", s)],
            *[a for v in api_versions for a in ("--api-versions", v)]]
    return [d for d in yaml.safe_load_all(helm(kube, *args).stdout) if d]


def chart_identity(kube: Kube, namespace: str, folder: Path, *, drop: tuple[str, str] | None = None,
                   sets: tuple[str, ...] = ()) -> Path:
    """Applies the chart's RBAC (and actions) for a namespaced install watching ``namespace`` and
    returns a kubeconfig with a token of the chart's ServiceAccount. ``drop`` removes a verb from a rule."""
    documents = render(kube, namespace, f"watch.namespaces={{{namespace}}}", f"fullnameOverride=trg-{namespace}",
                       "webhook.enabled=false", *sets)
    for d in documents:
        if drop is not None and d["kind"] == "Role" and not d["metadata"]["name"].endswith("-actions"):
            resource, verb = drop
            for rule in d["rules"]:
                if resource in rule["resources"]:
                    rule["verbs"] = [v for v in rule["verbs"] if v != verb]
    wanted = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ConfigMap"}
    manifest = "\n---\n".join(yaml.safe_dump(d) for d in documents if d["kind"] in wanted)
    kube.kubectl("apply", "-f", "-", input=manifest)
    token = kube.kubectl("create", "token", f"trg-{namespace}", "-n", namespace, "--duration=2h").stdout.strip()
    return token_kubeconfig(kube, token, folder / "chart-kubeconfig")


def forget_cluster_rbac(kube: Kube, namespace: str) -> None:
    kube.kubectl("delete", "clusterrole,clusterrolebinding", f"trg-{namespace}", "--ignore-not-found")
    kube.kubectl("delete", "clusterrole", f"trg-{namespace}-metrics-reader", "--ignore-not-found")


def install_monitoring_crds(kube: Kube) -> None:
    """The ServiceMonitor and PrometheusRule CRDs, unless the cluster has them (never replaced)."""
    present = kube.kubectl("get", "crd", "-o", "name").stdout
    missing = [n for n in MONITORING_CRDS if f"{n}.monitoring.coreos.com" not in present]
    if not missing:
        return
    with tempfile.TemporaryDirectory() as outside_any_module:  # so no go.mod or go.sum of ours changes
        download = subprocess.run(["go", "mod", "download", "-json", PROMETHEUS_OPERATOR], capture_output=True,
                                  text=True, timeout=600, cwd=outside_any_module)
    assert download.returncode == 0, f"go mod download {PROMETHEUS_OPERATOR}: {download.stdout}{download.stderr}"
    crds = Path(json.loads(download.stdout)["Dir"]) / "example" / "prometheus-operator-crd"
    for name in missing:
        kube.kubectl("apply", "--server-side", "-f", str(crds / f"monitoring.coreos.com_{name}.yaml"))
    for name in missing:
        kube.kubectl("wait", "--for=condition=Established", f"crd/{name}.monitoring.coreos.com", "--timeout=60s")
