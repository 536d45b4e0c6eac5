"""The Trigger's status as an immutable value, and its conversion to and from the API's dict. Pure.

This module is the one source of truth for the status fields: the CRD schema repeats them, and a
unit test fails when the two drift apart. Times are aware UTC datetimes here and RFC 3339 strings
with a ``Z`` in the API.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, TypedDict, cast

RECENT_EXECUTIONS = 10  # how many finished runs status keeps, newest first
RUN_NOW_TOKENS_KEPT = 32  # how many used run-now tokens status remembers (README, "Run now")
RECENT_EVENT_IDS = 1000  # how many counted event ids status remembers per Trigger, for de-duplication

# Bounds of what status records (issue 17): status is public to whoever may get the Trigger, lives in
# etcd (1.5 MiB per object) and is re-sent whole by every client that reads it. One home for each.
MESSAGE_MAX_CHARS = 1024  # any one message or error (status.message, lastExecutionError, conditions, Events)
CUT_MARKER = "… (cut)"  # ends a text cut to its bound, so a reader sees it is not whole
RECORDED_NUMBERS_MAX = 16  # numbers of a vector lastDriftMeasurement shows (value, baseline); the rest: a length
# A status patch whose JSON is larger is not sent: the reading's values are dropped and a failed check
# recorded instead. Far below etcd's 1.5 MiB and the API server's 3 MiB request bound, and above two
# vectors of the readers' 4,096-number bound (baselineSnapshot and conditionFiredValue keep them whole).
STATUS_MAX_BYTES = 256 * 1024


def cut(text: str, limit: int = MESSAGE_MAX_CHARS) -> str:
    """``text`` within ``limit`` characters, ending in `CUT_MARKER` when it was longer. Idempotent."""
    if len(text) <= limit:
        return text
    return text[:limit - len(CUT_MARKER)] + CUT_MARKER


# A condition check as status records it (lastDriftMeasurement, lastVolumeMeasurement): the keys are
# the status field's own (camelCase), typed so that every reader and writer agrees on them.
class Measurement(TypedDict, total=False):
    checkedAt: str | None
    metric: str | None
    threshold: float
    source: str | None
    value: Any
    valueLength: int
    baseline: Any
    baselineLength: int
    drift: float
    exceeded: bool | None
    comparison: str
    note: str
    error: str


def recorded_measurement(record: Measurement) -> Measurement:
    """A ``lastDriftMeasurement`` as status keeps it: each text cut to `MESSAGE_MAX_CHARS`, and a
    vector ``value`` or ``baseline`` longer than `RECORDED_NUMBERS_MAX` kept as its first numbers
    and its length (``valueLength``, ``baselineLength``). The record only tells people what the
    last check saw; the whole vectors the rules need live in baselineSnapshot and
    conditionFiredValue. Idempotent, so a stored record compares equal to itself."""
    out: dict[str, Any] = {}
    for key, value in dict(record).items():
        if isinstance(value, str):
            value = cut(value)
        elif key in ("value", "baseline") and isinstance(value, list) and len(value) > RECORDED_NUMBERS_MAX:
            out[f"{key}Length"] = len(value)
            value = value[:RECORDED_NUMBERS_MAX]
        out[key] = value
    return cast(Measurement, out)  # the record's keys, plus the lengths


def token_hash(token: str) -> str:
    """How status remembers a run-now token: a short hash, since tokens are the user's free text."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


class Phase(enum.StrEnum):
    ACTIVE = "Active"
    PAUSED = "Paused"
    DISABLED = "Disabled"
    FAILED = "Failed"  # stopped after maxConsecutiveFailures; waits for a person (see README)
    INVALID = "Invalid"  # the spec cannot run as written; the Ready condition says which field and why
    # A cron or interval Trigger that will never run again on its own: its run budget (maxRuns) is
    # spent, or no moment remains in its active window (endAt). Done, not failed; not sticky: an edit
    # that raises maxRuns or moves endAt makes it Active again (core/ready.py, docs/schedules.md).
    FINISHED = "Finished"


