"""Between the seed's REST bodies and Trigger objects. Pure (``now`` is an argument).

Decisions: ``trigger_id`` is the Trigger's name (generated as ``trg-xxxxx`` on create), so the REST
API and ``kubectl get trg`` always name the same object; ``namespace_id`` is its namespace and
``internal_id`` its uid; ``name`` (0.82) is a display name kept in the annotation
``trigger-operator.io/display-name``. The seed's ``status`` is the spec's ``state`` (``failed`` when
the Trigger stopped after its failure limit; ``disabled`` when it is Finished: the seed has no finished
state, and a Trigger whose run budget is spent or whose window ended runs no more on its own, as a
disabled one, without anything having failed; a PATCH of ``schedule_config`` raising ``max_runs`` or
moving ``end_at`` makes it ``active`` again). ``schedule_config`` keys are the spec's in snake_case.
A legacy cluster trigger (``/v1/clusters/triggers``) is a Trigger whose action_type is ``cluster``:
its ``cluster_id`` and ``execution_config`` (``collection_ids``, ``config``) are keys of action_config.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from pydantic.alias_generators import to_camel, to_snake

from trigger_operator.api import (
    ANNOTATION_CREATED_BY,
    ANNOTATION_DISPLAY_NAME,
    ANNOTATION_RUN_NOW,
    API_VERSION,
    KIND,
    LABEL_TRIGGER,
)
from trigger_operator.jobs.render import manual_job_name
from trigger_operator.model.spec import ActionType, SpecError, TriggerSpec, TriggerType, parse_spec, time_schedule
from trigger_operator.model.status import Outcome, Phase, parse_time
from trigger_operator.seed.models import (
    ClusterCreateTriggerRequest,
    ClusterExecutionHistoryItem,
    ClusterListTriggersRequest,
    ClusterTriggerHistoryResponse,
    ClusterTriggerModel,
    CreateTriggerRequest,
    ErrorDetail,
    ErrorResponse,
    ExecutionConfig,
    ListTriggersRequest,
    SeedStatus,
    TaskResponse,
    TaskStatus,
    TriggerExecutionHistory,
    TriggerHistoryResponse,
    TriggerModel,
)

GENERATED_NAME_PREFIX = "trg-"
RESOURCE_KEYS = ("cluster_id", "taxonomy_id", "collection_id", "batch_id", "bucket_id", "retriever_id")
# Values of the SDK's TaskType enum (it refuses others). An alert evaluation runs its retriever, so
# it shares retriever_execution's type; a Job whose Trigger is gone has no known action.
TASK_TYPES = {ActionType.CLUSTER: "engine_cluster_build", ActionType.TAXONOMY_ENRICHMENT: "api_taxonomies_execute",
              ActionType.BATCH_RERUN: "api_buckets_batches_process",
              ActionType.COLLECTION_TRIGGER: "api_collections_trigger",
              ActionType.RETRIEVER_EXECUTION: "api_retrievers_execute",
              ActionType.ALERT_EVALUATION: "api_retrievers_execute"}
UNKNOWN_TASK_TYPE = "plugin_custom"
# is_overdue: a time-based moment is overdue once it passed by more than this, or by more than the
# Trigger's startingDeadlineSeconds when that is shorter (the moment is then lost for good). The
# operator starts a due Job within seconds, so a minute late means it is not running the Trigger.
OVERDUE_GRACE = dt.timedelta(seconds=60)
_EPSILON = dt.timedelta(microseconds=1)
_VERBATIM = ("filters",)  # attribute names inside filters are the events', not ours to re-case
# The schedule_config keys the seed itself knows (seed-api.md §5). Every other key of scheduleConfig
# (today source, filters, windowSeconds, comparison, the calendar of issue 22: cron_expressions,
# exclude_cron, exclude_dates, start_at, end_at, jitter_seconds, max_runs; issue 23's group_by, max_keys,
# absence {within_seconds, fewer_than}; and any added later) is our
# Kubernetes-side extension, which a seed client neither shows its user nor sends back: a PATCH keeps
# it unless named. They map like the seed's own keys (snake_case here, camelCase in the spec).
# trigger_type "compound" is our extension too, with schedule_config parts ([{"trigger": name}]),
# require ("all", "any" or a number) and within_seconds (core/firing/compound.py).
SEED_SCHEDULE_KEYS = frozenset({"cron_expression", "timezone", "interval_seconds", "start_immediately",
                                "event_type", "event_threshold", "collection_id", "cooldown_seconds",
                                "condition_type", "threshold", "metric", "check_interval_seconds"})


class BodyError(ValueError):
    """A request body the Trigger schema refuses: FastAPI's validation list, naming the field."""

    def __init__(self, loc: Sequence[str | int], message: str) -> None:
        super().__init__(message)
        self.detail = [{"loc": ["body", *loc], "msg": message, "type": "value_error"}]


