"""High availability on the real control plane: two operator processes with the chart's RBAC and
leader election; only the Lease holder makes Jobs; SIGKILL it and the other takes over (the time
is measured and printed); a clean stop hands the Lease over at once; counts stay true."""

from __future__ import annotations

import time
from pathlib import Path

from tests.chart import chart_identity, forget_cluster_rbac
from tests.harness import SUCCEEDS, Kube, Operator, actions_config_map, wait_for
from tests.integration.triggers import trigger

DURATION, RETRY = 10, 2  # the defaults: LeaderSettings


def holder(kube: Kube, namespace: str, lease: str) -> str:
    result = kube.kubectl("get", "lease", lease, "-n", namespace, "-o", "jsonpath={.spec.holderIdentity}",
                          check=False)
    return result.stdout.strip() if result.returncode == 0 else ""


def test_one_replica_schedules_and_another_takes_over_when_it_dies(kube: Kube, namespace: str,
                                                                   tmp_path: Path) -> None:
    kube.apply(actions_config_map(namespace))
    identity = chart_identity(kube, namespace, tmp_path)
    lease = f"trg-{namespace}"  # the chart's fullname: its Role names this Lease

    def replica(name: str) -> Operator:
        return Operator(kube, namespace, tmp_path / f"{name}.log", kubeconfig=identity, env={
            "TRIGGER_OPERATOR_LEADER_ENABLED": "true", "TRIGGER_OPERATOR_LEADER_NAME": lease, "POD_NAME": name})

    a, b = replica("op-a").start(), replica("op-b").start()
    running = [a, b]
    try:
        kube.apply(trigger("tick", interval=2, pod=SUCCEEDS, successfulJobsHistoryLimit=100), namespace)
        leader_name = wait_for("a leader", lambda: holder(kube, namespace, lease), timeout=30)
        leader, follower = (a, b) if leader_name.startswith("op-a-") else (b, a)
        wait_for("runs by the leader", lambda: len(kube.jobs(namespace, "tick")) >= 2, timeout=60)
        assert "created Job" in leader.logs() and "created Job" not in follower.logs()
        assert "became the leader" in leader.logs() and "became the leader" not in follower.logs()

        leader.kill()  # SIGKILL: the lease is not handed back
        killed_at = time.monotonic()
        jobs_before = {j.metadata.name for j in kube.jobs(namespace, "tick")}
        wait_for("the follower to take the lease", lambda: holder(kube, namespace, lease).startswith(
            "op-a-" if follower is a else "op-b-"), timeout=DURATION + 4 * RETRY + 10)
        takeover_s = time.monotonic() - killed_at
        # A new Job alone does not prove the take-over: a create the old leader sent just before the
        # SIGKILL can land after jobs_before was listed. The new leader's own log names its Jobs.
        made = wait_for("a run by the new leader", follower.created_jobs, timeout=30)
        first_run_s = time.monotonic() - killed_at
        print(f"\ntake-over after SIGKILL: lease in {takeover_s:.1f} s, first Job in {first_run_s:.1f} s")
        assert takeover_s < DURATION + 2 * RETRY + 3  # the lease's duration, a retry period, slack
        assert set(made) <= {j.metadata.name for j in kube.jobs(namespace, "tick")} - jobs_before

        # A clean stop hands the lease back: the restarted first replica takes over at its next round.
        restarted = replica("op-a" if leader is a else "op-b").start()
        running.append(restarted)
        follower.stop()
        stopped_at = time.monotonic()
        wait_for("the hand-over", lambda: holder(kube, namespace, lease).startswith(
            restarted.env["POD_NAME"] + "-"), timeout=DURATION + 2 * RETRY)
        print(f"hand-over after a clean stop: {time.monotonic() - stopped_at:.1f} s")
        assert "released the lease" in follower.logs()
        kube.patch_spec(namespace, "tick", {"state": "paused"})
        status = wait_for("every run counted", lambda: (s := kube.status(namespace, "tick")).get("phase") == "Paused"
                          and not s.get("active") and s, timeout=60)
        succeeded = [j for j in kube.jobs(namespace, "tick") if j.status.succeeded]
        assert status["executionCount"] == len(succeeded) == len(kube.jobs(namespace, "tick"))
    finally:
        for op in running:
            op.stop()
        forget_cluster_rbac(kube, namespace)
