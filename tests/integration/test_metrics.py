"""/metrics on the real control plane: after known executions the counters and histogram counts
equal what the Jobs and statuses show."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import SUCCEEDS, Kube, Operator, fails, wait_for
from tests.integration.triggers import trigger


def scrape(operator: Operator) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = httpx.get(f"{operator.url}/metrics", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): float(s.value)
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_match_the_jobs_made_and_the_runs_counted(kube: Kube, namespace: str, operator: Operator) -> None:
    kube.apply(trigger("good", interval=2, concurrencyPolicy="Allow", successfulJobsHistoryLimit=100,
                       pod=SUCCEEDS), namespace)
    kube.apply(trigger("bad", interval=3, maxConsecutiveFailures=2, failedJobsHistoryLimit=100,
                       pod=fails(1, "boom")), namespace)
    wait_for("runs of both", lambda: kube.status(namespace, "good").get("executionCount", 0) >= 3
             and kube.status(namespace, "bad").get("phase") == "Failed", timeout=60)
    kube.patch_spec(namespace, "good", {"state": "paused"})
    good = wait_for("every run counted", lambda: (s := kube.status(namespace, "good")).get("phase") == "Paused"
                    and not s.get("active") and s, timeout=30)
    bad = kube.status(namespace, "bad")
    samples = scrape(operator)
    interval = {"action_type": "cluster", "trigger_type": "interval"}
    made = len(kube.jobs(namespace, "good")) + len(kube.jobs(namespace, "bad"))
    assert value(samples, "trigger_operator_executions_started_total", **interval, run_kind="scheduled") == made
    assert value(samples, "trigger_operator_schedule_lateness_seconds_count", trigger_type="interval") == made
    assert value(samples, "trigger_operator_executions_finished_total", **interval,
                 outcome="Succeeded") == good["executionCount"]
    assert value(samples, "trigger_operator_executions_finished_total", **interval,
                 outcome="Failed") == bad["failedExecutionCount"] == 2
    assert value(samples, "trigger_operator_job_duration_seconds_count", action_type="cluster",
                 outcome="Succeeded") == good["executionCount"]
    # Every Job was one create call answered 201; each status write one guarded patch.
    assert value(samples, "trigger_operator_kube_requests_total", verb="create", resource="jobs", code="201") == made
    assert value(samples, "trigger_operator_kube_request_duration_seconds_count", verb="create",
                 resource="jobs") == made
    assert value(samples, "trigger_operator_kube_requests_total", verb="patch", resource="triggers/status",
                 code="200") >= made
    assert value(samples, "trigger_operator_triggers", phase="Paused") == 1
    assert value(samples, "trigger_operator_triggers", phase="Failed") == 1
    assert value(samples, "trigger_operator_build_info", version=next(
        dict(k[1])["version"] for k in samples if k[0] == "trigger_operator_build_info")) == 1
    # The only per-Trigger series: the failure gauges, for the failing Trigger alone.
    assert value(samples, "trigger_operator_trigger_consecutive_failures", namespace=namespace, trigger="bad") == 2
    assert value(samples, "trigger_operator_trigger_stopped", namespace=namespace, trigger="bad") == 1
    assert not any("good" in dict(labels).values() for _, labels in samples)
