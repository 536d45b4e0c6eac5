"""The seed's REST bodies and Trigger objects, mapped both ways (pure), and the routes' use of the
caller's one authentication."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from mixpeek.models.error_response import ErrorResponse as SdkErrorResponse
from mixpeek.models.shared_clusters_triggers_models_trigger_model import SharedClustersTriggersModelsTriggerModel
from mixpeek.models.shared_triggers_models_trigger_model import SharedTriggersModelsTriggerModel
from mixpeek.models.task_response import TaskResponse as SdkTaskResponse

from tests.unit.fake_cluster import FakeCluster
from trigger_operator.jobs.render import manual_job_name
from trigger_operator.kube.interface import Identity
from trigger_operator.model.spec import CALENDAR_FIELDS, ScheduleConfig
from trigger_operator.seed.mapping import (
    SEED_SCHEDULE_KEYS,
    BodyError,
    camel_keys,
    cluster_history,
    cluster_trigger_manifest,
    cluster_trigger_model,
    error_body,
    history,
    merge_diff,
    only_status_moved,
    seed_location,
    select,
    snake_keys,
    task_for_run_now,
    task_from_job,
    task_without_job,
    trigger_manifest,
    trigger_model,
    update_patch,
)
from trigger_operator.seed.models import (
    ClusterCreateTriggerRequest,
    CreateTriggerRequest,
    ListTriggersRequest,
    SeedStatus,
    TaskStatus,
)
from trigger_operator.timemath.calendar import jitter_offset
from trigger_operator.web.auth import Authorizer
from trigger_operator.web.seed_routes import add_seed_routes

NOW = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)

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
                               managedFields=[{"time": "2026-03-02T10:00:00Z"}]), NOW)
    assert (model.trigger_id, model.namespace_id, model.internal_id) == ("trg-abc12", "team-a", "u-1")
    assert model.status is SeedStatus.FAILED and model.schedule_config == {"cron_expression": "0 2 * * *"}
    assert (model.execution_count, model.consecutive_failures, model.event_counter) == (3, 5, 7)
    assert model.created_by == "alice" and model.updated_at.hour == 10 and model.created_at.hour == 9


def test_list_filters_by_resource_and_sorts_with_a_stable_tie_break() -> None:
    specs = [{"actionType": "cluster", "actionConfig": {"cluster_id": f"c{i % 2}"}, "triggerType": "cron",
              "scheduleConfig": {}, "state": "active"} for i in range(5)]
    models = [trigger_model(body(f"trg-{i}", spec=spec), NOW) for i, spec in enumerate(specs)]
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
    model = trigger_model(body(status={"lastTriggeredAt": "yesterday", "nextScheduledAt": "soon"}), NOW)
    assert (model.last_triggered_at, model.next_scheduled_at) == (None, None)


def test_the_sdk_parses_every_model_we_answer() -> None:
    """Our answers through the seed SDK's own models (mixpeek 1.3.783): none is None or refused."""
    model = trigger_model(body(status={"lastVolumeMeasurement": {"value": 120.0, "exceeded": True}},
                               annotations={"trigger-operator.io/display-name": "Nightly"}), NOW)
    parsed = SharedTriggersModelsTriggerModel.from_dict(model.model_dump(mode="json"))
    assert parsed is not None and parsed.name == "Nightly" and parsed.is_overdue is False
    assert parsed.last_volume_measurement == {"value": 120.0, "exceeded": True}
    legacy = SharedClustersTriggersModelsTriggerModel.from_dict(cluster_trigger_model(body()).model_dump(mode="json"))
    assert legacy is not None and legacy.cluster_id == "c1" and legacy.execution_config.collection_ids == ["c1"]
    task = SdkTaskResponse.from_dict(task_for_run_now(body(), "tok").model_dump(mode="json"))
    assert task is not None and task.inputs is not None and task.inputs[0].actual_instance == {"cluster_id": "c1"}
    for action in ("retriever_execution", "alert_evaluation"):
        spec = {**body()["spec"], "actionType": action, "actionConfig": {"retriever_id": "ret_1"}}
        assert SdkTaskResponse.from_dict(task_for_run_now(body(spec=spec), "t").model_dump(mode="json")) is not None


