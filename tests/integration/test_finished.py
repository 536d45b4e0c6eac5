"""Issue 22 on a real control plane: a run budget and an active window stop a Trigger, which then
reports Finished (phase, Ready reason, the Reason column of ``kubectl get trg``)."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from tests.harness import Kube, Operator, wait_for
from tests.integration.triggers import parse, scheduled_time, trigger

PERIOD = 5  # intervalSeconds


def ready(status: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})


def finished(kube: Kube, namespace: str, name: str, timeout: float) -> dict[str, Any]:
    def seen() -> dict[str, Any] | None:
        status = kube.status(namespace, name)
        return status if status.get("phase") == "Finished" else None
    return wait_for(f"{name} finished", seen, timeout=timeout, interval=1)


def test_a_budget_of_three_makes_three_jobs_and_a_window_only_those_before_its_end(
        kube: Kube, namespace: str, operator: Operator) -> None:
    budget = trigger("budget", interval=PERIOD, concurrencyPolicy="Allow", successfulJobsHistoryLimit=10,
                     failedJobsHistoryLimit=10)
    budget["spec"]["scheduleConfig"]["maxRuns"] = 3
    end = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=17)
    window = trigger("window", interval=PERIOD, concurrencyPolicy="Allow", successfulJobsHistoryLimit=10,
                     failedJobsHistoryLimit=10)
    window["spec"]["scheduleConfig"]["endAt"] = end.isoformat().replace("+00:00", "Z")
    kube.apply(budget, namespace)
    kube.apply(window, namespace)

    status = finished(kube, namespace, "budget", timeout=60)
    assert status["scheduledRuns"] == 3 and "nextScheduledAt" not in status
    assert (ready(status)["status"], ready(status)["reason"]) == ("False", "Finished")
    assert ready(status)["message"] == "the run budget of 3 is spent (3 scheduled runs)"

    status = finished(kube, namespace, "window", timeout=60)
    assert ready(status)["message"] == f"the active window ended at {end.isoformat().replace('+00:00', 'Z')}"
    created = parse(kube.trigger(namespace, "window")["metadata"]["creationTimestamp"])
    assert created is not None
    expected = {created + dt.timedelta(seconds=PERIOD * k) for k in range(1, 10)
                if created + dt.timedelta(seconds=PERIOD * k) < end}
    assert expected  # the window held moments

    time.sleep(2 * PERIOD)  # two more periods: nothing more runs
    assert len(kube.jobs(namespace, "budget")) == 3
    assert {scheduled_time(j) for j in kube.jobs(namespace, "window")} == expected
    assert len(kube.jobs(namespace, "window")) == len(expected)
    # kubectl get trg: the Reason column (the Ready condition's reason) says Finished.
    table = kube.kubectl("get", "trg", "-n", namespace, "--no-headers",
                         "-o", "custom-columns=NAME:.metadata.name,PHASE:.status.phase").stdout.split()
    assert table == ["budget", "Finished", "window", "Finished"]
    listed = kube.kubectl("get", "trg", "-n", namespace).stdout.splitlines()
    reason = listed[0].split().index("REASON")
    assert sorted(line.split()[reason] for line in listed[1:]) == ["Finished", "Finished"]
    assert sorted(e.involved_object.name for e in kube.events(namespace, "Finished")) == ["budget", "window"]
    assert operator.errors() == []
