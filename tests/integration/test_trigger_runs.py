"""Concurrency, failures, run-now, history, deletion and restarts on the real control plane."""

from __future__ import annotations

import hashlib
import time

from tests.harness import HOLDS, Kube, Operator, fails, wait_for
from tests.integration.triggers import parse, scheduled_time, trigger


def running(kube: Kube, namespace: str, name: str) -> list[str]:
    return [j.metadata.name for j in kube.jobs(namespace, name)
            if not j.status.succeeded and not j.status.failed and not j.metadata.deletion_timestamp]


def test_forbid_skips_while_a_job_is_held_running(kube: Kube, namespace: str, operator: Operator) -> None:
    kube.apply(trigger("single", interval=2, concurrencyPolicy="Forbid", pod=HOLDS), namespace)
    first = wait_for("the first Job", lambda: kube.jobs(namespace, "single"), timeout=30)[0].metadata.name
    status = wait_for("two skipped moments", lambda: (s := kube.status(namespace, "single"))
                      .get("skippedRuns", 0) >= 2 and s, timeout=30)
    assert [j.metadata.name for j in kube.jobs(namespace, "single")] == [first]
    assert [r["name"] for r in status["active"]] == [first]
    wait_for("the RunSkipped event", lambda: kube.events(namespace, "RunSkipped"))  # Events follow status


def test_replace_deletes_the_running_job_and_starts_the_new_one(
        kube: Kube, namespace: str, operator: Operator) -> None:
    kube.apply(trigger("newest", interval=3, concurrencyPolicy="Replace", pod=HOLDS), namespace)
    first = wait_for("the first Job", lambda: kube.jobs(namespace, "newest"), timeout=30)[0].metadata.name
    status = wait_for("a replacement", lambda: (s := kube.status(namespace, "newest")).get("recentExecutions") and s,
                      timeout=30)
    assert status["recentExecutions"][-1]["name"] == first
    assert status["recentExecutions"][-1]["outcome"] == "Replaced"
    assert [r["name"] for r in status["active"]] != [first]
    wait_for("the replaced Job to go", lambda: first not in running(kube, namespace, "newest"), timeout=30)
    wait_for("the replaced Job's pod to go (the Job's name may stay held a while)", lambda: not kube.core
             .list_namespaced_pod(namespace, label_selector=f"job-name={first}").items, timeout=30)
    assert len(running(kube, namespace, "newest")) == 1
    assert status.get("consecutiveFailures", 0) == 0  # a replaced run is not a failure


def test_failing_jobs_count_up_and_stop_the_trigger_at_the_limit(
        kube: Kube, namespace: str, operator: Operator) -> None:
    kube.apply(trigger("broken", interval=2, maxConsecutiveFailures=2, failedJobsHistoryLimit=5,
                       pod=fails(3, "model file missing")), namespace)
    status = wait_for("phase Failed", lambda: (s := kube.status(namespace, "broken")).get("phase") == "Failed" and s,
                      timeout=60)
    assert status["consecutiveFailures"] == 2
    assert status["executionCount"] == 0
    assert status["lastExecutionStatus"] == "Failed"
    assert "model file missing" in status["lastExecutionError"]
    assert "exited with code 3" in status["lastExecutionError"]
    assert "BackoffLimitExceeded" in status["lastExecutionError"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "FailureLimitReached")
    assert "nextScheduledAt" not in status
    jobs_at_failure = len(kube.jobs(namespace, "broken"))
    time.sleep(5)  # two more interval lengths: a Failed Trigger makes no Job
    assert len(kube.jobs(namespace, "broken")) == jobs_at_failure == 2
    wait_for("the FailureLimitReached event", lambda: kube.events(namespace, "FailureLimitReached"))

    kube.annotate(namespace, "broken", "trigger-operator.io/resume", "fixed-it")
    status = wait_for("phase Active again", lambda: (s := kube.status(namespace, "broken"))
                      .get("phase") == "Active" and s, timeout=30)
    assert status["consecutiveFailures"] in (0, 1)  # reset; a new failure may already be counted


