"""The seed's REST bodies and Trigger objects, mapped both ways. Pure."""

from __future__ import annotations

from typing import Any

import pytest

from trigger_operator.jobs.render import manual_job_name
from trigger_operator.seed.mapping import (
    BodyError,
    camel_keys,
    history,
    seed_location,
    select,
    snake_keys,
    task_from_job,
    task_without_job,
    trigger_manifest,
    trigger_model,
)
from trigger_operator.seed.models import CreateTriggerRequest, ListTriggersRequest, SeedStatus, TaskStatus

DAILY = {"action_type": "cluster", "action_config": {"cluster_id": "clust_abc123"}, "trigger_type": "cron",
         "schedule_config": {"cron_expression": "0 2 * * *", "timezone": "UTC"}, "description": "Daily clustering"}


def body(name: str = "trg-abc12", *, spec: dict[str, Any] | None = None, status: dict[str, Any] | None = None,
         **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "team-a", "uid": "u-1", "creationTimestamp": "2026-03-02T09:00:00Z",
                         **meta},
            "spec": spec or {"actionType": "cluster", "actionConfig": {"cluster_id": "c1"}, "triggerType": "cron",
                             "scheduleConfig": {"cronExpression": "0 2 * * *"}, "state": "active"},
            "status": status or {}}


def test_a_create_request_becomes_a_trigger_with_camel_case_and_its_creator() -> None:
    manifest = trigger_manifest(CreateTriggerRequest.model_validate(DAILY), created_by="alice")
    assert manifest["metadata"] == {"generateName": "trg-", "annotations": {"trigger-operator.io/created-by": "alice"}}
    assert manifest["spec"]["scheduleConfig"] == {"cronExpression": "0 2 * * *", "timezone": "UTC"}
    assert manifest["spec"]["state"] == "active" and manifest["spec"]["description"] == "Daily clustering"


@pytest.mark.parametrize(("schedule", "loc"), [
    pytest.param({"cron_expression": "61 2 * * *"}, ["body", "schedule_config", "cron_expression"], id="minute-61"),
    pytest.param({"cron_expression": "0 2 * * *", "timezone": "Mars/Base"}, ["body", "schedule_config", "timezone"],
                 id="unknown-zone"),
    pytest.param({"cron": "0 2 * * *"}, ["body", "schedule_config", "cron"], id="an-unknown-key"),
])
def test_a_request_the_trigger_schema_refuses_names_the_seeds_field(schedule: dict[str, Any], loc: list[str]) -> None:
    with pytest.raises(BodyError) as caught:
        trigger_manifest(CreateTriggerRequest.model_validate({**DAILY, "schedule_config": schedule}), created_by="a")
    assert caught.value.detail[0]["loc"] == loc


def test_keys_change_case_but_event_attribute_names_in_filters_do_not() -> None:
    seed = {"event_type": "x", "filters": [{"exact": {"my_attr": "v"}}], "source": {"config_map": {"name": "a"}}}
    camel = camel_keys(seed)
    assert camel == {"eventType": "x", "filters": [{"exact": {"my_attr": "v"}}], "source": {"configMap": {"name": "a"}}}
    assert snake_keys(camel) == seed


@pytest.mark.parametrize(("field", "loc"), [
    ("spec.scheduleConfig.cronExpression", ["schedule_config", "cron_expression"]),
    ("spec.actionConfig", ["action_config"]), ("spec.state", ["status"]),
])
def test_spec_fields_are_named_as_the_seed_names_them(field: str, loc: list[str]) -> None:
    assert seed_location(field) == loc


def test_the_model_has_every_field_from_the_trigger_and_its_status() -> None:
    model = trigger_model(body(status={"phase": "Failed", "executionCount": 3, "consecutiveFailures": 5,
                                       "eventCounter": 7, "nextScheduledAt": "2026-03-03T02:00:00Z"},
                               annotations={"trigger-operator.io/created-by": "alice"},
                               managedFields=[{"time": "2026-03-02T10:00:00Z"}]))
    assert (model.trigger_id, model.namespace_id, model.internal_id) == ("trg-abc12", "team-a", "u-1")
    assert model.status is SeedStatus.FAILED and model.schedule_config == {"cron_expression": "0 2 * * *"}
    assert (model.execution_count, model.consecutive_failures, model.event_counter) == (3, 5, 7)
    assert model.created_by == "alice" and model.updated_at.hour == 10 and model.created_at.hour == 9