def test_errors_are_the_sdks_error_response_naming_the_field() -> None:
    answer = error_body(422, "refused", errors=[{"loc": ["body", "schedule_config", "cron_expression"],
                                                 "msg": "minute 61 is out of range", "type": "value_error"}])
    parsed = SdkErrorResponse.from_dict(answer)
    assert parsed is not None and parsed.status == 422 and parsed.error.type == "ValidationError"
    assert parsed.error.message == "body.schedule_config.cron_expression: minute 61 is out of range"
    assert parsed.error.details == {"errors": [{"loc": ["body", "schedule_config", "cron_expression"],
                                                "msg": "minute 61 is out of range", "type": "value_error"}]}
    not_found = SdkErrorResponse.from_dict(error_body(404, "no trigger x"))
    assert not_found is not None and (not_found.error.type, not_found.error.details) == ("NotFoundError", None)


CREATED = "2026-03-02T11:59:30Z"


@pytest.mark.parametrize(("spec", "status", "expected_next", "overdue"), [
    pytest.param({"triggerType": "cron", "scheduleConfig": {"cronExpression": "0 2 * * *"}}, {},
                 dt.datetime(2026, 3, 3, 2, 0, tzinfo=dt.UTC), False, id="cron-before-the-operator-saw-it"),
    pytest.param({"triggerType": "interval", "scheduleConfig": {"intervalSeconds": 60, "startImmediately": True}}, {},
                 dt.datetime(2026, 3, 2, 11, 59, 30, tzinfo=dt.UTC), False, id="start-immediately-is-the-creation"),
    pytest.param({"triggerType": "interval", "scheduleConfig": {"intervalSeconds": 60}}, {},
                 dt.datetime(2026, 3, 2, 12, 0, 30, tzinfo=dt.UTC), False, id="interval-first-moment"),
    pytest.param({"triggerType": "cron", "scheduleConfig": {"cronExpression": "0 2 * * *"}},
                 {"observedSchedule": "cron 0 2 * * * UTC", "nextScheduledAt": "2026-03-02T11:58:59Z"},
                 dt.datetime(2026, 3, 2, 11, 58, 59, tzinfo=dt.UTC), True, id="61-s-late-is-overdue"),
    pytest.param({"triggerType": "cron", "scheduleConfig": {"cronExpression": "0 2 * * *"}},
                 {"observedSchedule": "cron 0 2 * * * UTC", "nextScheduledAt": "2026-03-02T11:59:01Z"},
                 dt.datetime(2026, 3, 2, 11, 59, 1, tzinfo=dt.UTC), False, id="59-s-late-is-within-the-grace"),
    pytest.param({"triggerType": "cron", "scheduleConfig": {"cronExpression": "0 2 * * *"},
                  "startingDeadlineSeconds": 10},
                 {"observedSchedule": "cron 0 2 * * * UTC", "nextScheduledAt": "2026-03-02T11:59:45Z"},
                 dt.datetime(2026, 3, 2, 11, 59, 45, tzinfo=dt.UTC), True, id="past-a-shorter-starting-deadline"),
    pytest.param({"triggerType": "cron", "scheduleConfig": {"cronExpression": "0 2 * * *"}, "state": "paused"},
                 {"observedSchedule": "cron 0 2 * * * UTC", "nextScheduledAt": "2026-03-02T10:00:00Z"},
                 dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC), False, id="paused-is-never-overdue"),
    pytest.param({"triggerType": "event", "scheduleConfig": {"eventType": "documents_added", "eventThreshold": 5}},
                 {"nextScheduledAt": "2026-03-02T10:00:00Z"},
                 dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC), False, id="an-event-cooldown-is-not-a-schedule"),
])
def test_next_scheduled_at_and_is_overdue(spec: dict[str, Any], status: dict[str, Any],
                                          expected_next: dt.datetime, overdue: bool) -> None:
    full = {"actionType": "cluster", "actionConfig": {"cluster_id": "c1"}, "state": "active", **spec}
    model = trigger_model(body(spec=full, status=status, creationTimestamp=CREATED), NOW)
    assert (model.next_scheduled_at, model.is_overdue) == (expected_next, overdue)


CALENDAR = {"cron_expression": "0 9 * * 1-5", "cron_expressions": ["0 12 * * 6"], "timezone": "Europe/Berlin",
            "exclude_cron": ["* * 25 12 *"], "exclude_dates": ["2026-04-03", "2026-05-01"],
            "start_at": "2026-03-01T00:00:00+01:00", "end_at": "2027-01-01T00:00:00+01:00", "jitter_seconds": 30,
            "max_runs": 200}