class ReadyReason(enum.StrEnum):
    """Why the Ready condition is what it is: one reason for each state a person acts on differently."""

    SCHEDULED = "Scheduled"  # True: moments run as the schedule says
    SOURCE_FAILING = "SourceFailing"  # a conditional Trigger's source fails; checked again with backoff
    PAUSED = "Paused"
    DISABLED = "Disabled"
    FAILURE_LIMIT_REACHED = "FailureLimitReached"  # waits for an edit or a resume token
    INVALID_SPEC = "InvalidSpec"  # the message names the field
    NEVER_FIRES = "NeverFires"  # a valid cron expression with no moment within cron.SEARCH_YEARS
    ACTION_TEMPLATE_MISSING = "ActionTemplateMissing"  # the admin's catalog lacks it; the schedule keeps its place
    STATUS_UNREADABLE = "StatusUnreadable"  # status was edited into something unreadable; nothing runs
    FINISHED = "Finished"  # the run budget is spent or the active window ended: the message says which
    # Compound Triggers (core/firing/compound.py): a part names no Trigger of the namespace (yet: a
    # GitOps sync may create it later), or the parts lead back to the Trigger (it never fires), or
    # more Triggers are reached through them than a pass follows, or a part already has as many
    # compounds as it may feed (neither fires either).
    PART_MISSING = "PartMissing"
    PART_CYCLE = "PartCycle"
    TOO_MANY_PARTS = "TooManyParts"
    TOO_MANY_COMPOUNDS = "TooManyCompounds"


class RunKind(enum.StrEnum):
    SCHEDULED = "scheduled"
    MANUAL = "manual"  # run-now
    EVENT = "event"  # an event Trigger reached its threshold
    CONDITION = "condition"  # a conditional Trigger's condition became true
    BACKFILL = "backfill"  # a past moment run by a backfill request (core/firing/backfill.py)
    COMPOUND = "compound"  # enough parts of a compound Trigger fired within its window


class Outcome(enum.StrEnum):
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    REPLACED = "Replaced"  # deleted by concurrencyPolicy Replace; neither success nor failure
    LOST = "Lost"  # the Job vanished before its result was seen; neither success nor failure