ERROR_TYPES = {400: "BadRequestError", 401: "UnauthorizedError", 403: "ForbiddenError", 404: "NotFoundError",
               409: "ConflictError", 413: "PayloadTooLargeError", 422: "ValidationError", 429: "RateLimitError",
               500: "InternalError", 503: "ServiceUnavailableError"}


def error_body(status: int, message: str, *, errors: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The seed SDK's ``ErrorResponse``. A validation error's message names its first field
    (``body.schedule_config.cron_expression: ...``) and ``details.errors`` is FastAPI's list."""
    if errors:
        first = errors[0]
        where = ".".join(str(p) for p in first.get("loc") or ())
        message = f"{where}: {first.get('msg')}" if where else str(first.get("msg"))
    details = {"errors": [{"loc": list(e.get("loc") or ()), "msg": str(e.get("msg")), "type": str(e.get("type"))}
                          for e in errors]} if errors else None
    return ErrorResponse(status=status, error=ErrorDetail(message=message, type=ERROR_TYPES.get(status, "Error"),
                                                          details=details)).model_dump(mode="json")


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


_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _is_rfc3339(value: Any) -> bool:
    return isinstance(value, str) and _RFC3339.fullmatch(value) is not None


_TIME_RULE = "must be an RFC 3339 time as a string, with a timezone offset (e.g. 2026-05-01T00:00:00Z)"
# The calendar's keys of scheduleConfig (issue 22) and the JSON types the CRD gives them. The Trigger
# model reads leniently (pydantic takes 1700000000 for a time, true for 1, 1.0 for 1), and the API
# server would then refuse the object naming the camelCase path in a bare 422: checked strictly here
# first, the 422 names the seed's field (body.schedule_config.start_at).
_STRICT_SCHEDULE_KEYS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "startAt": (_is_rfc3339, _TIME_RULE),
    "endAt": (_is_rfc3339, _TIME_RULE),
    "jitterSeconds": (_is_int, "must be an integer (whole seconds)"),
    "maxRuns": (_is_int, "must be an integer"),
    "cronExpressions": (_is_strings, "must be a list of cron expressions (strings)"),
    "excludeCron": (_is_strings, "must be a list of cron expressions (strings)"),
    "excludeDates": (_is_strings, "must be a list of dates (YYYY-MM-DD strings)"),
}


def checked_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The spec, or `BodyError` naming the seed field the operator would refuse: the calendar's
    keys strictly typed as the CRD types them, then the Trigger model's rules."""
    schedule = spec.get("scheduleConfig")
    for key, (valid, rule) in _STRICT_SCHEDULE_KEYS.items():
        if isinstance(schedule, Mapping) and schedule.get(key) is not None and not valid(schedule[key]):
            raise BodyError(seed_location(f"spec.scheduleConfig.{key}"), rule)
    try:
        parse_spec(dict(spec))
    except SpecError as error:
        raise BodyError(seed_location(error.field), error.reason) from None
    return dict(spec)


# A path of the spec in the API server's words: the CRD schema's (spec.scheduleConfig.startAt: Invalid
# value...) or the admission webhook's (spec.scheduleConfig.excludeCron: ... never fires).
_SPEC_PATH = re.compile(r"(?<![\w.])spec(?:\.[A-Za-z][A-Za-z0-9]*(?:\[\d+\])*)+")


def api_refusal(message: str) -> BodyError:
    """The API server's refusal (400 or 422) of an object the REST API wrote with the caller's
    token, as the 422 the REST API's own checks give: ``loc`` is the seed's field for the first spec
    path the message names (``["body", "schedule_config", "start_at"]``; ``["body"]`` when it names
    none), and every spec path in the text is spelt as the seed spells it (schedule_config.start_at)."""
    paths = _SPEC_PATH.findall(message)
    if not paths:
        return BodyError([], message)
    text = _SPEC_PATH.sub(lambda found: ".".join(seed_location(found.group(0))), message)
    return BodyError(seed_location(paths[0]), text)