def test_the_calendar_maps_to_the_spec_and_back_as_snake_case_extensions() -> None:
    """Issue 22: every calendar key goes through the seed's schedule_config in snake_case, reaches
    the spec in camelCase, and comes back unchanged in the model a seed client reads."""
    manifest = trigger_manifest(CreateTriggerRequest.model_validate({**DAILY, "schedule_config": CALENDAR}),
                                created_by="a")
    config = manifest["spec"]["scheduleConfig"]
    assert config["cronExpressions"] == ["0 12 * * 6"] and config["excludeCron"] == ["* * 25 12 *"]
    assert (config["startAt"], config["endAt"], config["jitterSeconds"], config["maxRuns"]) == (
        "2026-03-01T00:00:00+01:00", "2027-01-01T00:00:00+01:00", 30, 200)
    stored = body(spec=manifest["spec"], creationTimestamp="2026-03-06T08:00:30Z")  # Friday 09:00:30 in Berlin
    model = trigger_model(stored, NOW)
    assert model.schedule_config == CALENDAR
    # The first moment before the operator saw it: the second line's Saturday 12:00 in Berlin, shifted
    # by this Trigger's jitter (Friday's 09:00 is before the creation, even shifted by 21 s).
    offset = jitter_offset("team-a", "trg-abc12", 30)
    assert offset == dt.timedelta(seconds=21)
    assert model.next_scheduled_at == dt.datetime(2026, 3, 7, 11, 0, tzinfo=dt.UTC) + offset


@pytest.mark.parametrize(("schedule", "loc", "words"), [
    pytest.param({**CALENDAR, "exclude_cron": ["* * 25 12 *", "61 * * * *"]},
                 ["body", "schedule_config", "exclude_cron[1]"], "minute field", id="exclude-cron-line"),
    pytest.param({**CALENDAR, "exclude_cron": ["not cron"]},
                 ["body", "schedule_config", "exclude_cron[0]"], "expected exactly 5 fields", id="exclude-cron-first"),
    pytest.param({**CALENDAR, "cron_expressions": ["0 12 * * 6", "0 25 * * *"]},
                 ["body", "schedule_config", "cron_expressions[1]"], "hour field", id="second-cron-line"),
    pytest.param({**CALENDAR, "exclude_dates": ["2026-02-30"]},
                 ["body", "schedule_config", "exclude_dates[0]"], "is not a date", id="not-a-date"),
    pytest.param({**CALENDAR, "end_at": "2026-03-01T00:00:00+01:00"},
                 ["body", "schedule_config", "end_at"], "must be after startAt", id="empty-window"),
    pytest.param({**CALENDAR, "start_at": "2026-03-01T00:00:00"},
                 ["body", "schedule_config", "start_at"], "timezone", id="no-offset"),
    pytest.param({**CALENDAR, "jitter_seconds": 3601},
                 ["body", "schedule_config", "jitter_seconds"], "3600", id="jitter-bound"),
])
def test_a_bad_calendar_is_a_422_naming_the_seed_field(schedule: dict[str, Any], loc: list[str], words: str) -> None:
    with pytest.raises(BodyError) as caught:
        trigger_manifest(CreateTriggerRequest.model_validate({**DAILY, "schedule_config": schedule}), created_by="a")
    assert caught.value.detail[0]["loc"] == loc and words in caught.value.detail[0]["msg"]
    answer = error_body(422, "refused", errors=caught.value.detail)
    assert answer["error"]["message"].startswith(f"body.schedule_config.{loc[-1]}: ")


def test_name_and_status_on_create_and_failed_refused() -> None:
    manifest = trigger_manifest(CreateTriggerRequest.model_validate({**DAILY, "name": "Nightly", "status": "paused"}),
                                created_by="alice")
    assert manifest["metadata"]["annotations"]["trigger-operator.io/display-name"] == "Nightly"
    assert manifest["spec"]["state"] == "paused"
    with pytest.raises(BodyError) as caught:
        trigger_manifest(CreateTriggerRequest.model_validate({**DAILY, "status": "failed"}), created_by="a")
    assert caught.value.detail[0]["loc"] == ["body", "status"]


def test_a_list_filter_by_the_new_action_types_is_an_empty_list() -> None:
    models = [trigger_model(body(), NOW)]
    assert select(models, ListTriggersRequest.model_validate({"action_type": "retriever_execution"})) == ([], 0)
    page, _ = select(models, ListTriggersRequest(sort_by="is_overdue"))
    assert len(page) == 1


