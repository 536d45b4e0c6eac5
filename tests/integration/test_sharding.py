"""The sharded mode on the real control plane: three replicas with the chart's RBAC share six
shards two each; every Trigger is run by exactly one replica, the one holding its shard; SIGKILL
one and the two left hold three each (the rebalance time is measured and printed) and every Trigger
runs on; a new replica gets its share back; the counts stay true."""

from __future__ import annotations

import functools
import itertools
import json
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from tests.chart import chart_identity, forget_cluster_rbac
from tests.harness import SUCCEEDS, Kube, Operator, actions_config_map, wait_for
from tests.integration.test_high_availability import DURATION, RETRY
from tests.integration.triggers import trigger
from trigger_operator.api import LABEL_LEASE_OF, LABEL_ROLE, LABEL_SHARD
from trigger_operator.core.sharding import shard_label, shard_of

SHARDS, TRIGGERS = 6, 18


def names_in_every_shard(namespace: str) -> list[str]:
    """TRIGGERS names, as many in each shard: every replica has Triggers to run, whichever shards it
    holds (the namespace is random, so names picked blindly could leave a shard empty)."""
    each = TRIGGERS // SHARDS
    per_shard: dict[int, list[str]] = defaultdict(list)
    candidates = (f"tick-{i}" for i in itertools.count())
    while sum(map(len, per_shard.values())) < each * SHARDS:
        if len(per_shard[shard := shard_of(namespace, name := next(candidates), SHARDS)]) < each:
            per_shard[shard].append(name)
    return sorted(n for names in per_shard.values() for n in names)


def shard_holders(kube: Kube, namespace: str, lease: str) -> dict[int, str]:
    """Shard -> holder identity, as the shard Leases say."""
    listed = json.loads(kube.kubectl("get", "leases", "-n", namespace, "-l", f"{LABEL_LEASE_OF}={lease}",
                                     "-o", "json").stdout)["items"]
    return {int(item["metadata"]["name"].rsplit("-", 1)[1]): item["spec"].get("holderIdentity") or ""
            for item in listed if item["metadata"]["labels"].get(LABEL_ROLE) == "shard"}


def shares(kube: Kube, namespace: str, lease: str, replicas: list[Operator]) -> list[int] | None:
    """Shards per running replica (sorted), once every shard is held by one of them; else None."""
    holders = shard_holders(kube, namespace, lease)
    names = [op.env["POD_NAME"] for op in replicas]
    owners = [next((n for n in names if holders.get(k, "").startswith(f"{n}-")), None) for k in range(SHARDS)]
    if None in owners:
        return None
    return sorted(Counter(owners).get(n, 0) for n in names)


def creators(replicas: list[Operator], namespace: str) -> dict[str, set[str]]:
    """Trigger -> the replicas whose logs say they created one of its Jobs."""
    made: dict[str, set[str]] = defaultdict(set)
    for op in replicas:
        for job in op.created_jobs():
            made[job.rsplit("-", 1)[0]].add(op.env["POD_NAME"])
    return made


def settled(kube: Kube, namespace: str, name: str) -> dict[str, Any] | None:
    """The Trigger's status once it is paused with no run active."""
    status = kube.status(namespace, name)
    return status if status.get("phase") == "Paused" and not status.get("active") else None


def test_replicas_share_the_shards_evenly_and_rebalance_when_one_dies(kube: Kube, namespace: str,
                                                                      tmp_path: Path) -> None:
    kube.apply(actions_config_map(namespace))
    identity = chart_identity(kube, namespace, tmp_path, sets=(f"sharding.shards={SHARDS}",))
    lease = f"trg-{namespace}"

    def replica(name: str) -> Operator:
        return Operator(kube, namespace, tmp_path / f"{name}.log", kubeconfig=identity, env={
            "TRIGGER_OPERATOR_LEADER_ENABLED": "true", "TRIGGER_OPERATOR_LEADER_NAME": lease,
            "TRIGGER_OPERATOR_LEADER_SHARDS": str(SHARDS), "POD_NAME": name})

    running = [replica(f"op-{i}").start() for i in range(3)]
    everyone = list(running)
    names = names_in_every_shard(namespace)
    try:
        wait_for("two shards each", lambda: shares(kube, namespace, lease, running) == [2, 2, 2],
                 timeout=DURATION + 10 * RETRY)
        for name in names:
            kube.apply(trigger(name, interval=5, pod=SUCCEEDS, successfulJobsHistoryLimit=100), namespace)
        wait_for("every Trigger's first runs", lambda: all(len(kube.jobs(namespace, n)) >= 2 for n in names),
                 timeout=90)
        made = creators(running, namespace)
        holders = shard_holders(kube, namespace, lease)
        for name in names:  # each run by one replica only: the holder of its shard
            owner = holders[shard_of(namespace, name, SHARDS)]
            assert made[name] == {owner.rsplit("-", 1)[0]}, (name, made[name], owner)
        load = Counter(next(iter(made[n])) for n in names)
        print(f"\nTriggers per replica with {SHARDS} shards: {dict(sorted(load.items()))}")
        assert len(load) == 3  # every replica schedules some

        victim = running.pop(0)
        victim.kill()  # SIGKILL: its shards are not handed back
        killed_at = time.monotonic()
        wait_for("three shards each for the two left", lambda: shares(kube, namespace, lease, running) == [3, 3],
                 timeout=DURATION * 3 + 10 * RETRY)
        rebalance_s = time.monotonic() - killed_at
        marks = {n: len(kube.jobs(namespace, n)) for n in names}
        wait_for("every Trigger running on", lambda: all(len(kube.jobs(namespace, n)) > marks[n] for n in names),
                 timeout=60)
        print(f"rebalance after SIGKILL of a replica: {rebalance_s:.1f} s; "
              f"every Trigger ran again {time.monotonic() - killed_at:.1f} s after the kill")
        assert rebalance_s < DURATION + 6 * RETRY + 5

        joined = replica("op-3").start()
        running.append(joined)
        everyone.append(joined)
        wait_for("the new replica's share", lambda: shares(kube, namespace, lease, running) == [2, 2, 2],
                 timeout=10 * RETRY + 10)
        marks = {n: len(kube.jobs(namespace, n)) for n in names}
        wait_for("every Trigger running on", lambda: all(len(kube.jobs(namespace, n)) > marks[n] for n in names),
                 timeout=60)
        # New Jobs of its Triggers may still be creates its shards' last holder sent before the
        # hand-over; the new replica's own log says it made some.
        wait_for("a run by the new replica", lambda: "created Job" in joined.logs(), timeout=30)

        for name in names:
            kube.patch_spec(namespace, name, {"state": "paused"})
        for name in names:
            status = wait_for(f"{name}'s runs counted", functools.partial(settled, kube, namespace, name), timeout=60)
            jobs = kube.jobs(namespace, name)
            moments = [j.metadata.name for j in jobs]
            assert len(moments) == len(set(moments))
            assert status["executionCount"] == len(jobs) == sum(1 for j in jobs if j.status.succeeded), name
            # Each Job carries its shard, so each replica's Job watch selects its own shards' Jobs only.
            assert {j.metadata.labels.get(LABEL_SHARD) for j in jobs} == {shard_label(namespace, name, SHARDS)}
    finally:
        for op in running:
            op.stop()
        forget_cluster_rbac(kube, namespace)
