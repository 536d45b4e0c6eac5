"""Scenario 5, conditions: N conditional Triggers in one namespace, each checking a ConfigMap of its
own (``s-q00042``, key ``value``: 1) every ``interval`` seconds against a threshold it never crosses
(so nothing fires: the checks alone). Checks are counted where they happen: the API server's audit
log records each of the operator's ConfigMap reads (one per check) with its time, and each of its
status writes, so a check that writes no status (docs/conditions.md: only a check that changes
something, or the heartbeat, writes) is counted all the same. After a warm-up (every Trigger checked
once, then two intervals), over a window: checks per second kept (against N / interval), the lateness
of each check (the gap since the Trigger's previous check minus the interval: the next check is due
an interval after the last), and the status writes per check."""

from __future__ import annotations

import itertools
import json
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.common import (
    OPERATOR_USER,
    Bench,
    Phases,
    Usage,
    create_all,
    log,
    parse_time,
    rounded,
    sleep_until,
    summary,
    trigger_body,
    wait_until,
)

NAMESPACE = "bq-0"
PREFIX = "s-"  # a Trigger's ConfigMap: PREFIX + its name
# The operator's ConfigMap reads and Trigger status writes, nothing else (a line of JSON each).
AUDIT = {"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"],
         "rules": [{"level": "Metadata", "users": [OPERATOR_USER], "verbs": ["get"],
                    "resources": [{"group": "", "resources": ["configmaps"]}]},
                   {"level": "Metadata", "users": [OPERATOR_USER], "verbs": ["patch", "update"],
                    "resources": [{"group": "trigger-operator.io", "resources": ["triggers/status"]}]},
                   {"level": "None"}]}


def audited(bench: Bench) -> tuple[dict[str, list[float]], list[float]]:
    """From the audit log: each Trigger's checks (its ConfigMap's reads, by time received) and the
    times of the status writes."""
    checks: dict[str, list[float]] = defaultdict(list)
    writes: list[float] = []
    if not bench.cluster.audit_log.exists():
        return checks, writes
    with bench.cluster.audit_log.open() as lines:
        for line in lines:
            event = json.loads(line)
            at = parse_time(event.get("requestReceivedTimestamp"))
            if event.get("stage") != "ResponseComplete" or at is None:
                continue
            ref = event.get("objectRef") or {}
            if ref.get("resource") == "configmaps" and str(ref.get("name", "")).startswith(PREFIX):
                checks[ref["name"][len(PREFIX):]].append(at)
            elif ref.get("resource") == "triggers" and ref.get("subresource") == "status":
                writes.append(at)
    return checks, writes


def run(bench: Bench, n: int = 1000, seconds: float = 120, interval: int = 10) -> dict[str, Any]:
    namespace = bench.namespace(NAMESPACE)
    names = [f"q{i:05d}" for i in range(n)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda name: bench.kube.core.create_namespaced_config_map(
            namespace, {"metadata": {"name": PREFIX + name}, "data": {"value": "1"}}), names))
    operator = bench.operator(namespace).start()
    assert operator.process is not None
    log(f"creating {n} conditional Triggers, each checking its ConfigMap every {interval}s")
    create_all(bench.kube, [("trigger-operator.io", "v1alpha1", namespace, "triggers", trigger_body(
        name, namespace, {"conditionType": "threshold", "metric": "value", "threshold": 10, "comparison": ">",
                          "checkIntervalSeconds": interval,
                          "source": {"configMap": {"name": PREFIX + name, "key": "value"}}},
        trigger_type="conditional")) for name in names], what="conditional Triggers")
    wait_until("Triggers checked once", lambda: len(audited(bench)[0]) >= n, lambda: f"{len(audited(bench)[0])}/{n}",
               timeout=600, every=10)
    log(f"warming up for {2 * interval}s, then measuring {seconds:.0f}s")
    time.sleep(2 * interval)
    phases = Phases(bench, operator).start()
    phases.begin("window")
    before = bench.metrics(operator)
    usage = Usage(operator.process.pid).begin()
    start = time.time()
    sleep_until(start + seconds, "conditions", every=30)
    end = time.time()
    used = usage.end()
    phases.end("window")
    machine = phases.figures()
    after = bench.metrics(operator)
    time.sleep(3)  # the audit log is written as requests end
    checks, writes = audited(bench)
    late: list[float] = []
    in_window = 0
    for times in checks.values():
        ordered = sorted(times)
        in_window += sum(1 for t in ordered if start <= t < end)
        late += [current - previous - interval for previous, current in itertools.pairwise(ordered)
                 if start <= current < end]
    written = sum(1 for t in writes if start <= t < end)
    metric = {k: after[k] - before.get(k, 0.0) for k in after if k.startswith("trigger_operator_condition_checks")}
    window = end - start
    result: dict[str, Any] = {
        "n": n, "interval_s": interval, "window_s": rounded(window, 1),
        "checks_per_s": rounded(in_window / window, 1), "expected_per_s": rounded(n / interval, 1),
        "checks_counted_by_metrics": metric,
        "within_1s_pct": rounded(100 * sum(1 for x in late if x <= 1.0) / len(late) if late else None, 1),
        "status_writes_per_s": rounded(written / window, 1),
        "status_writes_per_check": rounded(written / in_window if in_window else None, 3),
        "trigger": {**summary(late), **used}, "machine": machine}
    result["targets"] = {"every_check_within_1s": bool(late) and max(late) <= 1.0,
                         "rate_kept": bool(result["checks_per_s"] and result["checks_per_s"] >= 0.99 * n / interval)}
    log(f"conditions: {result['checks_per_s']} checks/s of {n / interval:.0f}/s expected; lateness "
        f"p50 {result['trigger']['p50_s']}s p99 {result['trigger']['p99_s']}s max {result['trigger']['max_s']}s; "
        f"{result['status_writes_per_s']} status writes/s ({result['status_writes_per_check']} per check)")
    return result
