"""Between the seed's REST bodies and Trigger objects. Pure.

Decisions: ``trigger_id`` is the Trigger's name (generated as ``trg-xxxxx`` on create), so the REST
API and ``kubectl get trg`` always name the same object; ``namespace_id`` is its namespace and
``internal_id`` its uid. The seed's ``status`` is the spec's ``state`` (``failed`` when the Trigger
stopped after its failure limit). ``schedule_config`` keys are the spec's in snake_case.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic.alias_generators import to_camel, to_snake

from trigger_operator.jobs.render import ANNOTATION_CREATED_BY, ANNOTATION_RUN_NOW, GROUP, VERSION, manual_job_name
from trigger_operator.model.spec import ActionType, SpecError, TriggerType, parse_spec
from trigger_operator.model.status import Outcome, parse_time
from trigger_operator.seed.models import (
    CreateTriggerRequest,
    ListTriggersRequest,
    SeedStatus,
    TaskResponse,
    TaskStatus,
    TriggerExecutionHistory,
    TriggerHistoryResponse,
    TriggerModel,
)

GENERATED_NAME_PREFIX = "trg-"
RESOURCE_KEYS = ("cluster_id", "taxonomy_id", "collection_id", "batch_id", "bucket_id")
TASK_TYPES = {ActionType.CLUSTER: "engine_cluster_build", ActionType.TAXONOMY_ENRICHMENT: "api_taxonomies_execute",
              ActionType.BATCH_RERUN: "api_buckets_batches_process",
              ActionType.COLLECTION_TRIGGER: "api_collections_trigger"}
_VERBATIM = ("filters",)  # attribute names inside filters are the events', not ours to re-case


class BodyError(ValueError):
    """A request body the Trigger schema refuses: FastAPI's validation list, naming the field."""

    def __init__(self, loc: Sequence[str | int], message: str) -> None:
        super().__init__(message)
        self.detail = [{"loc": ["body", *loc], "msg": message, "type": "value_error"}]