def initial_state(status: SeedStatus | None) -> str:
    if status is SeedStatus.FAILED:
        raise BodyError(["status"], "a trigger becomes failed by itself; create it active, paused or disabled")
    return (status or SeedStatus.ACTIVE).value


def _manifest(spec: dict[str, Any], *, created_by: str, name: str | None = None) -> dict[str, Any]:
    annotations = {ANNOTATION_CREATED_BY: created_by} | ({ANNOTATION_DISPLAY_NAME: name} if name is not None else {})
    return {"apiVersion": API_VERSION, "kind": KIND,
            "metadata": {"generateName": GENERATED_NAME_PREFIX, "annotations": annotations},
            "spec": checked_spec(spec)}


def trigger_manifest(request: CreateTriggerRequest, *, created_by: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"actionType": request.action_type.value, "actionConfig": request.action_config,
                            "triggerType": request.trigger_type.value,
                            "scheduleConfig": camel_keys(request.schedule_config),
                            "state": initial_state(request.status)}
    if request.description is not None:
        spec["description"] = request.description
    if request.notifications is not None:
        spec["notifications"] = camel_keys(request.notifications)
    return _manifest(spec, created_by=created_by, name=request.name)


def cluster_action_config(request: ClusterCreateTriggerRequest) -> dict[str, Any]:
    """The legacy create's ``cluster_id`` and/or ``execution_config`` as a cluster action's config."""
    if request.cluster_id is None and request.execution_config is None:
        raise BodyError(["cluster_id"], "cluster_id or execution_config is required")
    config: dict[str, Any] = {"cluster_id": request.cluster_id} if request.cluster_id is not None else {}
    if request.execution_config is not None:
        config |= request.execution_config.model_dump()
    return config


def cluster_trigger_manifest(request: ClusterCreateTriggerRequest, *, created_by: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"actionType": ActionType.CLUSTER.value, "actionConfig": cluster_action_config(request),
                            "triggerType": request.trigger_type.value,
                            "scheduleConfig": camel_keys(request.schedule_config),
                            "state": initial_state(request.status)}
    if request.description is not None:
        spec["description"] = request.description
    return _manifest(spec, created_by=created_by)


def seed_status(body: Mapping[str, Any]) -> SeedStatus:
    phase = (body.get("status") or {}).get("phase")
    if phase == Phase.FAILED:
        return SeedStatus.FAILED
    if phase == Phase.FINISHED:
        return SeedStatus.DISABLED  # the seed's vocabulary has no "finished" (module docstring)
    return SeedStatus((body.get("spec") or {}).get("state") or "active")


def _time(value: Any) -> dt.datetime | None:
    """A time from status, or None when it was edited into something unreadable."""
    try:
        return parse_time(value)
    except (TypeError, ValueError):
        return None


def _spec(body: Mapping[str, Any]) -> TriggerSpec | None:
    try:
        return parse_spec(dict(body.get("spec") or {}))
    except SpecError:
        return None


def next_scheduled_at(body: Mapping[str, Any]) -> dt.datetime | None:
    """status.nextScheduledAt; before the operator first saw an active cron or interval Trigger
    (no status.observedSchedule yet, as in create's answer), the first moment the schedule makes
    from its creation, as the operator will (startImmediately: the creation itself)."""
    status = body.get("status") or {}
    if status.get("nextScheduledAt") or status.get("observedSchedule"):
        return _time(status.get("nextScheduledAt"))
    spec = _spec(body)
    created_at = _time(body["metadata"].get("creationTimestamp"))
    if spec is None or created_at is None or spec.state.value != "active" or not spec.is_time_based():
        return None
    meta = body["metadata"]
    schedule = time_schedule(spec, origin=created_at, first_run=True, trigger=(meta.get("namespace", ""), meta["name"]))
    return schedule.next_after(created_at - _EPSILON) if schedule is not None else None


