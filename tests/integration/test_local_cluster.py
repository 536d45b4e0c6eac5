"""The harness's control plane itself: a second one runs beside the first, and stopping it leaves
no process and no state behind."""

from __future__ import annotations

import json
import os
from pathlib import Path

import localcluster
from tests.harness import Kube


def test_a_second_cluster_runs_side_by_side_and_stops_cleanly(kube: Kube, tmp_path: Path) -> None:
    folder = tmp_path / "second"
    second = localcluster.up(folder, tie_to_parent=True)
    try:
        pids = json.loads(second.pids_file.read_text())
        assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}
        assert second.server not in kube.kubeconfig.read_text()  # its own port
        nodes = localcluster.kubectl(second, "get", "nodes", "-o", "name").split()
        assert nodes == [f"node/kwok-node-{i}" for i in range(localcluster.NODE_COUNT)]
        assert kube.kubectl("get", "--raw", "/readyz").stdout == "ok"  # the first one is unaffected
    finally:
        localcluster.down(folder)
    assert not folder.exists()
    for pid in pids.values():
        assert not os.path.exists(f"/proc/{pid}") or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
