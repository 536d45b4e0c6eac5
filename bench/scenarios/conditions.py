"""Scenario 5, conditions: N conditional Triggers in one namespace, all checking one ConfigMap
value every ``interval`` seconds against a threshold it never crosses (so nothing fires: the checks
alone). A watch of our own on Triggers records each check (``status.lastConditionCheckAt``) and
when its status write arrived. After a warm-up (every Trigger checked once, then two intervals),
over a window: checks per second kept (against N / interval), and the lateness of each check
(the gap since the Trigger's previous check minus the interval: the next check is due an interval
after the last), and how long after the check its status write was seen."""

from __future__ import annotations

import itertools
import threading
import time
from collections import defaultdict
from typing import Any

from bench.common import (
    Bench,
    Usage,
    Watcher,
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


class Checks:
    def __init__(self) -> None:
        self.by_trigger: dict[str, dict[float, float]] = defaultdict(dict)  # name -> {check time: arrival}
        self.lock = threading.Lock()

    def on_event(self, kind: str, body: dict[str, Any], arrival: float) -> None:
        checked = parse_time((body.get("status") or {}).get("lastConditionCheckAt"))
        if kind == "DELETED" or checked is None:
            return
        with self.lock:
            self.by_trigger[body["metadata"]["name"]].setdefault(checked, arrival)

    def checked_once(self) -> int:
        with self.lock:
            return len(self.by_trigger)


def run(bench: Bench, n: int = 1000, seconds: float = 120, interval: int = 10) -> dict[str, Any]:
    namespace = bench.namespace(NAMESPACE)
    bench.kube.core.create_namespaced_config_map(namespace, {"metadata": {"name": "stats"}, "data": {"value": "1"}})
    checks = Checks()
    watcher = Watcher(bench.kube, "trigger-operator.io", "v1alpha1", "triggers", checks.on_event).start_and_wait()
    operator = bench.operator(namespace).start()
    assert operator.process is not None
    log(f"creating {n} conditional Triggers checking ConfigMap stats every {interval}s")
    create_all(bench.kube, [("trigger-operator.io", "v1alpha1", namespace, "triggers", trigger_body(
        f"q{i:05d}", namespace, {"conditionType": "threshold", "metric": "value", "threshold": 10, "comparison": ">",
                                 "checkIntervalSeconds": interval,
                                 "source": {"configMap": {"name": "stats", "key": "value"}}},
        trigger_type="conditional")) for i in range(n)], what="conditional Triggers")
    wait_until("Triggers checked once", lambda: checks.checked_once() >= n, lambda: f"{checks.checked_once()}/{n}",
               timeout=600, every=10)
    log(f"warming up for {2 * interval}s, then measuring {seconds:.0f}s")
    time.sleep(2 * interval)
    before = bench.metrics(operator)
    usage = Usage(operator.process.pid).begin()
    start = time.time()
    sleep_until(start + seconds, "conditions", every=30)
    end = time.time()
    used = usage.end()
    after = bench.metrics(operator)
    time.sleep(3)  # writes of checks made before the end may still be on their way
    watcher.stop()
    late: list[float] = []
    delays: list[float] = []
    in_window = 0
    with checks.lock:
        for times in checks.by_trigger.values():
            ordered = sorted(times)
            for previous, current in itertools.pairwise(ordered):
                if start <= current < end:
                    late.append(current - previous - interval)
            for t in ordered:
                if start <= t < end:
                    in_window += 1
                    delays.append(times[t] - t)
    metric = {k: after[k] - before.get(k, 0.0) for k in after if k.startswith("trigger_operator_condition_checks")}
    window = end - start
    result: dict[str, Any] = {"n": n, "interval_s": interval, "window_s": rounded(window, 1),
              "checks_per_s": rounded(in_window / window, 1), "expected_per_s": rounded(n / interval, 1),
              "checks_counted_by_metrics": metric,
              "within_1s_pct": rounded(100 * sum(1 for x in late if x <= 1.0) / len(late) if late else None, 1),
              "status_write_seen_after_check": summary(delays), "trigger": {**summary(late), **used}}
    result["targets"] = {"every_check_within_1s": bool(late) and max(late) <= 1.0,
                         "rate_kept": bool(result["checks_per_s"] and result["checks_per_s"] >= 0.99 * n / interval)}
    log(f"conditions: {result['checks_per_s']} checks/s of {n / interval:.0f}/s expected; lateness "
        f"p50 {result['trigger']['p50_s']}s p99 {result['trigger']['p99_s']}s max {result['trigger']['max_s']}s")
    return result
