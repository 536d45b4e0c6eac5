"""Scenario 2, cold_start, and scenario 3, idle.

cold_start: N cron Triggers (hourly, at a minute half an hour away, so none fires meanwhile) are
created while the operator is down; then it starts ("cold"): the time until every Trigger's
``status.nextScheduledAt`` is the right moment (seen by a watch of our own on Triggers), and the
operator's API writes meanwhile and for a settling time after (the API server's audit log, by the
operator's ServiceAccount; its own ``trigger_operator_kube_requests_total`` too when it has it).
Then it is stopped and started again with every status already right ("warm"): the time until
its scheduler knows all N (its ``trigger_operator_triggers`` gauge), and the writes, which
should be none.

idle: N such Triggers, the operator started and settled; its CPU (share of one core) and memory
over a window between firings, and the writes in that window.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

from tests.harness import Operator

from bench.common import (
    Bench,
    Usage,
    Watcher,
    cpu_seconds,
    create_all,
    log,
    memory_mb,
    parse_time,
    rounded,
    sleep_until,
    trigger_body,
    wait_until,
)
from trigger_operator.timemath.cron import CronSchedule

PREFIX = "bt-"
SETTLE_S = 15.0


class NextScheduled:
    """Per Trigger, when its nextScheduledAt was first seen right (after ``since``)."""

    def __init__(self, expected: float) -> None:
        self.expected = expected
        self.since = 0.0
        self.right: dict[tuple[str, str], float] = {}
        self.lock = threading.Lock()

    def on_event(self, kind: str, body: dict[str, Any], arrival: float) -> None:
        meta = body.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if kind == "DELETED" or not key[0].startswith(PREFIX) or arrival < self.since:
            return
        if parse_time((body.get("status") or {}).get("nextScheduledAt")) == self.expected:
            with self.lock:
                self.right.setdefault(key, arrival)

    def restart(self, since: float) -> None:
        with self.lock:
            self.since, self.right = since, {}


def prepare(bench: Bench, n: int) -> tuple[str, float]:
    """N hourly Triggers at a minute half an hour away, in a few namespaces; returns the schedule
    and the moment every nextScheduledAt should name."""
    now = dt.datetime.now(dt.UTC)
    expression = f"{(now.minute + 30) % 60} * * * *"
    moment = CronSchedule.parse(expression, "UTC").next_after(now)
    assert moment is not None
    k = 1 if n <= 100 else 4
    spaces = [bench.namespace(f"{PREFIX}{i}") for i in range(k)]
    log(f"creating {n} Triggers ({expression!r}) in {k} namespace(s), the operator not running")
    create_all(bench.kube, [("trigger-operator.io", "v1alpha1", spaces[i % k], "triggers", trigger_body(
        f"t{i:05d}", spaces[i % k], {"cronExpression": expression})) for i in range(n)], what="Triggers")
    return expression, moment.timestamp()


def known(bench: Bench, operator: Operator) -> int:
    metrics = bench.metrics(operator)
    return int(sum(v for k, v in metrics.items() if k.startswith("trigger_operator_triggers{")))


def requests(bench: Bench, operator: Operator) -> dict[str, float]:
    return {k: v for k, v in bench.metrics(operator).items()
            if k.startswith("trigger_operator_kube_requests_total") and any(
                f'verb="{verb}"' in k for verb in ("create", "patch", "update", "delete"))}


def start(bench: Bench, operator: Operator, n: int, seen: NextScheduled, phase: str) -> dict[str, Any]:
    """Starts the operator; ``seen`` holds what is already right (nothing, cold; all, warm)."""
    started = time.time()
    log(f"{phase} start: starting the operator with {n} Triggers")
    operator.start()
    assert operator.process is not None
    ready = time.time() - started
    log(f"{phase} start: ready after {ready:.1f}s; waiting until every nextScheduledAt is right")
    count = [0]

    def all_right() -> bool:
        count[0] = len(seen.right)
        return count[0] >= n
    ok = wait_until(f"{phase}: Triggers with the right nextScheduledAt", all_right, lambda: f"{count[0]}/{n}",
                    timeout=900, every=10)
    correct = (max(seen.right.values()) - started) if ok and phase == "cold" else None
    known_count = [0]

    def all_known() -> bool:
        known_count[0] = known(bench, operator)
        return known_count[0] >= n
    wait_until(f"{phase}: Triggers known to the scheduler", all_known, lambda: f"{known_count[0]}/{n}",
               timeout=300, every=10)
    all_known_s = time.time() - started
    settle_until = max(time.time() + SETTLE_S, started + 45)
    log(f"{phase} start: all right; counting the operator's writes until {SETTLE_S:.0f}s after "
        "(at least 45s after the start)")
    while time.time() < settle_until:
        time.sleep(0.5)
    writes = bench.operator_writes(started - 1, time.time())
    total = sum(writes.values())
    result: dict[str, Any] = {
        "ready_s": rounded(ready, 2), "correct_s": rounded(correct, 2), "all_known_s": rounded(all_known_s, 2),
        "right": len(seen.right), "api_writes": total, "writes_per_trigger": rounded(total / n, 3),
        "api_writes_by": writes, "cpu_s": rounded(cpu_seconds(operator.process.pid), 2),
        "peak_rss_mb": rounded(memory_mb(operator.process.pid), 1),
        "rss_mb": rounded(memory_mb(operator.process.pid, "VmRSS"), 1)}
    if phase == "warm":
        result["correct_s"] = rounded(all_known_s if len(seen.right) >= n else None, 2)
    metric = requests(bench, operator)
    if metric:
        result["kube_requests_writes"] = metric
    log(f"{phase} start: {result}")
    return result


def _cold_start(bench: Bench, n: int) -> tuple[str, NextScheduled, Watcher, Operator, dict[str, Any]]:
    """N Triggers made while the operator is down, a watch on them, and the operator started."""
    expression, moment = prepare(bench, n)
    seen = NextScheduled(moment)
    watcher = Watcher(bench.kube, "trigger-operator.io", "v1alpha1", "triggers", seen.on_event).start_and_wait()
    operator = bench.operator(f"{PREFIX}*")
    seen.restart(time.time())
    return expression, seen, watcher, operator, start(bench, operator, n, seen, "cold")


def run(bench: Bench, n: int) -> dict[str, Any]:
    expression, seen, watcher, operator, cold = _cold_start(bench, n)
    operator.stop()
    time.sleep(2)
    # The watch still holds every Trigger's last state: those still right count as right at once.
    seen.restart(0.0)
    for item in bench.custom.list_cluster_custom_object("trigger-operator.io", "v1alpha1", "triggers")["items"]:
        seen.on_event("ADDED", item, time.time())
    warm = start(bench, operator, n, seen, "warm")
    watcher.stop()
    return {"n": n, "schedule": expression, "cold": cold, "warm": warm,
            "trigger": {"cold_correct_s": cold["correct_s"], "cold_api_writes": cold["api_writes"],
                        "warm_api_writes": warm["api_writes"], "cpu_s": cold["cpu_s"],
                        "peak_rss_mb": max(cold["peak_rss_mb"] or 0, warm["peak_rss_mb"] or 0)},
            "targets": {"cold_under_30s": bool(cold["correct_s"] is not None and cold["correct_s"] < 30),
                        "warm_no_writes": warm["api_writes"] == 0}}


def run_idle(bench: Bench, n: int, seconds: float = 120) -> dict[str, Any]:
    expression, _, watcher, operator, settled = _cold_start(bench, n)
    watcher.stop()
    assert operator.process is not None
    log(f"idle: measuring the operator's CPU and memory for {seconds:.0f}s with {n} Triggers between firings")
    usage = Usage(operator.process.pid).begin()
    since = time.time()
    sleep_until(since + seconds, "idle", every=30)
    used = usage.end()
    writes = bench.operator_writes(since, time.time())
    used["api_writes"] = sum(writes.values())
    used["api_writes_by"] = writes  # type: ignore[assignment]
    log(f"idle: {used}")
    return {"n": n, "schedule": expression, "start": settled, "trigger": used,
            "targets": {"cpu_under_2pct": bool((used["cpu_pct_of_core"] or 0) < 2),
                        "rss_under_250mb": bool((used["peak_rss_mb"] or 0) < 250)}}