def format_time(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat(timespec="seconds" if not value.microsecond else "microseconds"
                                              ).replace("+00:00", "Z")


def parse_time(value: Any) -> dt.datetime | None:
    if value is None or value == "":
        return None
    parsed = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if parsed.tzinfo is None:  # a time without an offset is UTC, never the machine's local time
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


@dataclass(frozen=True)
class ActiveRun:
    """A run whose Job was (or is about to be) created and whose result is not counted yet. It is
    written to status before the Job is created, so a crash in between can be repaired; the Job's
    finalizer (api.FINALIZER) keeps it until its result is counted, so it cannot vanish unseen."""

    name: str
    kind: RunKind
    scheduled_time: dt.datetime
    fired_at: dt.datetime
    parts: tuple[str, ...] = ()  # a compound run: the parts that fired it (the Job's TRIGGER_PARTS)
    # Event Triggers (events/keys.py, events/absence.py): the groupBy key the run is for, and the
    # count an absence run saw; the Job is told both (TRIGGER_EVENT_KEY, TRIGGER_EVENT_COUNT).
    event_key: str | None = None
    event_count: int | None = None


@dataclass(frozen=True)
class Execution:
    """A finished run, for the short history in status."""

    name: str
    kind: RunKind
    scheduled_time: dt.datetime
    outcome: Outcome
    finished_at: dt.datetime
    started_at: dt.datetime | None = None
    error: str | None = None

    @property
    def duration_ms(self) -> int | None:
        if self.started_at is None:
            return None
        return int((self.finished_at - self.started_at) / dt.timedelta(milliseconds=1))


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str
    last_transition_time: dt.datetime
    observed_generation: int | None = None


@dataclass(frozen=True)
class TriggerStatus:
    phase: Phase | None = None
    observed_generation: int | None = None
    message: str | None = None  # why the Trigger cannot run, or None
    active_since: dt.datetime | None = None  # when it last became Active: no catch-up before this
    observed_schedule: str | None = None  # the schedule the cursor belongs to; a new one starts afresh
    last_schedule_time: dt.datetime | None = None  # the schedule cursor: last moment run or passed over
    last_triggered_at: dt.datetime | None = None  # when the last Job was created
    last_execution_task_id: str | None = None  # the last Job's name
    next_scheduled_at: dt.datetime | None = None
    execution_count: int = 0  # successful runs
    failed_execution_count: int = 0
    consecutive_failures: int = 0
    last_execution_status: str | None = None
    last_execution_error: str | None = None
    last_successful_time: dt.datetime | None = None
    missed_runs: int = 0  # moments never run: too late for the deadline, or older than the latest
    skipped_runs: int = 0  # moments skipped by concurrencyPolicy Forbid
    # Scheduled runs started, ever (the run budget, spec.scheduleConfig.maxRuns, counts these): run-now,
    # event, condition and backfill runs are not the schedule's own. Counted in the write that lists the
    # run in ``active`` (`with_run_started`), so exactly once; a new schedule does not reset it.
    scheduled_runs: int = 0
    active: tuple[ActiveRun, ...] = ()
    recent_executions: tuple[Execution, ...] = ()
    run_now_tokens: tuple[str, ...] = ()  # hashes of the last RUN_NOW_TOKENS_KEPT tokens used, oldest first
    last_resume_token: str | None = None
    failed_at_generation: int | None = None
    conditions: tuple[Condition, ...] = ()
    # Event Triggers (README, "Event Triggers").
    event_counter: int = 0  # events counted towards the next run (in the window, when there is one)
    event_firings: int = 0  # runs fired by events so far: names them (<trigger>-e<N>), so a firing runs once
    recent_event_ids: tuple[str, ...] = ()  # hashes of the last RECENT_EVENT_IDS (source, id) counted, oldest first
    event_window: tuple[tuple[int, int], ...] = ()  # (bucket start, unix s; events) when windowSeconds is set
    last_cooldown_at: dt.datetime | None = None  # the last event or condition run fired: the cooldown starts here
    # groupBy (events/keys.py): one compact row per key followed, [key, counter, firings, lastCooldownAt
    # (unix s, 0: none), base (unix s), counts...]; and the summary people read: {total, top, refused}.
    event_key_state: tuple[tuple[str | int, ...], ...] = ()
    event_keys: dict[str, Any] | None = None
    # absence (events/absence.py): the last window judged {windowStart, windowEnd, count, fired}.
    last_absence: dict[str, Any] | None = None
    # The shared inbox (events/inbox.py): per writing replica incarnation, [the last inbox object's
    # sequence number folded into this Trigger, unix s of that fold], so no fold counts an object twice.
    inbox_folded: dict[str, Any] | None = None
    # Conditional Triggers (README, "Conditional Triggers").
    baseline_snapshot: dict[str, Any] | None = None  # {value, capturedAt}: what drift is measured from
    last_drift_measurement: Measurement | None = None  # the last check: value, baseline, drift, exceeded, error
    # Volume conditions record their check here instead (the seed's 0.82): value, threshold, comparison,
    # exceeded, checkedAt, source, error.
    last_volume_measurement: Measurement | None = None
    last_condition_check_at: dt.datetime | None = None
    # When this operator process announced its first check of the source (conditions/evaluate.py):
    # newer than lastConditionCheckAt after a restart, it was running when the process died.
    condition_check_started_at: dt.datetime | None = None
    condition_armed: bool | None = None  # False once fired, until the condition is seen false again
    condition_firings: int = 0  # runs fired by the condition: names them (<trigger>-c<N>)
    condition_fired_value: Any = None  # the value the running condition run was fired for: the next baseline
    source_errors: int = 0  # failed checks in a row (the next check backs off)
    # Backfill (core/firing/backfill.py): the last request and its progress, and the moments already
    # run by backfills, missed by the live schedule, or handled by it (each active spell, from its
    # first moment to its cursor), as merged [from, to] ranges (both inclusive).
    backfill: Backfill | None = None
    backfilled_moments: tuple[MomentRange, ...] = ()
    missed_moments: tuple[MomentRange, ...] = ()
    handled_moments: tuple[MomentRange, ...] = ()
    # spec.notifications' outbox (core/outbox.py): {pending: [...], deadLetters: [...]}, written in the
    # same status write as the change each event reports; the notifier removes what it delivered.
    notifications: dict[str, Any] | None = None
    # Compound Triggers (core/firing/compound.py): runs fired so far (<trigger>-x<N>), and per part its
    # last firing seen and the last one a run used up (never used again, after a restart or elsewhere).
    compound_firings: int = 0
    compound_parts: tuple[PartRecord, ...] = ()

    # --- transitions: each returns a new status ---------------------------------------------

    def with_run_started(self, run: ActiveRun) -> TriggerStatus:
        counted = self.scheduled_runs + (run.kind is RunKind.SCHEDULED)
        return replace(self, active=(*self.active, run), last_triggered_at=run.fired_at,
                       last_execution_task_id=run.name, last_execution_status="Running", scheduled_runs=counted)

    def runs_left(self, max_runs: int | None) -> int | None:
        """How many more scheduled runs the budget ``max_runs`` allows (0: spent); None: no budget."""
        return None if max_runs is None else max(0, max_runs - self.scheduled_runs)

    def with_run_now_token(self, token_hash: str) -> TriggerStatus:
        kept = (*(t for t in self.run_now_tokens if t != token_hash), token_hash)
        return replace(self, run_now_tokens=kept[-RUN_NOW_TOKENS_KEPT:])

    def with_run_finished(self, execution: Execution) -> TriggerStatus:
        """Counts a finished run exactly once: it leaves ``active`` in the same write that counts it.

        ``lastExecutionStatus`` and ``lastExecutionError`` describe the run named by
        ``lastExecutionTaskId`` (the last one started): an older run finishing later updates the
        counters and history only. Replaced and Lost runs change neither counter."""
        remaining = tuple(r for r in self.active if r.name != execution.name)
        if len(remaining) == len(self.active):
            return self  # not ours to count (already counted, or never recorded)
        history = (execution, *self.recent_executions)[:RECENT_EXECUTIONS]
        updated = replace(self, active=remaining, recent_executions=history)
        if self.backfill is not None and execution.kind is RunKind.BACKFILL:  # in the same write
            run = next(r for r in self.active if r.name == execution.name)
            updated = replace(updated, backfill=self.backfill.counted(run, execution.outcome))
        if execution.name == self.last_execution_task_id:
            updated = replace(updated, last_execution_status=execution.outcome.value)
            if execution.outcome is not Outcome.REPLACED:
                updated = replace(updated, last_execution_error=execution.error)
        if execution.outcome is Outcome.SUCCEEDED:
            return replace(updated, execution_count=self.execution_count + 1, consecutive_failures=0,
                           last_successful_time=execution.finished_at)
        if execution.outcome is Outcome.FAILED:
            return replace(updated, failed_execution_count=self.failed_execution_count + 1,
                           consecutive_failures=self.consecutive_failures + 1)
        return updated

    def with_condition(self, condition: Condition) -> TriggerStatus:
        """Sets a condition, keeping its transition time when its status did not change."""
        others = tuple(c for c in self.conditions if c.type != condition.type)
        previous = next((c for c in self.conditions if c.type == condition.type), None)
        if previous is not None and previous.status == condition.status:
            condition = replace(condition, last_transition_time=previous.last_transition_time)
        return replace(self, conditions=(*others, condition))

    # --- conversion -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, key in _keys():
            out[key] = _dump(getattr(self, name))
        for key in ("message", "lastExecutionError"):
            if out[key] is not None:
                out[key] = cut(out[key])
        if self.last_drift_measurement is not None:
            out["lastDriftMeasurement"] = recorded_measurement(self.last_drift_measurement)
        if self.last_volume_measurement is not None:
            out["lastVolumeMeasurement"] = recorded_measurement(self.last_volume_measurement)
        out["active"] = [_present({"name": r.name, "kind": r.kind.value,
                                   "scheduledTime": format_time(r.scheduled_time), "firedAt": format_time(r.fired_at),
                                   "eventKey": r.event_key, "eventCount": r.event_count})
                         for r in self.active]
        out["recentExecutions"] = [_present({
            "name": e.name, "kind": e.kind.value, "scheduledTime": format_time(e.scheduled_time),
            "outcome": e.outcome.value, "startedAt": format_time(e.started_at),
            "finishedAt": format_time(e.finished_at), "durationMs": e.duration_ms,
            "error": cut(e.error) if e.error is not None else None,
        }) for e in self.recent_executions]
        out["backfill"] = self.backfill.to_dict() if self.backfill is not None else None
        out["compoundParts"] = [p.to_dict() for p in self.compound_parts]
        for item, run in zip(out["active"], self.active, strict=True):
            if run.parts:
                item["parts"] = list(run.parts)
        for name in _RANGE_FIELDS:
            out[_camel(name)] = [{"from": format_time(a), "to": format_time(b)} for a, b in getattr(self, name)]
        out["conditions"] = [_present({
            "type": c.type, "status": c.status, "reason": c.reason, "message": cut(c.message),
            "lastTransitionTime": format_time(c.last_transition_time),
            "observedGeneration": c.observed_generation,
        }) for c in self.conditions]
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> TriggerStatus:
        raw = raw or {}
        values: dict[str, Any] = {}
        for name, key in _keys():
            if key not in raw or raw[key] is None:
                continue
            value = raw[key]
            if name == "active":
                value = tuple(ActiveRun(name=r["name"], kind=RunKind(r.get("kind", "scheduled")),
                                        scheduled_time=_required_time(r["scheduledTime"]),
                                        fired_at=_required_time(r.get("firedAt") or r["scheduledTime"]),
                                        event_key=r.get("eventKey"), event_count=r.get("eventCount"))
                              for r in value)
            elif name == "recent_executions":
                value = tuple(Execution(name=e["name"], kind=RunKind(e.get("kind", "scheduled")),
                                        scheduled_time=_required_time(e["scheduledTime"]),
                                        outcome=Outcome(e["outcome"]),
                                        finished_at=_required_time(e["finishedAt"]),
                                        started_at=parse_time(e.get("startedAt")), error=e.get("error"))
                              for e in value)
            elif name == "conditions":
                value = tuple(Condition(type=c["type"], status=c["status"], reason=c.get("reason", ""),
                                        message=c.get("message", ""),
                                        last_transition_time=_required_time(c["lastTransitionTime"]),
                                        observed_generation=c.get("observedGeneration"))
                              for c in value)
            elif name == "phase":
                value = Phase(value)
            elif name in ("run_now_tokens", "recent_event_ids"):
                value = tuple(str(t) for t in value)
            elif name == "backfill":
                value = Backfill.from_dict(value)
            elif name == "compound_parts":
                value = tuple(PartRecord.from_dict(p) for p in value)
            elif name in _RANGE_FIELDS:
                value = tuple((_required_time(r["from"]), _required_time(r["to"])) for r in value)
            elif name == "event_window":
                value = tuple((int(start), int(n)) for start, n in value)
            elif name == "event_key_state":
                value = tuple((str(row[0]), *(int(n) for n in row[1:])) for row in value)
            elif _is_time_field(name):
                value = parse_time(value)
            values[name] = value
        if "active" in values:  # a compound run's parts
            values["active"] = tuple(replace(run, parts=tuple(str(p) for p in item.get("parts") or ()))
                                     for run, item in zip(values["active"], raw["active"], strict=True))
        return cls(**values)


def read_status(raw: dict[str, Any] | None) -> tuple[TriggerStatus, str | None]:
    """The status, or the empty status and why the stored one cannot be read (naming the key)."""
    raw = raw or {}
    try:
        return TriggerStatus.from_dict(raw), None
    except (KeyError, TypeError, ValueError, AttributeError):
        pass  # find the key to name, one at a time (only for a broken status)
    for key in raw:
        try:
            TriggerStatus.from_dict({key: raw[key]})
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            return TriggerStatus(), f"status.{key}: {type(error).__name__}: {error}"
    return TriggerStatus(), "status: unreadable as a whole"


def status_field_names() -> list[str]:
    """The status keys as the API spells them (for the CRD drift test)."""
    return [key for _, key in _keys()]


@functools.cache
def _keys() -> tuple[tuple[str, str], ...]:
    """(field, status key) of every TriggerStatus field: computed once, since every pass converts
    status both ways and `dataclasses.fields` was a measurable share of the operator's CPU."""
    return tuple((f.name, _camel(f.name)) for f in fields(TriggerStatus))


def _is_time_field(name: str) -> bool:
    return name.endswith(("_time", "_at", "_since"))


def _required_time(value: Any) -> dt.datetime:
    parsed = parse_time(value)
    if parsed is None:
        raise ValueError("a time is required")
    return parsed


def _present(item: dict[str, Any]) -> dict[str, Any]:
    """A list item without its unset fields. The API server prunes nulls inside list items (the
    schema marks no field nullable), so an item sent with them would never equal the stored one,
    and every pass would send the whole list again: a needless API call per pass."""
    return {k: v for k, v in item.items() if v is not None}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def _dump(value: Any) -> Any:
    if isinstance(value, tuple):  # as JSON gives it back, so a stored copy compares equal
        return [_dump(v) for v in value]
    if isinstance(value, dt.datetime):
        return format_time(value)
    if isinstance(value, enum.Enum):
        return value.value
    return value


MomentRange = tuple[dt.datetime, dt.datetime]  # the schedule's moments m with from <= m <= to
_RANGE_FIELDS = ("backfilled_moments", "missed_moments", "handled_moments")  # lists of MomentRange


class BackfillState(enum.StrEnum):
    RUNNING = "Running"
    COMPLETE = "Complete"  # every moment of the range started (or had already run) and has finished
    CANCELLED = "Cancelled"  # no new Job; the runs going finish and are counted
    REFUSED = "Refused"  # the request is invalid: ``message`` names the field and the reason


@dataclass(frozen=True)
class Backfill:
    """``status.backfill``: the last backfill request (``id``) and its progress. ``cursor``: the last
    moment of the range dealt with (started, or passed over as already run). ``accepted_at``: when
    it was accepted; a backfill run fired before it belongs to an earlier request, so it is counted
    in the Trigger's counters but not in this block's."""

    id: str | None
    state: BackfillState
    start: dt.datetime | None = None  # "from"
    end: dt.datetime | None = None  # "to"
    parallelism: int = 1
    total: int = 0  # moments of the schedule in [from, to]
    started: int = 0
    skipped: int = 0  # moments passed over: they had already run (live or backfilled) or are the live schedule's
    succeeded: int = 0
    failed: int = 0  # Failed or Lost
    cursor: dt.datetime | None = None
    accepted_at: dt.datetime | None = None
    message: str | None = None

    def owns(self, run: ActiveRun) -> bool:
        """Whether ``run`` is one this backfill started."""
        return (run.kind is RunKind.BACKFILL and self.accepted_at is not None and run.fired_at >= self.accepted_at
                and self.start is not None and self.end is not None and self.start <= run.scheduled_time <= self.end)

    def counted(self, run: ActiveRun, outcome: Outcome) -> Backfill:
        if not self.owns(run):
            return self
        if outcome is Outcome.SUCCEEDED:
            return replace(self, succeeded=self.succeeded + 1)
        if outcome in (Outcome.FAILED, Outcome.LOST):
            return replace(self, failed=self.failed + 1)
        return self

    def to_dict(self) -> dict[str, Any]:
        return _present({
            "id": self.id, "from": format_time(self.start), "to": format_time(self.end),
            "parallelism": self.parallelism, "state": self.state.value, "total": self.total,
            "started": self.started, "skipped": self.skipped, "succeeded": self.succeeded, "failed": self.failed,
            "cursor": format_time(self.cursor), "acceptedAt": format_time(self.accepted_at),
            "message": cut(self.message) if self.message is not None else None})

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Backfill:
        return cls(id=raw.get("id"), state=BackfillState(raw["state"]), start=parse_time(raw.get("from")),
                   end=parse_time(raw.get("to")), parallelism=int(raw.get("parallelism", 1)),
                   total=int(raw.get("total", 0)), started=int(raw.get("started", 0)),
                   skipped=int(raw.get("skipped", 0)), succeeded=int(raw.get("succeeded", 0)),
                   failed=int(raw.get("failed", 0)), cursor=parse_time(raw.get("cursor")),
                   accepted_at=parse_time(raw.get("acceptedAt")), message=raw.get("message"))


@dataclass(frozen=True)
class PartRecord:
    """``status.compoundParts[]``: one part of a compound Trigger as its last pass saw it. A firing is
    the part's run start, named by its run (``lastExecutionTaskId``) and when it started
    (``lastTriggeredAt``): the pair is unique even when a part deleted and created again reuses a
    run name. ``consumed*``: the last firing a compound run used; it never counts again."""

    trigger: str
    fired_run: str | None = None
    fired_at: dt.datetime | None = None
    consumed_run: str | None = None
    consumed_at: dt.datetime | None = None

    @property
    def spent(self) -> bool:
        """Whether the last firing seen is the one last used (or there is none)."""
        return self.fired_run is None or (self.fired_run, self.fired_at) == (self.consumed_run, self.consumed_at)

    def to_dict(self) -> dict[str, Any]:
        return _present({"trigger": self.trigger, "firedRun": self.fired_run, "firedAt": format_time(self.fired_at),
                         "consumedRun": self.consumed_run, "consumedAt": format_time(self.consumed_at)})

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> PartRecord:
        return cls(trigger=str(raw["trigger"]), fired_run=raw.get("firedRun"), fired_at=parse_time(raw.get("firedAt")),
                   consumed_run=raw.get("consumedRun"), consumed_at=parse_time(raw.get("consumedAt")))


# A status with nothing in it, for Triggers the operator has not seen yet.
EMPTY = TriggerStatus()


def status_patch(current: Mapping[str, Any] | None, new: TriggerStatus) -> dict[str, Any]:
    """The merge patch from the status as stored to ``new``: changed keys only (None removes one).
    Compared with the stored dict, not a parsed copy, so that fields still at their defaults
    (``consecutiveFailures: 0``) are written once and shown to users."""
    current = current or {}
    patch = {k: v for k, v in new.to_dict().items() if current.get(k) != v}
    return patch