def is_overdue(body: Mapping[str, Any], next_at: dt.datetime | None, now: dt.datetime) -> bool:
    """Active, scheduled by next_scheduled_at (cron, interval, or conditional, as 0.82 says), and
    that moment passed by more than `OVERDUE_GRACE` or the starting deadline when shorter."""
    if next_at is None or seed_status(body) is not SeedStatus.ACTIVE:
        return False
    spec = body.get("spec") or {}
    if spec.get("triggerType") not in (TriggerType.CRON, TriggerType.INTERVAL, TriggerType.CONDITIONAL):
        return False
    grace = OVERDUE_GRACE
    deadline = spec.get("startingDeadlineSeconds")
    if isinstance(deadline, int) and not isinstance(deadline, bool) and deadline > 0:
        grace = min(grace, dt.timedelta(seconds=deadline))
    return now - next_at > grace


def _common(body: Mapping[str, Any]) -> dict[str, Any]:
    """The fields both APIs' models read the same way."""
    meta, spec, status = body["metadata"], body.get("spec") or {}, body.get("status") or {}
    created = _time(meta.get("creationTimestamp")) or dt.datetime.now(dt.UTC)
    touched = [_time(f.get("time")) for f in meta.get("managedFields") or [] if f.get("time")]
    return dict(
        trigger_id=meta["name"], namespace_id=meta["namespace"], internal_id=meta.get("uid", ""),
        trigger_type=TriggerType(spec["triggerType"]), schedule_config=snake_keys(spec.get("scheduleConfig") or {}),
        status=seed_status(body), last_triggered_at=_time(status.get("lastTriggeredAt")),
        next_scheduled_at=next_scheduled_at(body),
        execution_count=status.get("executionCount", 0), consecutive_failures=status.get("consecutiveFailures", 0),
        last_execution_status=status.get("lastExecutionStatus"), last_execution_error=status.get("lastExecutionError"),
        event_counter=status.get("eventCounter", 0), last_cooldown_at=_time(status.get("lastCooldownAt")),
        description=spec.get("description"),
        created_at=created, updated_at=max([created, *(t for t in touched if t is not None)]),
        created_by=(meta.get("annotations") or {}).get(ANNOTATION_CREATED_BY))


def trigger_model(body: Mapping[str, Any], now: dt.datetime) -> TriggerModel:
    spec, status = body.get("spec") or {}, body.get("status") or {}
    common = _common(body)
    return TriggerModel(
        **common, action_type=ActionType(spec["actionType"]), action_config=spec.get("actionConfig") or {},
        last_execution_task_id=status.get("lastExecutionTaskId"),
        baseline_snapshot=status.get("baselineSnapshot"), last_drift_measurement=status.get("lastDriftMeasurement"),
        last_volume_measurement=status.get("lastVolumeMeasurement"),
        last_condition_check_at=_time(status.get("lastConditionCheckAt")),
        name=(body["metadata"].get("annotations") or {}).get(ANNOTATION_DISPLAY_NAME),
        is_overdue=is_overdue(body, common["next_scheduled_at"], now),
        notifications=snake_keys(spec["notifications"]) if spec.get("notifications") else None)


def is_cluster_trigger(body: Mapping[str, Any]) -> bool:
    return (body.get("spec") or {}).get("actionType") == ActionType.CLUSTER.value


def cluster_trigger_model(body: Mapping[str, Any]) -> ClusterTriggerModel:
    """A cluster Trigger as the legacy API shows it. A Trigger that names only its cluster has no
    execution_config of its own (the hosted service inherits the cluster's; here the action's Job
    reads it): it answers ``{"collection_ids": [cluster_id], "config": {}}``."""
    config = (body.get("spec") or {}).get("actionConfig") or {}
    cluster_id = config.get("cluster_id")
    collections = config.get("collection_ids")
    if not (isinstance(collections, list) and collections and all(isinstance(c, str) for c in collections)):
        collections = [str(cluster_id if cluster_id is not None else body["metadata"]["name"])]
    settings = config.get("config")
    settings = settings if isinstance(settings, dict) else {}
    return ClusterTriggerModel(
        **_common(body), cluster_id=str(cluster_id) if cluster_id is not None else None,
        execution_config=ExecutionConfig(collection_ids=collections, config=settings),
        last_execution_job_id=(body.get("status") or {}).get("lastExecutionTaskId"))


