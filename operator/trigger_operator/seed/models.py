"""Request and response bodies of the seed's REST API (``../shared/reference/seed-api.md``), as the
seed's SDK (``mixpeek`` 1.3.783, OpenAPI 0.82) sends and parses them: the unified Triggers API, the
legacy Cluster Triggers API and the error body."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from trigger_operator.model.spec import ActionType, TriggerType

DISPLAY_NAME_MAX_LENGTH = 256  # a display name is a label for people, kept in one annotation


class SeedStatus(enum.StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    DISABLED = "disabled"
    FAILED = "failed"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- errors -------------------------------------------------------------------------------------

class ErrorDetail(BaseModel):
    message: str = Field(description="what went wrong, naming the field for a refused body")
    type: str = Field(description="stable error type: ValidationError, UnauthorizedError, ForbiddenError, "
                                  "NotFoundError, ConflictError, RateLimitError, InternalError, "
                                  "ServiceUnavailableError")
    code: str | None = None
    details: dict[str, Any] | None = Field(default=None, description="for a 422: {\"errors\": [{\"loc\", \"msg\", "
                                                                     "\"type\"}]}, FastAPI's list")


class ErrorResponse(BaseModel):
    """Every error answer of the Triggers APIs (the seed SDK's ``ErrorResponse``)."""

    success: bool = False
    status: int
    error: ErrorDetail


# --- the unified Triggers API ---------------------------------------------------------------------

# spec.notifications in snake_case (docs/notifications.md): {sinks: [{uri} | {ref: {kind, name, port, path}}],
# types, signing_secret_ref: {name, key}}. Our extension: the seed's webhooks are registered elsewhere.
# Checked by the Trigger schema itself (seed/mapping.checked_spec), so a 422 names the same rule.
NOTIFICATIONS_DOC = ("outbound webhooks (our extension, docs/notifications.md): {sinks: [{uri} | {ref: {kind, "
                     "name, port, path}}], types, signing_secret_ref: {name, key}}")


class CreateTriggerRequest(_Body):
    action_type: ActionType = Field(description="Type of action to execute")
    action_config: dict[str, Any] = Field(description="Action-specific configuration")
    trigger_type: TriggerType = Field(description="Type of schedule")
    schedule_config: dict[str, Any] = Field(description="Schedule-specific configuration (snake_case keys)")
    name: str | None = Field(default=None, max_length=DISPLAY_NAME_MAX_LENGTH,
                             description="Human-readable name (the annotation trigger-operator.io/display-name; "
                                         "the Trigger's Kubernetes name is trigger_id)")
    description: str | None = Field(default=None, description="Human-readable description")
    status: SeedStatus | None = Field(default=None, description="Initial status: active (default), paused or "
                                                                "disabled; failed is refused")
    notifications: dict[str, Any] | None = Field(default=None, description=NOTIFICATIONS_DOC)


class UpdateTriggerRequest(_Body):
    """Only provided fields are updated; action_type, trigger_type and action_config need a new trigger.
    Guarded by the resourceVersion read: a concurrent edit answers 409."""

    schedule_config: dict[str, Any] | None = None
    name: str | None = Field(default=None, max_length=DISPLAY_NAME_MAX_LENGTH, description="null removes it")
    description: str | None = None
    status: SeedStatus | None = Field(default=None, description="prefer the pause and resume endpoints")
    notifications: dict[str, Any] | None = Field(default=None, description=NOTIFICATIONS_DOC + "; replaced "
                                                 "whole; null removes them")


class ListTriggersRequest(_Body):
    action_type: ActionType | None = None
    trigger_type: TriggerType | None = None
    status: SeedStatus | None = None
    resource_id: str | None = Field(default=None, description="a cluster_id, taxonomy_id, collection_id, "
                                    "batch_id, bucket_id or retriever_id in action_config")
    offset: int = Field(default=0, ge=0)
    limit: int = Field(default=50, ge=1, le=1000)
    sort_by: str = Field(default="created_at", description="any field of the trigger model")
    direction: Literal["asc", "desc"] = "desc"


class _RunState(BaseModel):
    """What both of the seed's trigger models say of a Trigger's runs (status, counters, times)."""

    status: SeedStatus = SeedStatus.ACTIVE
    last_triggered_at: dt.datetime | None = None
    next_scheduled_at: dt.datetime | None = None
    execution_count: int = 0
    consecutive_failures: int = 0
    last_execution_status: str | None = None
    last_execution_error: str | None = None
    event_counter: int = 0
    last_cooldown_at: dt.datetime | None = None
    created_at: dt.datetime
    updated_at: dt.datetime
    created_by: str | None = None
    description: str | None = None


class TriggerModel(_RunState):
    trigger_id: str = Field(description="the Trigger's name in its namespace")
    namespace_id: str
    internal_id: str = Field(description="the Trigger's uid")
    action_type: ActionType
    action_config: dict[str, Any]
    trigger_type: TriggerType
    schedule_config: dict[str, Any]
    last_execution_task_id: str | None = None
    baseline_snapshot: dict[str, Any] | None = None
    last_drift_measurement: dict[str, Any] | None = None
    last_volume_measurement: dict[str, Any] | None = None
    last_condition_check_at: dt.datetime | None = None
    name: str | None = Field(default=None, description="the display name (annotation "
                                                       "trigger-operator.io/display-name)")
    is_overdue: bool = Field(description="active, time-based, and next_scheduled_at passed more than the grace "
                                         "(60 s, or startingDeadlineSeconds when shorter) ago")
    notifications: dict[str, Any] | None = Field(default=None, description=NOTIFICATIONS_DOC)


class ListTriggersResponse(BaseModel):
    results: list[TriggerModel]
    total: int
    offset: int
    limit: int


class TriggerExecutionHistory(BaseModel):
    task_id: str
    triggered_at: dt.datetime
    status: str
    execution_time_ms: int | None = None
    error: str | None = None


class TriggerHistoryResponse(BaseModel):
    trigger_id: str
    executions: list[TriggerExecutionHistory]
    total: int = Field(description="executions known: the runs in progress and the last 10 finished")
    offset: int
    limit: int


class TaskStatus(enum.StrEnum):
    PENDING = "PENDING"
    IN_PROGRESS = "IN_PROGRESS"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"


class TaskResponse(BaseModel):
    task_id: str = Field(description="the name of the Job that runs it")
    task_type: str
    status: TaskStatus
    inputs: list[str | dict[str, Any]] | None = Field(default=None, description="[action_config]")
    outputs: list[str | dict[str, Any]] | None = Field(default=None, description="[{succeeded, failed}] pods")
    additional_data: dict[str, Any] | None = None
    error: str | None = None


# --- the legacy Cluster Triggers API (/v1/clusters/triggers) --------------------------------------

class ExecutionConfig(BaseModel):
    """What a cluster Trigger clusters: action_config's ``collection_ids`` and ``config``."""

    collection_ids: list[str] = Field(min_length=1)
    config: dict[str, Any]


class ClusterCreateTriggerRequest(_Body):
    cluster_id: str | None = Field(default=None, description="action_config.cluster_id; cluster_id or "
                                                             "execution_config is required")
    execution_config: ExecutionConfig | None = Field(default=None, description="action_config's collection_ids "
                                                                               "and config")
    trigger_type: TriggerType
    schedule_config: dict[str, Any]
    description: str | None = None
    status: SeedStatus | None = None


class ClusterUpdateTriggerRequest(_Body):
    schedule_config: dict[str, Any] | None = None
    description: str | None = None
    status: SeedStatus | None = None


class ClusterListTriggersRequest(_Body):
    cluster_id: str | None = None
    trigger_type: TriggerType | None = None
    status: SeedStatus | None = None
    offset: int = Field(default=0, ge=0)
    limit: int = Field(default=50, ge=1, le=1000)
    sort_by: str = Field(default="created_at", description="any field of the cluster trigger model")
    direction: Literal["asc", "desc"] = "desc"


class ClusterTriggerModel(_RunState):
    """A Trigger whose action_type is ``cluster``, as the legacy API shows it."""

    trigger_id: str
    cluster_id: str | None = Field(default=None, description="action_config.cluster_id")
    namespace_id: str
    internal_id: str
    execution_config: ExecutionConfig = Field(description="action_config's collection_ids and config; for a "
                                                          "Trigger that names only its cluster (the config is the "
                                                          "cluster's, read by the action): [cluster_id] and {}")
    trigger_type: TriggerType
    schedule_config: dict[str, Any]
    last_execution_job_id: str | None = Field(default=None, description="the last run's Job name")


class ClusterListTriggersResponse(BaseModel):
    results: list[ClusterTriggerModel]
    total: int
    offset: int
    limit: int


class TriggerHistoryRequest(_Body):
    offset: int = Field(default=0, ge=0)
    limit: int = Field(default=50, ge=1, le=1000)
    status_filter: str | None = Field(default=None, description="a task status: PENDING, IN_PROGRESS, COMPLETED, "
                                                                "FAILED, CANCELED (case-insensitive)")


class ClusterExecutionHistoryItem(BaseModel):
    job_id: str
    triggered_at: dt.datetime
    status: str
    execution_time_ms: int | None = None
    error: str | None = None
    num_clusters: int | None = Field(default=None, description="not known to the operator: always null")
    num_documents: int | None = Field(default=None, description="not known to the operator: always null")


class ClusterTriggerHistoryResponse(BaseModel):
    trigger_id: str
    executions: list[ClusterExecutionHistoryItem]
    total: int
    offset: int
    limit: int


# --- backfill (an extension: core/firing/backfill.py, docs/rest-api.md) ---------------------------

class BackfillRequest(_Body):
    """Runs the past moments of a cron or interval trigger's schedule in [start_time, end_time]
    (both included), each at most once; a new request replaces a running one."""

    start_time: dt.datetime = Field(description="the first moment (RFC 3339 with an offset; included)")
    end_time: dt.datetime = Field(description="the last moment (RFC 3339 with an offset; included; not after now)")
    parallelism: int = Field(default=1, ge=1, le=20, description="at most this many backfill runs at once")


class BackfillResponse(BaseModel):
    """``status.backfill`` in snake_case. ``state`` is ``requested`` until the operator takes the
    request in (then running, complete, cancelled or refused, with ``message`` saying why)."""

    backfill_id: str | None
    state: Literal["requested", "running", "complete", "cancelled", "refused"]
    start_time: dt.datetime | None = None
    end_time: dt.datetime | None = None
    parallelism: int = 1
    total: int = 0
    started: int = 0
    skipped: int = Field(default=0, description="moments passed over: they had already run, live or backfilled")
    succeeded: int = 0
    failed: int = 0
    cursor: dt.datetime | None = Field(default=None, description="the last moment dealt with")
    message: str | None = None
