"""Request and response bodies of the seed's REST API (``../shared/reference/seed-api.md``)."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from trigger_operator.model.spec import ActionType, TriggerType


class SeedStatus(enum.StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    DISABLED = "disabled"
    FAILED = "failed"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateTriggerRequest(_Body):
    action_type: ActionType = Field(description="Type of action to execute")
    action_config: dict[str, Any] = Field(description="Action-specific configuration")
    trigger_type: TriggerType = Field(description="Type of schedule")
    schedule_config: dict[str, Any] = Field(description="Schedule-specific configuration (snake_case keys)")
    description: str | None = Field(default=None, description="Human-readable description")
    status: Literal["active", "paused"] = Field(default="active", description="Initial status (active or paused)")


class UpdateTriggerRequest(_Body):
    """Only provided fields are updated; action_type, trigger_type and action_config need a new trigger."""

    schedule_config: dict[str, Any] | None = None
    description: str | None = None
    status: SeedStatus | None = Field(default=None, description="prefer the pause and resume endpoints")


class ListTriggersRequest(_Body):
    action_type: ActionType | None = None
    trigger_type: TriggerType | None = None
    status: SeedStatus | None = None
    resource_id: str | None = Field(default=None, description="a cluster_id, taxonomy_id, collection_id, "
                                    "batch_id or bucket_id in action_config")
    offset: int = Field(default=0, ge=0)
    limit: int = Field(default=50, ge=1, le=1000)
    sort_by: str = "created_at"
    direction: Literal["asc", "desc"] = "desc"


class TriggerModel(BaseModel):
    trigger_id: str = Field(description="the Trigger's name in its namespace")
    namespace_id: str
    internal_id: str = Field(description="the Trigger's uid")
    action_type: ActionType
    action_config: dict[str, Any]
    trigger_type: TriggerType
    schedule_config: dict[str, Any]
    status: SeedStatus = SeedStatus.ACTIVE
    last_triggered_at: dt.datetime | None = None
    last_execution_task_id: str | None = None
    next_scheduled_at: dt.datetime | None = None
    execution_count: int = 0
    consecutive_failures: int = 0
    last_execution_status: str | None = None
    last_execution_error: str | None = None
    event_counter: int = 0
    last_cooldown_at: dt.datetime | None = None
    baseline_snapshot: dict[str, Any] | None = None
    last_drift_measurement: dict[str, Any] | None = None
    last_condition_check_at: dt.datetime | None = None
    description: str | None = None
    created_at: dt.datetime
    updated_at: dt.datetime
    created_by: str | None = None


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
    inputs: dict[str, Any] | None = None
    outputs: dict[str, Any] | None = None
    additional_data: dict[str, Any] | None = None
    error: str | None = None