def test_an_update_is_a_merge_patch_guarded_by_the_resource_version_read() -> None:
    current = body(resourceVersion="41", annotations={"trigger-operator.io/display-name": "Old"})
    current["spec"]["scheduleConfig"] = {"cronExpression": "0 2 * * *", "timezone": "UTC"}
    current["spec"]["description"] = "old"
    patch = update_patch(current, schedule_config={"cron_expression": "30 3 * * *"}, description=None,
                         status=SeedStatus.PAUSED, name=None,
                         fields={"schedule_config", "description", "status", "name"})
    assert patch["metadata"] == {"resourceVersion": "41", "annotations": {"trigger-operator.io/display-name": None}}
    assert patch["spec"] == {"scheduleConfig": {"cronExpression": "30 3 * * *", "timezone": None},
                             "description": None, "state": "paused"}
    with pytest.raises(BodyError):
        update_patch(current, schedule_config=None, description=None, status=SeedStatus.FAILED, fields={"status"})


CONDITIONAL_SPEC = {"actionType": "cluster", "actionConfig": {"cluster_id": "c1"}, "triggerType": "conditional",
                    "state": "active",
                    "scheduleConfig": {"conditionType": "threshold", "metric": "value", "threshold": 3,
                                       "comparison": "<", "checkIntervalSeconds": 60,
                                       "source": {"configMap": {"name": "m", "key": "k"}}}}
EVENT_SPEC = {"actionType": "cluster", "actionConfig": {"cluster_id": "c1"}, "triggerType": "event", "state": "active",
              "scheduleConfig": {"eventType": "documents_added", "eventThreshold": 10, "cooldownSeconds": 60,
                                 "filters": [{"exact": {"source": "a"}}], "windowSeconds": 300}}
THRESHOLD_5 = {"condition_type": "threshold", "metric": "value", "threshold": 5, "check_interval_seconds": 60}


@pytest.mark.parametrize(("spec", "requested", "expected"), [
    pytest.param(CONDITIONAL_SPEC, THRESHOLD_5, {"threshold": 5}, id="source-and-comparison-kept"),
    pytest.param(CONDITIONAL_SPEC, {**THRESHOLD_5, "source": None}, {"threshold": 5, "source": None},
                 id="source-removed-when-named-null"),
    pytest.param(CONDITIONAL_SPEC, {**THRESHOLD_5, "source": {"config_map": {"name": "n", "key": "k"}}},
                 {"threshold": 5, "source": {"configMap": {"name": "n"}}}, id="source-replaced-when-named"),
    pytest.param(CONDITIONAL_SPEC, {**THRESHOLD_5, "comparison": None}, {"threshold": 5, "comparison": None},
                 id="comparison-back-to-its-default-when-named-null"),
    pytest.param(CONDITIONAL_SPEC, {**THRESHOLD_5, "comparison": ">="}, {"threshold": 5, "comparison": ">="},
                 id="comparison-replaced-when-named"),
    pytest.param(EVENT_SPEC, {"event_type": "documents_added", "event_threshold": 20},
                 {"eventThreshold": 20, "cooldownSeconds": None}, id="filters-and-window-kept-seed-keys-replaced"),
    pytest.param(EVENT_SPEC, {"event_type": "documents_added", "event_threshold": 10, "cooldown_seconds": 60,
                              "window_seconds": 60}, {"windowSeconds": 60}, id="window-replaced-when-named"),
])
def test_a_patch_of_schedule_config_keeps_the_kubernetes_only_keys_it_does_not_name(
        spec: dict[str, Any], requested: dict[str, Any], expected: dict[str, Any]) -> None:
    """The seed's PATCH replaces schedule_config whole for the seed's own keys; the keys only the
    Trigger has (its own source, filters, windowSeconds, comparison) survive unless named."""
    patch = update_patch(body(spec=json.loads(json.dumps(spec)), resourceVersion="5"), schedule_config=requested,
                         description=None, status=None, fields={"schedule_config"})
    assert patch["spec"] == {"scheduleConfig": expected}


def test_the_kubernetes_only_schedule_keys_are_those_the_seed_does_not_know() -> None:
    compound = {"parts", "require", "within_seconds"}  # compound Triggers (issue 23), ours too
    assert compound <= set(ScheduleConfig.model_fields)
    assert set(ScheduleConfig.model_fields) - SEED_SCHEDULE_KEYS - compound == {"source", "filters", "window_seconds",
                                                                     "comparison", *CALENDAR_FIELDS,
                                                                     "group_by", "max_keys", "absence"}
    assert set(ScheduleConfig.model_fields) >= SEED_SCHEDULE_KEYS


def test_merge_diff_turns_old_into_new() -> None:
    old = {"a": 1, "b": {"c": 2, "d": 3}, "e": [1]}
    assert merge_diff(old, {"a": 1, "b": {"c": 5}, "e": [2], "f": "x"}) == {"b": {"c": 5, "d": None}, "e": [2],
                                                                            "f": "x"}
    assert merge_diff(old, old) == {}