M = TypeVar("M", TriggerModel, ClusterTriggerModel)


def page(models: Sequence[M], *, sort_by: str, direction: str, offset: int, limit: int) -> tuple[list[M], int]:
    """Sorts by a field of the model (nulls last, ties by trigger_id) and pages: the page and the
    number of models."""

    def key(m: M) -> tuple[bool, Any, str]:
        value = getattr(m, sort_by)
        return value is None, value if not isinstance(value, (dict, list)) else str(value), m.trigger_id

    ordered = sorted(models, key=key, reverse=direction == "desc")
    return ordered[offset:offset + limit], len(models)


def select(models: Sequence[TriggerModel], request: ListTriggersRequest) -> tuple[list[TriggerModel], int]:
    """Filters, sorts and pages: the page and the number of matches."""
    if request.sort_by not in TriggerModel.model_fields:
        raise BodyError(["sort_by"], f"unknown field {request.sort_by!r}; sort by a field of the trigger model")
    chosen = [m for m in models
              if (request.action_type is None or m.action_type is request.action_type)
              and (request.trigger_type is None or m.trigger_type is request.trigger_type)
              and (request.status is None or m.status is request.status)
              and (request.resource_id is None
                   or any(m.action_config.get(k) == request.resource_id for k in RESOURCE_KEYS))]
    return page(chosen, sort_by=request.sort_by, direction=request.direction, offset=request.offset,
                limit=request.limit)


def select_clusters(models: Sequence[ClusterTriggerModel],
                    request: ClusterListTriggersRequest) -> tuple[list[ClusterTriggerModel], int]:
    if request.sort_by not in ClusterTriggerModel.model_fields:
        raise BodyError(["sort_by"], f"unknown field {request.sort_by!r}; sort by a field of the trigger model")
    chosen = [m for m in models
              if (request.cluster_id is None or m.cluster_id == request.cluster_id)
              and (request.trigger_type is None or m.trigger_type is request.trigger_type)
              and (request.status is None or m.status is request.status)]
    return page(chosen, sort_by=request.sort_by, direction=request.direction, offset=request.offset,
                limit=request.limit)


