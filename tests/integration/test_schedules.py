"""Issue 22 on a real control plane: a Trigger's cron lines, exclusions and jitter decide which Jobs
the operator makes, and when."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from tests.harness import Kube, Operator, wait_for
from tests.integration.triggers import scheduled_time, trigger
from trigger_operator.timemath.calendar import jitter_offset

MINUTE = dt.timedelta(minutes=1)


def next_minute(after: dt.datetime) -> dt.datetime:
    return after.replace(second=0, microsecond=0) + MINUTE


def test_two_cron_lines_and_an_exclusion_make_exactly_the_union_less_the_exclusion(
        kube: Kube, namespace: str, operator: Operator) -> None:
    """Three minutes a, b, c from now: lines "a,b" and "b,c" share b (one Job), and "c" is excluded.
    Exactly a and b run; the minute after c, nothing more."""
    start = next_minute(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=20))
    a, b, c = (start + k * MINUTE for k in range(3))
    kube.apply(trigger("office", cron=f"{a.minute},{b.minute} * * * *", successfulJobsHistoryLimit=10,
                       concurrencyPolicy="Allow"), namespace)
    kube.patch_spec(namespace, "office", {"scheduleConfig": {
        "cronExpressions": [f"{b.minute},{c.minute} * * * *"], "excludeCron": [f"{c.minute} * * * *"]}})
    status = wait_for("the calendar observed", lambda: (s := kube.status(namespace, "office"))
                      .get("observedSchedule", "").endswith(f"; except {c.minute} * * * *") and s, timeout=30)
    assert status["observedSchedule"] == (f"cron {a.minute},{b.minute} * * * * | {b.minute},{c.minute} * * * * "
                                          f"UTC; except {c.minute} * * * *")
    wait_for("c and the minute after it to pass", lambda: dt.datetime.now(dt.UTC) > c + MINUTE + dt.timedelta(
        seconds=15) or None, timeout=260, interval=2)
    moments = Counter(scheduled_time(j) for j in kube.jobs(namespace, "office"))
    assert moments == Counter({a: 1, b: 1}), moments
    assert operator.errors() == []


TRIGGERS = 200
JITTER = 30


def test_two_hundred_minutely_triggers_with_a_jitter_spread_their_jobs_over_the_thirty_seconds(
        kube: Kube, namespace: str, operator: Operator) -> None:
    """Each Trigger's Job of a minute is at its own offset, the pure function's (SHA-256 of
    namespace/name), and those offsets cover [0, 30) s; one Job per Trigger per minute."""
    names = [f"spread-{i:03d}" for i in range(TRIGGERS)]
    items: list[dict[str, Any]] = []
    for name in names:
        manifest = trigger(name, cron="* * * * *", successfulJobsHistoryLimit=5)
        manifest["spec"]["scheduleConfig"]["jitterSeconds"] = JITTER
        items.append(manifest)
    kube.apply({"apiVersion": "v1", "kind": "List", "items": items}, namespace)
    applied = dt.datetime.now(dt.UTC)
    # A whole minute after every Trigger exists and was seen, so each has that minute's moment.
    minute = next_minute(applied + dt.timedelta(seconds=30))
    expected = {name: minute + jitter_offset(namespace, name, JITTER) for name in names}
    offsets = {int((m - minute).total_seconds()) for m in expected.values()}
    assert min(offsets) == 0 and max(offsets) == JITTER - 1 and len(offsets) >= 25  # spread over the 30 s

    def jobs_by_trigger() -> dict[str, list[dt.datetime]]:
        found: dict[str, list[dt.datetime]] = {}
        for job in kube.jobs(namespace):
            found.setdefault(job.metadata.labels["trigger-operator.io/trigger"], []).append(scheduled_time(job))
        return found

    wait_for("every Trigger's Job of that minute", lambda: all(
        expected[n] in f.get(n, []) for f in [jobs_by_trigger()] for n in names),
        timeout=(minute - dt.datetime.now(dt.UTC)).total_seconds() + JITTER + 90, interval=3)
    seen = jobs_by_trigger()
    for name in names:
        own = seen[name]
        assert len(own) == len(set(own)), (name, own)
        # Every Job of this Trigger is at its own offset past a minute: one per minute, never at :00
        # unless its offset is 0.
        assert {m - m.replace(second=0) for m in own} == {jitter_offset(namespace, name, JITTER)}, (name, own)
        assert len({m.replace(second=0) for m in own}) == len(own)
        status = kube.status(namespace, name)
        assert status["observedSchedule"] == f"cron * * * * * UTC; jitter {JITTER}s"
    assert operator.errors() == []
