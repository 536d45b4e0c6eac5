"""Cluster fixtures: a session-wide cluster, a fresh namespace per test, the operator per test.

The cluster is the one given by ``--kubeconfig`` or ``KUBECONFIG``; otherwise the harness starts a
real local control plane (hack/localcluster.py) and stops it at the end, even when tests fail or
the run is interrupted (its processes also die with this one). Nothing is ever skipped: without a
cluster, every test here errors.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Generator, Iterator
from pathlib import Path

import kubernetes
import pytest

from tests.chart import chart_identity, forget_cluster_rbac
from tests.harness import (
    ROOT,
    Kube,
    Operator,
    actions_config_map,
    install_crds,
    new_namespace,
    release_and_delete_namespace,
)

sys.path.insert(0, str(ROOT / "hack"))
import localcluster


@pytest.fixture(scope="session")
def kube(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kube]:
    given = request.config.getoption("--kubeconfig") or os.environ.get("KUBECONFIG")
    cluster: localcluster.Cluster | None = None
    if given:
        kubeconfig = Path(given)
    else:
        folder = ROOT / f".cluster-test-{os.getpid()}"
        cluster = localcluster.up(folder, tie_to_parent=True)
        kubeconfig = cluster.kubeconfig
    try:
        client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
        k = Kube(kubeconfig=kubeconfig, api=client)
        install_crds(k)
        yield k
    finally:
        if cluster is not None:
            localcluster.down(cluster.folder)


@pytest.fixture
def namespace(kube: Kube) -> Iterator[str]:
    name = new_namespace(kube)
    yield name
    release_and_delete_namespace(kube, name)


@pytest.fixture
def operator(kube: Kube, namespace: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Operator]:
    """The operator watching only this test's namespace, with the actions ConfigMap there too, and
    with exactly the chart's RBAC for a namespaced install (a token of the chart's ServiceAccount;
    reading Secrets on, for the http source's tokenSecret)."""
    yield from charted_operator(kube, namespace, tmp_path, request)


def charted_operator(kube: Kube, namespace: str, tmp_path: Path, request: pytest.FixtureRequest,
                     env: dict[str, str] | None = None, sets: tuple[str, ...] = ()) -> Iterator[Operator]:
    """The body of an operator fixture: started with the chart's RBAC (rendered with ``sets``) and
    ``env``, stopped after the test, its log printed when the test failed."""
    kube.apply(actions_config_map(namespace))
    identity = chart_identity(kube, namespace, tmp_path, sets=("rbac.readSecrets=true", *sets))
    op = Operator(kube, namespace, tmp_path / "operator.log", kubeconfig=identity, env=env).start()
    yield op
    op.stop()
    forget_cluster_rbac(kube, namespace)
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(f"\n----- operator log ({op.log_path}) -----\n{op.logs()[-20000:]}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
        item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keeps each phase's report on the test item, so fixtures can tell whether the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
