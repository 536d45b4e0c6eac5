"""Bad input gets a clear error naming the field, and never stalls the operator or other Triggers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.harness import Kube, Operator, wait_for
from tests.integration.triggers import trigger


def with_spec(**changes: Any) -> dict[str, Any]:
    manifest = trigger("bad", cron="0 2 * * *")
    for key, value in changes.items():
        if value is None:
            manifest["spec"].pop(key, None)
        else:
            manifest["spec"][key] = value
    return manifest


@pytest.mark.parametrize(("manifest", "field", "reason"), [
    pytest.param(with_spec(scheduleConfig={"timezone": "UTC"}), "spec.scheduleConfig.cronExpression",
                 "is required when triggerType is 'cron'", id="cron-without-expression"),
    pytest.param(with_spec(triggerType="interval", scheduleConfig={"intervalSeconds": 0}),
                 "spec.scheduleConfig.intervalSeconds", "should be greater than or equal to 1", id="zero-interval"),
    pytest.param(with_spec(triggerType="interval", scheduleConfig={}), "spec.scheduleConfig.intervalSeconds",
                 "is required when triggerType is 'interval'", id="interval-without-seconds"),
    pytest.param(with_spec(actionType="reindex"), "spec.actionType", "Unsupported value", id="unknown-action"),
    pytest.param(with_spec(concurrencyPolicy="Sometimes"), "spec.concurrencyPolicy", "Unsupported value",
                 id="unknown-concurrency-policy"),
    pytest.param(with_spec(scheduleConfig={"cronExpression": "0 2 * *"}), "spec.scheduleConfig.cronExpression",
                 "should match", id="four-field-cron"),
    pytest.param(with_spec(scheduleConfig={"cronExpression": "0 2 * * *", "timezone": "../etc/passwd"}),
                 "spec.scheduleConfig.timezone", "should match", id="path-as-time-zone"),
    pytest.param(with_spec(successfulJobsHistoryLimit=-1), "spec.successfulJobsHistoryLimit",
                 "should be greater than or equal to 0", id="negative-history"),
    pytest.param(with_spec(triggerType="event", scheduleConfig={"eventType": "documents_added"}),
                 "spec.scheduleConfig",
                 "exactly one of scheduleConfig.eventThreshold and scheduleConfig.absence are required",
                 id="event-without-threshold"),
    pytest.param(with_spec(actionType=None), "spec.actionType", "Required value", id="missing-action"),
    pytest.param({**trigger("x" * 53, cron="0 2 * * *")}, "metadata.name", "at most 52 characters",
                 id="name-too-long"),
])
def test_the_api_server_refuses_a_wrong_manifest_naming_the_field(
        kube: Kube, namespace: str, manifest: dict[str, Any], field: str, reason: str) -> None:
    result = kube.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest), check=False)
    assert result.returncode != 0
    assert field in result.stderr and reason in result.stderr, result.stderr


@pytest.mark.parametrize(("schedule", "field", "reason"), [
    pytest.param({"cronExpression": "61 * * * *"}, "spec.scheduleConfig.cronExpression",
                 "minute field: 61", id="minute-out-of-range"),
    pytest.param({"cronExpression": "0 0 * * MON-XYZ"}, "spec.scheduleConfig.cronExpression",
                 "day-of-week field", id="unknown-weekday"),
    pytest.param({"cronExpression": "0 2 * * *", "timezone": "Mars/Olympus_Mons"}, "spec.scheduleConfig.timezone",
                 "unknown time zone 'Mars/Olympus_Mons'", id="unknown-time-zone"),
])
def test_the_operator_reports_what_the_schema_cannot_check_and_keeps_scheduling_others(
        kube: Kube, namespace: str, operator: Operator, schedule: dict[str, str], field: str, reason: str) -> None:
    kube.apply(trigger("fine", interval=2), namespace)
    manifest = trigger("odd", cron="0 2 * * *")
    manifest["spec"]["scheduleConfig"] = schedule
    kube.apply(manifest, namespace)
    status = wait_for("the problem in status", lambda: (s := kube.status(namespace, "odd")).get("message") and s)
    assert status["message"].startswith(f"{field}: ") and reason in status["message"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    wait_for("the InvalidConfiguration event", lambda: kube.events(namespace, "InvalidConfiguration"))
    wait_for("the valid Trigger to keep running", lambda: kube.status(namespace, "fine").get("executionCount", 0) >= 2,
             timeout=30)
    events = kube.events(namespace, "InvalidConfiguration")
    assert [e.message for e in events] == [status["message"]]  # once, not on every pass
    assert kube.jobs(namespace, "odd") == []
    assert operator.errors() == []

    fixed = dict(schedule, cronExpression="0 2 * * *", timezone="UTC")
    kube.patch_spec(namespace, "odd", {"scheduleConfig": fixed})
    wait_for("the fix to clear the message", lambda: "message" not in kube.status(namespace, "odd")
             and kube.status(namespace, "odd").get("nextScheduledAt"))


def test_a_job_the_api_server_refuses_is_a_counted_failure_with_its_reason(
        kube: Kube, namespace: str, operator: Operator) -> None:
    manifest = trigger("refused", interval=2, maxConsecutiveFailures=0)
    manifest["spec"]["jobTemplate"] = {"spec": {"template": {"spec": {
        "restartPolicy": "Always",  # Jobs allow only Never and OnFailure
        "containers": [{"name": "work", "image": "busybox"}]}}}}
    kube.apply(manifest, namespace)
    status = wait_for("two refused runs", lambda: (s := kube.status(namespace, "refused"))
                      .get("consecutiveFailures", 0) >= 2 and s, timeout=30)
    assert status["lastExecutionStatus"] == "Failed"
    assert "the API server refused Job refused-" in status["lastExecutionError"]
    assert "restartPolicy" in status["lastExecutionError"]
    assert status.get("active", []) == []
    assert kube.jobs(namespace, "refused") == []
    wait_for("the JobCreateFailed event", lambda: kube.events(namespace, "JobCreateFailed"))
    assert status["phase"] == "Active"  # maxConsecutiveFailures 0: it keeps trying
    assert operator.errors() == []


def event_trigger(name: str, **schedule: Any) -> dict[str, Any]:
    manifest = trigger(name, triggerType="event")
    manifest["spec"]["scheduleConfig"] = {"eventType": "documents_added", "eventThreshold": 10, **schedule}
    return manifest


@pytest.mark.parametrize(("manifest", "field", "bound"), [
    # Issue 17, finding 5: one `any` of 50,000 `exact` entries cost 29 ms per event on the loop.
    pytest.param(event_trigger("huge-any", filters=[{"any": [{"exact": {"type": "t"}}] * 50_000}]),
                 "spec.scheduleConfig.filters[0].any", "must have at most 31 items", id="50000-filter-entries"),
    pytest.param(with_spec(description="x" * 100_000), "spec.description", "1024", id="description-of-100kb"),
    pytest.param(event_trigger("long-value", filters=[{"prefix": {"source": "s" * 1025}}]),
                 "spec.scheduleConfig.filters[0].prefix.source", "1024", id="filter-value-over-1024"),
    pytest.param(event_trigger("long-type", eventType="t" * 257), "spec.scheduleConfig.eventType", "256",
                 id="event-type-over-256"),
])
def test_the_api_server_refuses_what_is_over_a_bound_naming_the_field_and_the_bound(
        kube: Kube, namespace: str, manifest: dict[str, Any], field: str, bound: str) -> None:
    # create, not apply: apply would copy the whole manifest into an annotation first.
    result = kube.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(manifest), check=False)
    assert result.returncode != 0
    assert f"{field}: " in result.stderr and bound in result.stderr, result.stderr[:2000]
    assert kube.kubectl("get", "triggers", "-n", namespace, "-o", "name").stdout == ""


def test_the_operator_refuses_filters_past_the_bound_in_all_and_keeps_the_others_running(
        kube: Kube, namespace: str, operator: Operator) -> None:
    """Each list within what the CRD can see (its first level), but 211 filters and attribute tests
    in all: the operator's check (the same parse_spec the webhook calls) names the one past 64."""
    kube.apply(trigger("fine", interval=2), namespace)
    nested = [{"all": [{"any": [{"exact": {"type": "t"}}] * 10}] * 10}]
    kube.apply(event_trigger("nested", filters=nested), namespace)
    status = wait_for("the problem in status", lambda: (s := kube.status(namespace, "nested")).get("message") and s)
    assert status["phase"] == "Invalid"
    assert status["message"] == ("spec.scheduleConfig.filters[0].all[3]: filters hold at most 64 filters and "
                                 "attribute tests in all (counted across all nesting); this one is past the bound")
    wait_for("the valid Trigger to keep running", lambda: kube.status(namespace, "fine").get("executionCount", 0) >= 1,
             timeout=30)
    assert operator.errors() == []
