"""Benchmark: N Triggers against N CronJobs, side by side on one control plane, same schedule.

Both fire every minute. A watch on Jobs records when each Job appears (client-side arrival time,
the same for both kinds), so the ratio of their creation delays after the scheduled minute is fair
on a noisy machine; absolute numbers are printed too but mean less. Also reports the operator's
CPU time and memory, and pure schedule-math throughput.

    python bench/trigger_vs_cronjob.py [--triggers 200] [--minutes 2] [--kubeconfig FILE]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import kubernetes

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "hack")]

from tests.harness import Kube, Operator, actions_config_map, install_crds, new_namespace  # noqa: E402

import localcluster  # noqa: E402
from trigger_operator.timemath.cron import CronSchedule  # noqa: E402

JOB_SPEC = {"backoffLimit": 0, "template": {"spec": {
    "restartPolicy": "Never", "containers": [{"name": "work", "image": "busybox"}]}}}


def schedule_math() -> dict[str, float]:
    """next_after calls per second: UTC, and a DST zone across a whole year (slow path included)."""
    out = {}
    for label, expression, zone in (("utc_every_minute", "* * * * *", "UTC"),
                                    ("berlin_daily_0130", "30 1 * * *", "Europe/Berlin"),
                                    ("new_york_every_15m", "*/15 * * * *", "America/New_York")):
        schedule = CronSchedule.parse(expression, zone)
        t = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < 1.0:
            nxt = schedule.next_after(t)
            assert nxt is not None
            t = nxt
            count += 1
        out[label] = count / (time.perf_counter() - started)
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def watch_jobs(kube: Kube, namespace: str, seen: dict[str, float], stop: threading.Event) -> None:
    watcher = kubernetes.watch.Watch()
    batch = kubernetes.client.BatchV1Api(kube.api)
    for event in watcher.stream(batch.list_namespaced_job, namespace, timeout_seconds=600):
        if event["type"] == "ADDED":
            seen.setdefault(event["object"].metadata.name, time.time())
        if stop.is_set():
            watcher.stop()


def kind_and_minute(name: str, triggers: set[str]) -> tuple[str, float]:
    owner, suffix = name.rsplit("-", 1)
    if owner in triggers:
        return "Trigger", float(suffix)  # unix seconds of the moment
    return "CronJob", float(suffix) * 60  # CronJob names carry unix minutes


def process_usage(pid: int) -> tuple[float, float]:
    """CPU seconds and resident MiB of a process."""
    stat = Path(f"/proc/{pid}/stat").read_text().split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(stat[13]) + int(stat[14])) / ticks
    rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmRSS:")) / 1024
    return cpu, rss


def run(kube: Kube, count: int, minutes: int) -> dict[str, Any]:
    namespace = new_namespace(kube)
    kube.apply(actions_config_map(namespace))
    log = Path(tempfile.mkdtemp()) / "operator.log"
    operator = Operator(kube, namespace, log).start()
    assert operator.process is not None
    names = {f"t{i:04d}" for i in range(count)}
    items: list[dict[str, Any]] = []
    for i in range(count):
        items.append({"apiVersion": "trigger-operator.io/v1alpha1", "kind": "Trigger",
                      "metadata": {"name": f"t{i:04d}", "namespace": namespace},
                      "spec": {"actionType": "cluster", "triggerType": "cron", "concurrencyPolicy": "Allow",
                               "scheduleConfig": {"cronExpression": "* * * * *"}, "successfulJobsHistoryLimit": 1,
                               "jobTemplate": {"spec": JOB_SPEC}}})
        items.append({"apiVersion": "batch/v1", "kind": "CronJob",
                      "metadata": {"name": f"c{i:04d}", "namespace": namespace},
                      "spec": {"schedule": "* * * * *", "successfulJobsHistoryLimit": 1,
                               "jobTemplate": {"spec": JOB_SPEC}}})
    seen: dict[str, float] = {}
    stop = threading.Event()
    threading.Thread(target=watch_jobs, args=(kube, namespace, seen, stop), daemon=True).start()
    started = time.time()
    kube.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    print(f"[bench] {count} Triggers and {count} CronJobs applied in {time.time() - started:.1f}s", file=sys.stderr)
    first_minute = (int(time.time() // 60) + 1) * 60
    measured = [first_minute + 60 * k for k in range(minutes)]
    cpu_before, _ = process_usage(operator.process.pid)
    deadline = measured[-1] + 50
    while time.time() < deadline:
        time.sleep(2)
        print(f"\r[bench] {len(seen)} Jobs seen, {deadline - time.time():.0f}s to go ", end="", file=sys.stderr)
    print(file=sys.stderr)
    stop.set()
    cpu_after, rss = process_usage(operator.process.pid)
    operator.stop()
    delays: dict[str, list[float]] = {"Trigger": [], "CronJob": []}
    for name, arrived in seen.items():
        kind, moment = kind_and_minute(name, names)
        if moment in measured:
            delays[kind].append(arrived - moment)
    kube.core.delete_namespace(namespace)
    result: dict[str, Any] = {"objects_each": count, "minutes": minutes, "operator_rss_mib": round(rss, 1),
                              "operator_cpu_s_per_minute": round((cpu_after - cpu_before) / minutes, 2)}
    for kind, values in delays.items():
        result[kind] = {"jobs": len(values), "expected": count * minutes,
                        "p50_s": round(percentile(values, 0.5), 3), "p95_s": round(percentile(values, 0.95), 3),
                        "max_s": round(max(values, default=float("nan")), 3),
                        "mean_s": round(statistics.fmean(values), 3) if values else None}
    if delays["Trigger"] and delays["CronJob"]:
        result["p95_ratio_trigger_over_cronjob"] = round(result["Trigger"]["p95_s"] / result["CronJob"]["p95_s"], 3)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--triggers", type=int, default=200)
    parser.add_argument("--minutes", type=int, default=2)
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"))
    args = parser.parse_args()
    print(json.dumps({"schedule_math_next_after_per_s": {k: round(v) for k, v in schedule_math().items()}}))
    cluster = None
    if args.kubeconfig:
        kubeconfig = Path(args.kubeconfig)
    else:
        cluster = localcluster.up(ROOT / f".cluster-bench-{os.getpid()}", tie_to_parent=True)
        kubeconfig = cluster.kubeconfig
    try:
        kube = Kube(kubeconfig=kubeconfig, api=kubernetes.config.new_client_from_config(config_file=str(kubeconfig)))
        install_crds(kube)
        print(json.dumps(run(kube, args.triggers, args.minutes), indent=2))
    finally:
        if cluster is not None:
            localcluster.down(cluster.folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
