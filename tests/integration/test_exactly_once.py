"""The exactly-once guarantees where they are hardest to keep, on the real control plane: two
operator processes at once, a watch outage (SIGSTOP) while Jobs finish and are deleted, the action
catalog losing a template, and a stranger's Job holding a run's name (README, "How runs are counted")."""

from __future__ import annotations

import datetime as dt
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from tests.harness import HOLDS, SUCCEEDS, Kube, Operator, actions_config_map, wait_for
from tests.integration.triggers import parse, trigger

FINALIZER = "trigger-operator.io/count-result"


class JobRecorder:
    """An independent watch of the namespace's Jobs: every (name, uid) that ever existed."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.seen: dict[str, set[str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(kube, namespace), daemon=True)
        self._thread.start()

    def _run(self, kube: Kube, namespace: str) -> None:
        while not self._stop.is_set():
            stream = kubernetes.watch.Watch()
            try:
                for event in stream.stream(kube.batch.list_namespaced_job, namespace, timeout_seconds=5):
                    meta = event["object"].metadata
                    self.seen.setdefault(meta.name, set()).add(meta.uid)
                    if self._stop.is_set():
                        break
            except Exception:  # a dropped watch: start again (a missed Job would only hide a duplicate)
                time.sleep(0.2)

    def stop(self) -> dict[str, set[str]]:
        self._stop.set()
        self._thread.join(timeout=10)
        return self.seen


@pytest.fixture
def recorder(kube: Kube, namespace: str) -> Iterator[JobRecorder]:
    r = JobRecorder(kube, namespace)
    yield r
    r.stop()


def held(kube: Kube, namespace: str) -> list[str]:
    return [j.metadata.name for j in kube.jobs(namespace) if FINALIZER in (j.metadata.finalizers or [])]


def settled(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    """Pauses the Trigger and waits until every run it started is counted."""
    kube.patch_spec(namespace, name, {"state": "paused"})

    def counted() -> dict[str, Any] | None:
        status = kube.status(namespace, name)
        return status if status.get("phase") == "Paused" and not status.get("active") else None

    return wait_for("every run counted", counted, timeout=60)


def test_two_operators_at_once_make_each_job_once_and_count_it_once(
        kube: Kube, namespace: str, operator: Operator, recorder: JobRecorder, tmp_path: Path) -> None:
    # History limit 0: each Job is pruned as soon as it is counted, so a replica acting on a stale
    # copy (the run still active in it) would find no Job and create the moment again.
    kube.apply(trigger("shared", interval=2, concurrencyPolicy="Allow", catchUpPolicy="All",
                       successfulJobsHistoryLimit=0, pod=SUCCEEDS), namespace)
    second = Operator(kube, namespace, tmp_path / "second.log", kubeconfig=operator.kubeconfig).start()
    try:
        assert second.process is not None
        for _ in range(4):  # the second replica falls behind now and then, as a paused pod does
            time.sleep(4)
            os.killpg(second.process.pid, signal.SIGSTOP)
            time.sleep(3)
            os.killpg(second.process.pid, signal.SIGCONT)
        status = settled(kube, namespace, "shared")
        # A stopped replica whose write had landed woke up to send its create: the name was still
        # taken (our finalizer holds a Job for a while after its end), or the create was too late.
    finally:
        second.stop()
    seen = recorder.stop()
    twice = {name: uids for name, uids in seen.items() if len(uids) > 1}
    assert twice == {}, "a moment ran twice"
    assert len(seen) >= 6
    assert status["executionCount"] == len(seen)  # each success counted once
    assert status.get("failedExecutionCount", 0) == 0
    wait_for("every Job released once older than the name hold", lambda: held(kube, namespace) == [], timeout=30)
    assert operator.errors() == [] and second.errors() == []


def test_a_watch_outage_while_jobs_finish_and_are_deleted_counts_each_success_once(
        kube: Kube, namespace: str, operator: Operator, recorder: JobRecorder) -> None:
    manifest = trigger("gappy", interval=2, concurrencyPolicy="Allow", successfulJobsHistoryLimit=1, pod=SUCCEEDS)
    manifest["spec"]["jobTemplate"]["spec"]["ttlSecondsAfterFinished"] = 0  # deleted the moment it ends
    kube.apply(manifest, namespace)
    wait_for("two counted runs", lambda: kube.status(namespace, "gappy").get("executionCount", 0) >= 2, timeout=30)
    assert operator.process is not None
    os.killpg(operator.process.pid, signal.SIGSTOP)  # a watch outage: nothing is heard for a while
    try:
        time.sleep(6)  # Jobs made before the stop finish; the TTL controller deletes them
        counted = {e["name"] for e in kube.status(namespace, "gappy").get("recentExecutions") or []}
        for job in kube.jobs(namespace, "gappy"):  # and a person deletes the counted ones
            if job.metadata.name in counted and not job.metadata.deletion_timestamp:
                kube.kubectl("delete", "job", job.metadata.name, "-n", namespace, "--wait=false")
    finally:
        os.killpg(operator.process.pid, signal.SIGCONT)
    wait_for("runs after the outage", lambda: kube.status(namespace, "gappy").get("executionCount", 0) >= 6,
             timeout=60)
    status = settled(kube, namespace, "gappy")
    seen = recorder.stop()
    assert {n for n, uids in seen.items() if len(uids) > 1} == set()
    assert status["executionCount"] == len(seen)  # no success lost or counted as a failure
    assert (status.get("failedExecutionCount", 0), status.get("consecutiveFailures", 0)) == (0, 0)
    assert all(e["outcome"] == "Succeeded" for e in status["recentExecutions"])
    wait_for("every counted Job released and gone (TTL)", lambda: held(kube, namespace) == [], timeout=30)
    assert operator.errors() == []


def test_a_job_deleted_while_the_operator_is_down_waits_for_it_and_is_not_run_again(
        kube: Kube, namespace: str, operator: Operator) -> None:
    manifest = trigger("once", interval=3600, pod=HOLDS)
    manifest["spec"]["scheduleConfig"]["startImmediately"] = True
    kube.apply(manifest, namespace)
    name = wait_for("the run's Job", lambda: [j.metadata.name for j in kube.jobs(namespace, "once")], timeout=30)[0]
    operator.kill()
    kube.kubectl("delete", "job", name, "-n", namespace, "--wait=false")
    time.sleep(2)
    [job] = kube.jobs(namespace, "once")  # our finalizer holds it until its end is counted
    assert job.metadata.deletion_timestamp is not None
    operator.start()
    status = wait_for("the run to be settled", lambda: (s := kube.status(namespace, "once"))
                      .get("recentExecutions") and s, timeout=30)
    [execution] = status["recentExecutions"]
    assert (execution["name"], execution["outcome"]) == (name, "Failed")
    assert execution["error"] == f"Job {name} was deleted before it finished"
    wait_for("the Job to go once released", lambda: kube.jobs(namespace, "once") == [], timeout=30)
    time.sleep(3)
    assert kube.jobs(namespace, "once") == []  # the moment is not run a second time
    assert status.get("active", []) == []


def test_a_template_missing_from_the_catalog_keeps_the_moment_and_runs_it_when_it_returns(
        kube: Kube, namespace: str, operator: Operator) -> None:
    kube.apply(trigger("catalogued", cron="* * * * *", startingDeadlineSeconds=300), namespace)
    wait_for("the Trigger to be scheduled", lambda: kube.status(namespace, "catalogued").get("nextScheduledAt"))
    # A bad edit while the operator runs: the last good template stays in use (run-now still runs).
    config_map = actions_config_map(namespace)
    without = {**config_map, "data": {k: v for k, v in config_map["data"].items() if k != "cluster"}}
    kube.kubectl("replace", "-f", "-", input=_json(without))
    time.sleep(3)  # the operator reads the ConfigMap every second in these tests
    kube.annotate(namespace, "catalogued", "trigger-operator.io/run-now", "during-the-bad-edit")
    wait_for("the run-now Job, from the last good template", lambda: kube.jobs(namespace, "catalogued"), timeout=30)
    # The operator restarts while the key is gone: no template at all now.
    operator.stop()
    operator.start()
    status = wait_for("ActionTemplateMissing", lambda: (s := kube.status(namespace, "catalogued"))
                      .get("conditions") and _ready(s)[1] == "ActionTemplateMissing" and s, timeout=30)
    assert status["phase"] == "Active"
    cursor = status.get("lastScheduleTime")
    # Let a moment pass without a template, then give it back.
    moment = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    time.sleep(max(0.0, (moment - dt.datetime.now(dt.UTC)).total_seconds()) + 3)
    assert all(j.metadata.annotations["trigger-operator.io/scheduled-time"] != _z(moment)
               for j in kube.jobs(namespace, "catalogued"))
    assert kube.status(namespace, "catalogued").get("lastScheduleTime") == cursor  # position kept
    kube.kubectl("replace", "-f", "-", input=_json(config_map))
    wait_for("the passed moment to run once the template is back", lambda: any(
        j.metadata.annotations["trigger-operator.io/scheduled-time"] == _z(moment)
        for j in kube.jobs(namespace, "catalogued")), timeout=40)
    assert _ready(kube.status(namespace, "catalogued")) == ("True", "Scheduled")


def test_a_strangers_job_holding_the_runs_name_fails_the_run_at_once(
        kube: Kube, namespace: str, operator: Operator) -> None:
    kube.apply(trigger("squatted", cron="* * * * *", pod=SUCCEEDS), namespace)
    status = wait_for("the next moment", lambda: (s := kube.status(namespace, "squatted")).get("nextScheduledAt") and s)
    moment = parse(status["nextScheduledAt"])
    assert moment is not None
    name = f"squatted-{int(moment.timestamp())}"
    kube.batch.create_namespaced_job(namespace, {
        "metadata": {"name": name, "labels": {"trigger-operator.io/trigger": "squatted"}},
        "spec": {"template": HOLDS.pod_template()}})  # made by hand, with our label, owned by nobody
    status = wait_for("the run to fail", lambda: (s := kube.status(namespace, "squatted"))
                      .get("recentExecutions") and s, timeout=90)
    [execution] = status["recentExecutions"]
    assert (execution["name"], execution["outcome"]) == (name, "Failed")
    assert "does not belong to this Trigger" in execution["error"] and "delete that Job" in execution["error"]
    stranger = kube.batch.read_namespaced_job(name, namespace)
    assert stranger.metadata.owner_references is None  # not adopted
    assert not stranger.metadata.deletion_timestamp  # not pruned
    assert status["executionCount"] == 0 and status["consecutiveFailures"] == 1
    kube.batch.delete_namespaced_job(name, namespace, propagation_policy="Background")


def _ready(status: dict[str, Any]) -> tuple[str, str]:
    ready = next(c for c in status.get("conditions") or [] if c["type"] == "Ready")
    return ready["status"], ready["reason"]


def _z(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _json(body: dict[str, Any]) -> str:
    import json

    return json.dumps(body)