def test_run_now_makes_exactly_one_job_per_token(kube: Kube, namespace: str, operator: Operator) -> None:
    kube.apply(trigger("manual", cron="0 0 1 1 *", state="paused"), namespace)
    wait_for("phase Paused", lambda: kube.status(namespace, "manual").get("phase") == "Paused")
    kube.annotate(namespace, "manual", "trigger-operator.io/run-now", "first")
    job = wait_for("the manual Job", lambda: kube.jobs(namespace, "manual"), timeout=30)[0]
    assert job.metadata.labels["trigger-operator.io/run-kind"] == "manual"
    wait_for("the manual run to be counted", lambda: kube.status(namespace, "manual").get("executionCount") == 1)
    kube.patch_spec(namespace, "manual", {"description": "touched"})  # another event, same token
    time.sleep(3)
    assert [j.metadata.name for j in kube.jobs(namespace, "manual")] == [job.metadata.name]
    kube.annotate(namespace, "manual", "trigger-operator.io/run-now", "second")
    wait_for("the second manual Job", lambda: len(kube.jobs(namespace, "manual")) == 2, timeout=30)
    time.sleep(2)
    assert len(kube.jobs(namespace, "manual")) == 2
    status = wait_for("both counted", lambda: (s := kube.status(namespace, "manual")).get("executionCount") == 2 and s)
    assert status["runNowTokens"] == [hashlib.sha256(t.encode()).hexdigest()[:16] for t in ("first", "second")]
    kube.annotate(namespace, "manual", "trigger-operator.io/run-now", "first")  # a token used before: no run
    time.sleep(3)
    assert len(kube.jobs(namespace, "manual")) == 2


def test_history_limits_prune_old_jobs(kube: Kube, namespace: str, operator: Operator) -> None:
    kube.apply(trigger("busy", interval=1, concurrencyPolicy="Allow", successfulJobsHistoryLimit=2), namespace)
    wait_for("six counted runs", lambda: kube.status(namespace, "busy").get("executionCount", 0) >= 6, timeout=60)
    kube.patch_spec(namespace, "busy", {"state": "paused"})
    wait_for("pruning down to the limit", lambda: len(
        [j for j in kube.jobs(namespace, "busy") if not j.metadata.deletion_timestamp]) == 2, timeout=30)
    kept = [j for j in kube.jobs(namespace, "busy") if not j.metadata.deletion_timestamp]
    assert all(j.status.succeeded for j in kept)
    newest = kube.status(namespace, "busy")["recentExecutions"][0]["name"]
    assert newest in {j.metadata.name for j in kept}


def test_deleting_the_trigger_removes_its_jobs(kube: Kube, namespace: str, operator: Operator) -> None:
    kube.apply(trigger("doomed", interval=2, concurrencyPolicy="Allow", pod=HOLDS), namespace)
    wait_for("two Jobs", lambda: len(kube.jobs(namespace, "doomed")) >= 2, timeout=30)
    kube.kubectl("delete", "trigger", "doomed", "-n", namespace)
    wait_for("the garbage collector to remove the Jobs", lambda: kube.jobs(namespace, "doomed") == [], timeout=60)
    time.sleep(3)
    assert kube.jobs(namespace, "doomed") == []  # nothing recreated them
    assert operator.errors() == []


def test_a_sigkill_mid_schedule_loses_no_moment_and_duplicates_none(
        kube: Kube, namespace: str, operator: Operator) -> None:
    kube.apply(trigger("steady", interval=2, concurrencyPolicy="Allow", catchUpPolicy="All",
                       successfulJobsHistoryLimit=100), namespace)
    wait_for("two counted runs", lambda: kube.status(namespace, "steady").get("executionCount", 0) >= 2, timeout=30)
    operator.kill()
    killed_at = time.time()
    time.sleep(7)  # about three moments pass with no operator
    operator.start()
    wait_for("runs after the restart", lambda: kube.status(namespace, "steady").get("executionCount", 0) >= 8,
             timeout=60)
    kube.patch_spec(namespace, "steady", {"state": "paused"})
    status = wait_for("all runs counted", lambda: (s := kube.status(namespace, "steady"))
                      .get("phase") == "Paused" and not s.get("active") and s, timeout=30)

    jobs = kube.jobs(namespace, "steady")
    moments = sorted(scheduled_time(j) for j in jobs)
    created = parse(kube.trigger(namespace, "steady")["metadata"]["creationTimestamp"])
    assert created is not None
    offsets = [int((m - created).total_seconds()) for m in moments]
    assert offsets == list(range(2, 2 * len(offsets) + 1, 2)), "every moment on the lattice exactly once"
    assert any(m.timestamp() > killed_at + 1 for m in moments)
    assert status["executionCount"] == len(jobs)  # each success counted once, none lost
    assert status.get("missedRuns", 0) == 0
    assert operator.errors() == []