def camel_keys(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {to_camel(k): (v if k in _VERBATIM else camel_keys(v)) for k, v in value.items()}
    return [camel_keys(v) for v in value] if isinstance(value, list) else value


def snake_keys(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {to_snake(k): (v if k in _VERBATIM else snake_keys(v)) for k, v in value.items()}
    return [snake_keys(v) for v in value] if isinstance(value, list) else value


def seed_location(field: str) -> list[str]:
    """``spec.scheduleConfig.cronExpression`` -> ``["schedule_config", "cron_expression"]``."""
    head, verbatim, rest = field.partition(".filters[")  # event attribute names in filters keep their case
    parts = [to_snake(p) for p in head.removeprefix("spec.").split(".") if p and p != "spec"]
    parts += [f"filters[{p}" if i == 0 else p for i, p in enumerate(rest.split("."))] if verbatim else []
    return ["status" if parts == ["state"] else p for p in parts] or ["body"]


def checked_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The spec, or `BodyError` naming the seed field the operator would refuse."""
    try:
        parse_spec(dict(spec))
    except SpecError as error:
        raise BodyError(seed_location(error.field), error.reason) from None
    return dict(spec)


def trigger_manifest(request: CreateTriggerRequest, *, created_by: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"actionType": request.action_type.value, "actionConfig": request.action_config,
                            "triggerType": request.trigger_type.value,
                            "scheduleConfig": camel_keys(request.schedule_config), "state": request.status}
    if request.description is not None:
        spec["description"] = request.description
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Trigger",
            "metadata": {"generateName": GENERATED_NAME_PREFIX, "annotations": {ANNOTATION_CREATED_BY: created_by}},
            "spec": checked_spec(spec)}


def seed_status(body: Mapping[str, Any]) -> SeedStatus:
    if (body.get("status") or {}).get("phase") == "Failed":
        return SeedStatus.FAILED
    return SeedStatus((body.get("spec") or {}).get("state") or "active")


def _time(value: Any) -> dt.datetime | None:
    """A time from status, or None when it was edited into something unreadable."""
    try:
        return parse_time(value)
    except (TypeError, ValueError):
        return None


def trigger_model(body: Mapping[str, Any]) -> TriggerModel:
    meta, spec, status = body["metadata"], body.get("spec") or {}, body.get("status") or {}
    created = _time(meta.get("creationTimestamp")) or dt.datetime.now(dt.UTC)
    touched = [_time(f.get("time")) for f in meta.get("managedFields") or [] if f.get("time")]
    return TriggerModel(
        trigger_id=meta["name"], namespace_id=meta["namespace"], internal_id=meta.get("uid", ""),
        action_type=ActionType(spec["actionType"]), action_config=spec.get("actionConfig") or {},
        trigger_type=TriggerType(spec["triggerType"]), schedule_config=snake_keys(spec.get("scheduleConfig") or {}),
        status=seed_status(body), last_triggered_at=_time(status.get("lastTriggeredAt")),
        last_execution_task_id=status.get("lastExecutionTaskId"),
        next_scheduled_at=_time(status.get("nextScheduledAt")),
        execution_count=status.get("executionCount", 0), consecutive_failures=status.get("consecutiveFailures", 0),
        last_execution_status=status.get("lastExecutionStatus"), last_execution_error=status.get("lastExecutionError"),
        event_counter=status.get("eventCounter", 0), last_cooldown_at=_time(status.get("lastCooldownAt")),
        baseline_snapshot=status.get("baselineSnapshot"), last_drift_measurement=status.get("lastDriftMeasurement"),
        last_condition_check_at=_time(status.get("lastConditionCheckAt")), description=spec.get("description"),
        created_at=created, updated_at=max([created, *(t for t in touched if t is not None)]),
        created_by=(meta.get("annotations") or {}).get(ANNOTATION_CREATED_BY))


def select(models: Sequence[TriggerModel], request: ListTriggersRequest) -> tuple[list[TriggerModel], int]:
    """Filters, sorts and pages: the page and the number of matches."""
    chosen = [m for m in models
              if (request.action_type is None or m.action_type is request.action_type)
              and (request.trigger_type is None or m.trigger_type is request.trigger_type)
              and (request.status is None or m.status is request.status)
              and (request.resource_id is None
                   or any(m.action_config.get(k) == request.resource_id for k in RESOURCE_KEYS))]
    if request.sort_by not in TriggerModel.model_fields:
        raise BodyError(["sort_by"], f"unknown field {request.sort_by!r}; sort by a field of the trigger model")

    def key(m: TriggerModel) -> tuple[bool, Any, str]:
        value = getattr(m, request.sort_by)
        return value is None, value if not isinstance(value, (dict, list)) else str(value), m.trigger_id

    ordered = sorted(chosen, key=key, reverse=request.direction == "desc")
    return ordered[request.offset:request.offset + request.limit], len(chosen)


_OUTCOME_TASK = {Outcome.SUCCEEDED.value: TaskStatus.COMPLETED, Outcome.FAILED.value: TaskStatus.FAILED,
                 Outcome.REPLACED.value: TaskStatus.CANCELED, Outcome.LOST.value: TaskStatus.FAILED}


def history(body: Mapping[str, Any], offset: int, limit: int) -> TriggerHistoryResponse:
    status = body.get("status") or {}
    runs = [TriggerExecutionHistory(task_id=r["name"], triggered_at=_time(r.get("firedAt")) or created(body),
                                    status="IN_PROGRESS") for r in status.get("active") or []]
    runs += [TriggerExecutionHistory(
        task_id=e["name"], triggered_at=_time(e.get("startedAt")) or _time(e.get("scheduledTime"))
        or created(body), status=_OUTCOME_TASK.get(e.get("outcome", ""), TaskStatus.FAILED).value,
        execution_time_ms=e.get("durationMs"), error=e.get("error")) for e in status.get("recentExecutions") or []]
    return TriggerHistoryResponse(trigger_id=body["metadata"]["name"], executions=runs[offset:offset + limit],
                                  total=len(runs), offset=offset, limit=limit)


def created(body: Mapping[str, Any]) -> dt.datetime:
    return parse_time(body["metadata"].get("creationTimestamp")) or dt.datetime.now(dt.UTC)


def task_for_run_now(body: Mapping[str, Any], token: str) -> TaskResponse:
    spec = body.get("spec") or {}
    name = manual_job_name(body["metadata"]["name"], token)
    return TaskResponse(task_id=name, task_type=TASK_TYPES[ActionType(spec["actionType"])],
                        status=TaskStatus.PENDING, inputs=spec.get("actionConfig") or {},
                        additional_data={"trigger_id": body["metadata"]["name"], "job_name": name})


def task_from_job(job: Mapping[str, Any], trigger: Mapping[str, Any] | None) -> TaskResponse:
    """A run's task, read from its Job (the pods' progress decides the status)."""
    meta, status = job["metadata"], job.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"}
    if "Complete" in conditions:
        task_status, error = TaskStatus.COMPLETED, None
    elif "Failed" in conditions:
        c = conditions["Failed"]
        task_status, error = TaskStatus.FAILED, ": ".join(p for p in (c.get("reason"), c.get("message")) if p)
    elif status.get("active") or status.get("ready"):
        task_status, error = TaskStatus.IN_PROGRESS, None
    else:
        task_status, error = TaskStatus.PENDING, None
    if meta.get("deletionTimestamp") and task_status in (TaskStatus.PENDING, TaskStatus.IN_PROGRESS):
        task_status = TaskStatus.CANCELED
    spec = (trigger or {}).get("spec") or {}
    action = spec.get("actionType")
    return TaskResponse(task_id=meta["name"], task_type=TASK_TYPES[ActionType(action)] if action else "trigger_run",
                        status=task_status, inputs=spec.get("actionConfig"), error=error,
                        outputs={"succeeded": status.get("succeeded", 0), "failed": status.get("failed", 0)},
                        additional_data={"trigger_id": (meta.get("labels") or {}).get(f"{GROUP}/trigger"),
                                         "job_name": meta["name"], "start_time": status.get("startTime"),
                                         "completion_time": status.get("completionTime")})


def task_without_job(trigger: Mapping[str, Any], task_id: str) -> TaskResponse | None:
    """A run whose Job is not (or no longer) there: asked for, in progress, or in the history."""
    spec, status = trigger.get("spec") or {}, trigger.get("status") or {}
    token = ((trigger.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_RUN_NOW)
    base = TaskResponse(task_id=task_id, task_type=TASK_TYPES[ActionType(spec["actionType"])],
                        status=TaskStatus.PENDING, inputs=spec.get("actionConfig") or {},
                        additional_data={"trigger_id": trigger["metadata"]["name"], "job_name": task_id})
    for execution in status.get("recentExecutions") or []:
        if execution.get("name") == task_id:
            return base.model_copy(update={"status": _OUTCOME_TASK.get(execution.get("outcome", ""), TaskStatus.FAILED),
                                           "error": execution.get("error")})
    if any(r.get("name") == task_id for r in status.get("active") or []) or (
            token and manual_job_name(trigger["metadata"]["name"], token) == task_id):
        return base
    return None
