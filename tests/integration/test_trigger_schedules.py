"""Cron and interval Triggers make the right Jobs at the right moments, and status tells the truth."""

from __future__ import annotations

import datetime as dt
import json
import time

from tests.harness import Kube, Operator, wait_for
from tests.integration.triggers import parse, scheduled_time, trigger


def env_of(job: object) -> dict[str, str]:
    container = job.spec.template.spec.containers[0]  # type: ignore[attr-defined]
    return {e.name: e.value for e in container.env or []}


def test_a_cron_trigger_fires_on_the_minute_with_a_well_formed_job(
        kube: Kube, namespace: str, operator: Operator) -> None:
    kube.apply(trigger("minutely", cron="* * * * *", timezone="Europe/Berlin"), namespace)
    created = kube.trigger(namespace, "minutely")
    job = wait_for("the first Job", lambda: kube.jobs(namespace, "minutely"), timeout=90)[0]

    moment = parse(job.metadata.annotations["trigger-operator.io/scheduled-time"])
    assert moment is not None and moment.second == 0 and moment.microsecond == 0
    assert job.metadata.name == f"minutely-{int(moment.timestamp())}"
    assert job.metadata.labels == {"trigger-operator.io/trigger": "minutely",
                                   "trigger-operator.io/run-kind": "scheduled",
                                   "app.kubernetes.io/managed-by": "trigger-operator"}
    assert "app.kubernetes.io/instance" not in job.metadata.labels  # the Trigger's GitOps label stays home
    owner = job.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.uid, owner.controller) == (
        "Trigger", "minutely", created["metadata"]["uid"], True)
    env = env_of(job)
    assert env["TRIGGER_NAME"] == "minutely" and env["TRIGGER_NAMESPACE"] == namespace
    assert env["TRIGGER_ACTION_TYPE"] == "cluster"
    assert json.loads(env["TRIGGER_ACTION_CONFIG"]) == {"cluster_id": "clust_abc123", "filters": {"status": "active"}}
    assert parse(env["TRIGGER_SCHEDULED_TIME"]) == moment
    assert env["TRIGGER_EXECUTION_ID"] == job.metadata.name

    status = wait_for("the run to be counted", lambda: (s := kube.status(namespace, "minutely"))
                      .get("executionCount", 0) >= 1 and s, timeout=60)
    assert status["phase"] == "Active"
    assert status["lastExecutionTaskId"] == job.metadata.name
    assert status["lastExecutionStatus"] == "Succeeded"
    assert parse(status["lastScheduleTime"]) == moment
    assert parse(status["nextScheduledAt"]) in (moment + dt.timedelta(minutes=1), moment + dt.timedelta(minutes=2))
    assert status["consecutiveFailures"] == 0
    assert status["observedGeneration"] == created["metadata"]["generation"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    assert status["recentExecutions"][0]["name"] == job.metadata.name
    # GitOps: the operator wrote nothing but status: no finalizer, no annotation, no label, same spec.
    after = kube.trigger(namespace, "minutely")
    assert after["metadata"].get("finalizers") is None
    assert after["metadata"].get("annotations") == created["metadata"].get("annotations")
    assert after["metadata"]["labels"] == created["metadata"]["labels"]
    assert (after["spec"], after["metadata"]["generation"]) == (created["spec"], created["metadata"]["generation"])
    # A routine run posts no Event (status and metrics say it); a run someone asked for does. Events
    # are posted in the background in order, so once the run-now's JobCreated is in, any Event of
    # the scheduled run would be too.
    kube.annotate(namespace, "minutely", "trigger-operator.io/run-now", "asked-for")
    wait_for("the run-now's JobCreated event", lambda: kube.events(namespace, "JobCreated"))
    assert not [e for e in kube.events(namespace) if e.involved_object.kind == "Trigger"
                and job.metadata.name in (e.message or "")]
    assert operator.errors() == []


def test_an_interval_trigger_fires_every_few_seconds_on_its_lattice(
        kube: Kube, namespace: str, operator: Operator) -> None:
    kube.apply(trigger("every3", interval=3, concurrencyPolicy="Allow", catchUpPolicy="All",
                       successfulJobsHistoryLimit=20), namespace)
    created = parse(kube.trigger(namespace, "every3")["metadata"]["creationTimestamp"])
    assert created is not None
    status = wait_for("three counted runs", lambda: (s := kube.status(namespace, "every3"))
                      .get("executionCount", 0) >= 3 and s, timeout=60)
    moments = sorted(scheduled_time(j) for j in kube.jobs(namespace, "every3"))
    # Anchored to creation: creation + 3 s, + 6 s, ...; never drifting with reconcile latency.
    offsets = [int((m - created).total_seconds()) for m in moments]
    assert offsets[:3] == [3, 6, 9]
    assert status["lastExecutionStatus"] == "Succeeded"
    assert parse(status["nextScheduledAt"]) > parse(status["lastScheduleTime"])  # type: ignore[operator]


def test_start_immediately_runs_once_at_creation(kube: Kube, namespace: str, operator: Operator) -> None:
    manifest = trigger("eager", interval=3600)
    manifest["spec"]["scheduleConfig"]["startImmediately"] = True
    kube.apply(manifest, namespace)
    created = parse(kube.trigger(namespace, "eager")["metadata"]["creationTimestamp"])
    job = wait_for("the immediate Job", lambda: kube.jobs(namespace, "eager"), timeout=30)[0]
    assert parse(job.metadata.annotations["trigger-operator.io/scheduled-time"]) == created
    status = wait_for("the next moment", lambda: kube.status(namespace, "eager").get("nextScheduledAt"))
    assert parse(status) == created + dt.timedelta(hours=1)  # type: ignore[operator]


def test_a_paused_trigger_makes_no_job_and_resuming_does_not_catch_up(
        kube: Kube, namespace: str, operator: Operator) -> None:
    kube.apply(trigger("resting", interval=2, state="paused"), namespace)
    status = wait_for("phase Paused", lambda: (s := kube.status(namespace, "resting")).get("phase") == "Paused" and s)
    assert "nextScheduledAt" not in status
    settled = kube.trigger(namespace, "resting")["metadata"]["resourceVersion"]
    time.sleep(6)  # three interval lengths
    assert kube.jobs(namespace, "resting") == []
    # Nothing changed, so nothing was written: Argo CD and other watchers see no churn.
    assert kube.trigger(namespace, "resting")["metadata"]["resourceVersion"] == settled
    kube.patch_spec(namespace, "resting", {"state": "active"})
    wait_for("a Job after resuming", lambda: kube.jobs(namespace, "resting"), timeout=30)
    status = kube.status(namespace, "resting")
    assert status.get("missedRuns", 0) == 0  # the paused period is not caught up, nor counted as missed
    assert all(parse(j.metadata.annotations["trigger-operator.io/scheduled-time"]) > parse(status["activeSince"])  # type: ignore[operator]
               for j in kube.jobs(namespace, "resting"))