def test_a_conflict_is_retried_only_when_nothing_but_status_moved() -> None:
    first = body(generation=3, annotations={"trigger-operator.io/display-name": "A"})
    assert only_status_moved(first, body(generation=3, annotations={"trigger-operator.io/display-name": "A"},
                                         resourceVersion="99"))
    assert not only_status_moved(first, body(generation=4, annotations={"trigger-operator.io/display-name": "A"}))
    assert not only_status_moved(first, body(generation=3, annotations={"trigger-operator.io/display-name": "B"}))


def test_a_legacy_cluster_trigger_is_a_cluster_trigger_with_its_config_in_action_config() -> None:
    request = ClusterCreateTriggerRequest.model_validate({
        "trigger_type": "event", "execution_config": {"collection_ids": ["col_abc123"],
                                                      "config": {"algorithm": "kmeans", "n_clusters": 3}},
        "schedule_config": {"event_type": "documents_added", "event_threshold": 100, "collection_id": "col_abc123",
                            "cooldown_seconds": 300}})
    manifest = cluster_trigger_manifest(request, created_by="a")
    assert manifest["spec"]["actionType"] == "cluster"
    assert manifest["spec"]["actionConfig"] == {"collection_ids": ["col_abc123"],
                                                "config": {"algorithm": "kmeans", "n_clusters": 3}}
    made = body(spec=manifest["spec"], status={"lastExecutionTaskId": "trg-abc12-123"})
    model = cluster_trigger_model(made)
    assert model.cluster_id is None and model.execution_config.config == {"algorithm": "kmeans", "n_clusters": 3}
    assert model.last_execution_job_id == "trg-abc12-123"
    with pytest.raises(BodyError) as caught:
        cluster_trigger_manifest(ClusterCreateTriggerRequest.model_validate(
            {"trigger_type": "cron", "schedule_config": {"cron_expression": "0 2 * * *"}}), created_by="a")
    assert caught.value.detail[0]["loc"] == ["body", "cluster_id"]


def test_legacy_history_names_jobs_and_filters_by_status() -> None:
    status = {"recentExecutions": [{"name": "t-1", "outcome": "Failed", "startedAt": "2026-03-02T10:00:01Z"},
                                   {"name": "t-2", "outcome": "Succeeded", "startedAt": "2026-03-02T11:00:01Z"}]}
    result = cluster_history(body(status=status), 0, 50, "completed")
    assert [(e.job_id, e.status) for e in result.executions] == [("t-2", "COMPLETED")] and result.total == 1


class _Trail(Authorizer):
    """The Authorizer, noting the address of every TokenReview asked for (``identify``)."""

    def __init__(self, cluster: FakeCluster) -> None:
        super().__init__(cluster, ttl_seconds=60)
        self.addresses: list[str] = []

    async def identify(self, authorization: str | None, *, address: str = "", audience: str = "") -> Identity:
        self.addresses.append(address)
        return await super().identify(authorization, address=address, audience=audience)


class _Caller:
    """The Kubernetes API as a caller reaches it: a create answers its manifest, named."""

    async def request(self, token: str, method: str, path: str, *, body: Any = None, content_type: str | None = None,
                      params: Mapping[str, str] | None = None) -> Any:
        assert (token, method) == ("t0ken", "POST")
        meta = {**body["metadata"], "name": "trg-abcde", "namespace": "team-a", "uid": "u-1",
                "creationTimestamp": "2026-03-02T09:00:00Z"}
        return {**body, "metadata": meta}


@pytest.mark.parametrize(("path", "payload"), [
    pytest.param("/v1/triggers", DAILY, id="create"),
    pytest.param("/v1/clusters/triggers", {"trigger_type": "cron", "cluster_id": "c1",
                                           "schedule_config": {"cron_expression": "0 2 * * *"}}, id="create-cluster"),
])
def test_a_create_names_its_creator_from_the_one_authentication_of_its_request(path: str, payload: Any) -> None:
    """The route takes the caller the authentication dependency found (by token, charged to the
    client's address), rather than asking again without the address."""
    cluster = FakeCluster(clock=lambda: NOW)
    cluster.tokens["t0ken"] = Identity("alice")
    authorizer = _Trail(cluster)
    app = FastAPI()
    add_seed_routes(app, caller=_Caller(), authorizer=authorizer)
    answer = TestClient(app).post(path, json=payload, headers={"Authorization": "Bearer t0ken",
                                                               "X-Namespace": "team-a"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["created_by"] == "alice"
    assert authorizer.addresses == ["testclient"]