def test_list_filters_by_resource_and_sorts_with_a_stable_tie_break() -> None:
    models = [trigger_model(body(f"trg-{i}", spec={"actionType": "cluster", "actionConfig": {"cluster_id": f"c{i % 2}"},
                                                   "triggerType": "cron", "scheduleConfig": {}, "state": "active"}))
              for i in range(5)]
    page, total = select(models, ListTriggersRequest(resource_id="c1", sort_by="trigger_id", direction="asc"))
    assert ([m.trigger_id for m in page], total) == (["trg-1", "trg-3"], 2)
    page, total = select(models, ListTriggersRequest(limit=2, offset=1))  # created_at desc, ties by id
    assert total == 5 and [m.trigger_id for m in page] == ["trg-3", "trg-2"]
    with pytest.raises(BodyError):
        select(models, ListTriggersRequest(sort_by="colour"))


def test_history_lists_runs_in_progress_then_the_finished_ones() -> None:
    status = {"active": [{"name": "t-2", "firedAt": "2026-03-02T11:00:00Z"}],
              "recentExecutions": [{"name": "t-1", "scheduledTime": "2026-03-02T10:00:00Z", "outcome": "Failed",
                                    "startedAt": "2026-03-02T10:00:01Z", "durationMs": 900, "error": "exit 1"}]}
    result = history(body(status=status), 0, 50)
    assert [(e.task_id, e.status) for e in result.executions] == [("t-2", "IN_PROGRESS"), ("t-1", "FAILED")]
    assert result.executions[1].execution_time_ms == 900 and result.total == 2
    assert history(body(status=status), 1, 1).executions[0].task_id == "t-1"


@pytest.mark.parametrize(("job_status", "deleting", "expected"), [
    pytest.param({}, False, TaskStatus.PENDING, id="not-started"),
    pytest.param({"active": 1}, False, TaskStatus.IN_PROGRESS, id="running"),
    pytest.param({"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}, False,
                 TaskStatus.COMPLETED, id="complete"),
    pytest.param({"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}, False,
                 TaskStatus.FAILED, id="failed"),
    pytest.param({"active": 1}, True, TaskStatus.CANCELED, id="deleted-while-running"),
])
def test_a_task_is_read_from_its_job(job_status: dict[str, Any], deleting: bool, expected: TaskStatus) -> None:
    job = {"metadata": {"name": "trg-abc12-m123", "labels": {"trigger-operator.io/trigger": "trg-abc12"},
                        **({"deletionTimestamp": "2026-03-02T10:00:00Z"} if deleting else {})}, "status": job_status}
    task = task_from_job(job, body())
    assert task.status is expected and task.task_type == "engine_cluster_build"


def test_a_run_asked_for_but_not_yet_made_is_pending_and_an_unknown_one_is_none() -> None:
    trigger = body(annotations={"trigger-operator.io/run-now": "tok"})
    asked = manual_job_name("trg-abc12", "tok")
    task = task_without_job(trigger, asked)
    assert task is not None and task.status is TaskStatus.PENDING
    assert task_without_job(trigger, "trg-abc12-m000000000") is None
    done = body(status={"recentExecutions": [{"name": asked, "outcome": "Succeeded"}]})
    finished = task_without_job(done, asked)
    assert finished is not None and finished.status is TaskStatus.COMPLETED


def test_a_status_time_edited_into_nonsense_reads_as_none() -> None:
    model = trigger_model(body(status={"lastTriggeredAt": "yesterday", "nextScheduledAt": "soon"}))
    assert (model.last_triggered_at, model.next_scheduled_at) == (None, None)