def merge_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns ``old`` into ``new``: a key gone is null."""
    diff: dict[str, Any] = {k: None for k in old if k not in new}
    for k, v in new.items():
        if isinstance(v, Mapping) and isinstance(old.get(k), Mapping):
            if inner := merge_diff(old[k], v):
                diff[k] = inner
        elif k not in old or old[k] != v:
            diff[k] = v
    return diff


def patched_schedule_config(stored: Any, requested: Mapping[str, Any]) -> dict[str, Any]:
    """A PATCH's scheduleConfig. The seed's PATCH replaces schedule_config whole, so its own keys
    (`SEED_SCHEDULE_KEYS`) not in the request are dropped, as the seed drops them; the keys it does
    not know (a Trigger's own ``source``, ``filters``...) stay as stored unless the request names
    them (a value replaces one, ``null`` removes it): else a seed client editing the threshold would
    silently drop the Trigger's source, and the Trigger would read the admin's default instead."""
    new = camel_keys(requested)
    kept = {k: v for k, v in stored.items() if to_snake(k) not in SEED_SCHEDULE_KEYS and k not in new
            } if isinstance(stored, Mapping) else {}
    return {k: v for k, v in (kept | new).items() if v is not None}  # null: as if absent (its default)


def update_patch(current: Mapping[str, Any], *, schedule_config: dict[str, Any] | None, description: str | None,
                 status: SeedStatus | None, fields: set[str], name: str | None = None,
                 notifications: dict[str, Any] | None = None) -> dict[str, Any]:
    """The merge patch of a PATCH: the spec edited as asked, checked whole, guarded by the
    resourceVersion read (the API server answers 409 when another write came in between).
    ``notifications`` replaces spec.notifications whole (a key left out, e.g. signing_secret_ref, is
    removed: `merge_diff` nulls it); null removes them all."""
    old = dict(current.get("spec") or {})
    spec = dict(old)
    if "schedule_config" in fields and schedule_config is not None:
        spec["scheduleConfig"] = patched_schedule_config(old.get("scheduleConfig"), schedule_config)
    if "description" in fields:
        spec["description"] = description
    if "notifications" in fields:
        spec["notifications"] = camel_keys(notifications) if notifications is not None else None
    if "status" in fields and status is not None:
        if status is SeedStatus.FAILED:
            raise BodyError(["status"], "a trigger becomes failed by itself; set active, paused or disabled")
        spec["state"] = status.value
    spec = checked_spec({k: v for k, v in spec.items() if v is not None})
    metadata: dict[str, Any] = {"resourceVersion": current["metadata"]["resourceVersion"]}
    if "name" in fields:
        metadata["annotations"] = {ANNOTATION_DISPLAY_NAME: name}
    return {"metadata": metadata, "spec": merge_diff(old, spec)}


def only_status_moved(first: Mapping[str, Any], again: Mapping[str, Any]) -> bool:
    """Whether a 409 came only from writes a caller's edit cannot lose (the operator's status, its
    own annotations): same generation (the spec) and same display name as when first read."""
    def seen(body: Mapping[str, Any]) -> tuple[Any, Any]:
        meta = body.get("metadata") or {}
        return meta.get("generation"), (meta.get("annotations") or {}).get(ANNOTATION_DISPLAY_NAME)
    return seen(first) == seen(again)


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


def cluster_history(body: Mapping[str, Any], offset: int, limit: int,
                    status_filter: str | None) -> ClusterTriggerHistoryResponse:
    """The legacy history: the same runs, each named by its Job (``job_id``), optionally one status."""
    runs = history(body, 0, 10**6).executions
    if status_filter is not None:
        runs = [r for r in runs if r.status.lower() == status_filter.lower()]
    items = [ClusterExecutionHistoryItem(job_id=r.task_id, triggered_at=r.triggered_at, status=r.status,
                                         execution_time_ms=r.execution_time_ms, error=r.error) for r in runs]
    return ClusterTriggerHistoryResponse(trigger_id=body["metadata"]["name"], executions=items[offset:offset + limit],
                                         total=len(items), offset=offset, limit=limit)


def created(body: Mapping[str, Any]) -> dt.datetime:
    return parse_time(body["metadata"].get("creationTimestamp")) or dt.datetime.now(dt.UTC)


def _inputs(spec: Mapping[str, Any]) -> list[str | dict[str, Any]]:
    """A task's inputs, a list in the SDK: the action_config the run gets, as its one item."""
    return [dict(spec.get("actionConfig") or {})]


def task_for_run_now(body: Mapping[str, Any], token: str) -> TaskResponse:
    spec = body.get("spec") or {}
    name = manual_job_name(body["metadata"]["name"], token)
    return TaskResponse(task_id=name, task_type=TASK_TYPES[ActionType(spec["actionType"])],
                        status=TaskStatus.PENDING, inputs=_inputs(spec),
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
    return TaskResponse(task_id=meta["name"], task_type=TASK_TYPES[ActionType(action)] if action else UNKNOWN_TASK_TYPE,
                        status=task_status, inputs=_inputs(spec) if trigger else None, error=error,
                        outputs=[{"succeeded": status.get("succeeded", 0), "failed": status.get("failed", 0)}],
                        additional_data={"trigger_id": (meta.get("labels") or {}).get(LABEL_TRIGGER),
                                         "job_name": meta["name"], "start_time": status.get("startTime"),
                                         "completion_time": status.get("completionTime")})


def task_without_job(trigger: Mapping[str, Any], task_id: str) -> TaskResponse | None:
    """A run whose Job is not (or no longer) there: asked for, in progress, or in the history."""
    spec, status = trigger.get("spec") or {}, trigger.get("status") or {}
    token = ((trigger.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_RUN_NOW)
    base = TaskResponse(task_id=task_id, task_type=TASK_TYPES[ActionType(spec["actionType"])],
                        status=TaskStatus.PENDING, inputs=_inputs(spec),
                        additional_data={"trigger_id": trigger["metadata"]["name"], "job_name": task_id})
    for execution in status.get("recentExecutions") or []:
        if execution.get("name") == task_id:
            return base.model_copy(update={"status": _OUTCOME_TASK.get(execution.get("outcome", ""), TaskStatus.FAILED),
                                           "error": execution.get("error")})
    if any(r.get("name") == task_id for r in status.get("active") or []) or (
            token and manual_job_name(trigger["metadata"]["name"], token) == task_id):
        return base
    return None
