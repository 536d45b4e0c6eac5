"""What the plugin prints, from the API's plain dicts. Pure: ``now`` is always an argument.

Status is read by `trigger_operator.model.status.read_status` and the spec by the operator's own
model, so the plugin shows what the operator decides from, never a second reading of the fields.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from trigger_operator.api import GROUP, LABEL_RUN_KIND
from trigger_operator.core.firing.compound import counted
from trigger_operator.core.ready import budget_allows
from trigger_operator.jobs.observe import observe_job
from trigger_operator.jobs.render import manual_job_name
from trigger_operator.model.notify import Notifications, NotificationType
from trigger_operator.model.spec import (
    SpecError,
    TriggerSpec,
    TriggerType,
    calendar,
    live_schedule,
    parse_spec,
    schedule_fingerprint,
    time_schedule,
)
from trigger_operator.model.status import (
    Condition,
    Phase,
    TriggerStatus,
    format_time,
    parse_time,
    read_status,
    token_hash,
)
from trigger_operator.plugin.errors import FAILED, PluginError
from trigger_operator.seed.mapping import task_from_job
from trigger_operator.seed.models import TaskStatus
from trigger_operator.timemath import moments

NONE = "-"
RESOURCE = f"trigger.{GROUP}"  # as kubectl -o name spells it
RECENT_EVENTS = 20  # Events shown by describe, newest last


# --- small formatting -----------------------------------------------------------------------------


def span(delta: dt.timedelta) -> str:
    """A duration the way kubectl shows ages: ``45s``, ``12m``, ``5h``, ``3d``."""
    seconds = int(abs(delta.total_seconds()))
    for limit, unit, size in ((120, "s", 1), (120 * 60, "m", 60), (48 * 3600, "h", 3600)):
        if seconds < limit:
            return f"{seconds // size}{unit}"
    return f"{seconds // 86400}d"


def relative(moment: dt.datetime | None, now: dt.datetime) -> str:
    if moment is None:
        return NONE
    return f"in {span(moment - now)}" if moment > now else f"{span(now - moment)} ago"


def stamped(moment: dt.datetime | None, now: dt.datetime) -> str | None:
    """``2026-03-02T10:00:00Z (5m ago)`` for describe; None leaves the line out."""
    return None if moment is None else f"{format_time(moment.replace(microsecond=0))} ({relative(moment, now)})"


def duration_ms(ms: int | None) -> str:
    if ms is None:
        return NONE
    return f"{ms / 1000:.1f}s" if ms < 120_000 else span(dt.timedelta(milliseconds=ms))


def to_second(value: str | None) -> str:
    """A status time to the second (run-now moments carry microseconds nobody reads in a table)."""
    moment = parse_time(value)
    return NONE if moment is None else str(format_time(moment.replace(microsecond=0)))


def one_line(text: str | None) -> str:
    return " ".join(text.split()) if text else NONE


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], indent: str = "") -> str:
    """Columns as kubectl prints them: left-aligned, three spaces apart, no trailing blanks."""
    rows = [list(headers), *(list(r) for r in rows)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(headers))]
    return "\n".join(indent + "   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def fields(pairs: Iterable[tuple[str, str | None]], indent: str = "") -> list[str]:
    """``Label:  value`` lines aligned on the values; pairs whose value is None are left out."""
    shown = [(label, value) for label, value in pairs if value is not None]
    width = max((len(label) for label, _ in shown), default=0) + 2
    return [f"{indent}{(label + ':').ljust(width)}{value}" for label, value in shown]


# --- reading a Trigger ----------------------------------------------------------------------------


def meta(trigger: Mapping[str, Any]) -> Mapping[str, Any]:
    return trigger.get("metadata") or {}


def status_of(trigger: Mapping[str, Any]) -> TriggerStatus:
    """The status as the operator reads it; an unreadable one is an error naming the key."""
    status, problem = read_status(trigger.get("status"))
    if problem is not None:
        raise PluginError(FAILED, f'the status of trigger "{meta(trigger).get("name")}" is unreadable: {problem}')
    return status


def spec_of(trigger: Mapping[str, Any]) -> TriggerSpec:
    try:
        return parse_spec(dict(trigger.get("spec") or {}))
    except SpecError as error:
        raise PluginError(FAILED, f'trigger "{meta(trigger).get("name")}" is invalid: {error}') from None


def schedule_text(trigger: Mapping[str, Any]) -> str:
    observed = (trigger.get("status") or {}).get("observedSchedule")
    if observed:
        return str(observed)
    try:
        return schedule_fingerprint(parse_spec(dict(trigger.get("spec") or {})))
    except SpecError:
        return NONE


def ready(status: TriggerStatus) -> Condition | None:
    return next((c for c in status.conditions if c.type == "Ready"), None)


def said(condition: Condition) -> str:
    """``False FailureLimitReached: 2 consecutive failures ...``; the message only when it adds to the reason."""
    told = f": {condition.message}" if condition.message and condition.message != condition.reason else ""
    return f"{condition.status} {condition.reason}{told}"


# --- list -----------------------------------------------------------------------------------------

LIST_HEADERS = ("NAME", "PHASE", "TYPE", "SCHEDULE", "LAST RUN", "RESULT", "NEXT RUN", "SUCCEEDED", "FAILED")
WIDE_HEADERS = ("READY", "REASON", "ACTION", "IN A ROW", "LAST JOB")


def list_row(trigger: Mapping[str, Any], now: dt.datetime, *, wide: bool = False,
             with_namespace: bool = False) -> list[str]:
    spec = trigger.get("spec") or {}
    status, problem = read_status(trigger.get("status"))
    phase = (trigger.get("status") or {}).get("phase") or NONE
    row = [meta(trigger).get("name", ""), "Unreadable" if problem else str(phase), spec.get("triggerType", NONE),
           schedule_text(trigger), relative(status.last_triggered_at, now), status.last_execution_status or NONE,
           relative(status.next_scheduled_at, now), str(status.execution_count), str(status.failed_execution_count)]
    if with_namespace:
        row.insert(0, meta(trigger).get("namespace", ""))
    if wide:
        condition = ready(status)
        row += [condition.status if condition else NONE, condition.reason if condition else NONE,
                spec.get("actionType", NONE), str(status.consecutive_failures),
                status.last_execution_task_id or NONE]
    return row


def list_table(triggers: Sequence[Mapping[str, Any]], now: dt.datetime, *, wide: bool = False,
               with_namespace: bool = False) -> str:
    headers = [*(["NAMESPACE"] if with_namespace else []), *LIST_HEADERS, *(WIDE_HEADERS if wide else ())]
    ordered = sorted(triggers, key=lambda t: (meta(t).get("namespace", ""), meta(t).get("name", "")))
    return table(headers, (list_row(t, now, wide=wide, with_namespace=with_namespace) for t in ordered))


def as_list(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What ``kubectl get -o json`` prints for several objects."""
    return {"apiVersion": "v1", "kind": "List", "items": list(items), "metadata": {"resourceVersion": ""}}


def resource_name(trigger: Mapping[str, Any]) -> str:
    return f"{RESOURCE}/{meta(trigger).get('name')}"


# --- history --------------------------------------------------------------------------------------


def history(trigger: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The runs in progress (newest first, outcome ``Running``), then the finished ones status keeps,
    in the keys of ``status.recentExecutions`` (unset ones left out, as there)."""
    dumped = status_of(trigger).to_dict()
    running = [{"name": r["name"], "kind": r["kind"], "scheduledTime": r["scheduledTime"], "outcome": "Running",
                "startedAt": r["firedAt"]} for r in reversed(dumped["active"])]
    return running + list(dumped["recentExecutions"])


HISTORY_HEADERS = ("MOMENT", "KIND", "JOB", "RESULT", "DURATION", "ERROR")


def history_table(runs: Sequence[Mapping[str, Any]], indent: str = "") -> str:
    rows = ([to_second(r["scheduledTime"]), r["kind"], r["name"], r["outcome"], duration_ms(r.get("durationMs")),
             one_line(r.get("error"))] for r in runs)
    return table(HISTORY_HEADERS, rows, indent)


# --- describe -------------------------------------------------------------------------------------


def _spec_fields(trigger: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    raw = trigger.get("spec") or {}
    try:
        spec = parse_spec(dict(raw))
    except SpecError as error:
        return [("Invalid", str(error)), ("Action", raw.get("actionType")), ("Trigger type", raw.get("triggerType"))]
    deadline = f", starting deadline {spec.starting_deadline_seconds}s" if spec.starting_deadline_seconds else ""
    limit = f"{spec.max_consecutive_failures} in a row" if spec.max_consecutive_failures else "never stops"
    template = "its own (spec.jobTemplate)" if spec.job_template else f"the action catalog's {spec.action_type.value!r}"
    return [
        ("Action", f"{spec.action_type.value} {json.dumps(spec.action_config, sort_keys=True)}"),
        ("Trigger type", spec.trigger_type.value),
        ("Schedule", schedule_fingerprint(spec)),
        ("State", spec.state.value),
        ("Concurrency", spec.concurrency_policy.value),
        ("Catch-up", f"{spec.catch_up_policy.value}{deadline}" if spec.is_time_based() else None),
        ("Failure limit", limit),
        ("Jobs kept", f"{spec.successful_jobs_history_limit} succeeded, {spec.failed_jobs_history_limit} failed"),
        ("Job template", template),
    ]


def _event_fields(s: TriggerStatus, spec: Mapping[str, Any], now: dt.datetime) -> list[tuple[str, str | None]]:
    config = spec.get("scheduleConfig") or {}
    threshold, absence, group_by = config.get("eventThreshold"), config.get("absence"), config.get("groupBy")
    counted = f"{s.event_counter} of {threshold}" if threshold is not None else str(s.event_counter)
    pairs: list[tuple[str, str | None]] = [
        ("Events counted", counted + (f" over {(s.event_keys or {}).get('total', 0)} {group_by} key(s)"
                                      if group_by else "")),
        ("Event firings", str(s.event_firings)), ("Last firing", stamped(s.last_cooldown_at, now))]
    if group_by:  # events/keys.py: the top keys, and what maxKeys refused
        summary = s.event_keys or {}
        top = ", ".join(f"{t.get('key')}={t.get('counter')}" for t in summary.get("top") or [])
        pairs += [("Top keys", top or "<none>"),
                  ("Refused (maxKeys)", f"{summary['refused']} event(s)" if summary.get("refused") else None)]
    if absence:  # events/absence.py: the rule and the last window judged
        last = s.last_absence or {}
        window = (f"{last.get('windowStart')} to {last.get('windowEnd')}: {last.get('count')} event(s), "
                  + ("fired" if last.get("fired") else "not fired")) if last else None
        pairs += [("Absence", f"fewer than {absence.get('fewerThan')} in {absence.get('withinSeconds')} s"),
                  ("Last window", window)]
    return pairs


def _condition_fields(s: TriggerStatus, now: dt.datetime) -> list[tuple[str, str | None]]:
    armed = {None: "yes (not fired yet)", True: "yes", False: "no (fired; re-arms once the condition is false)"}
    return [("Last check", stamped(s.last_condition_check_at, now)),
            ("Last measurement", json.dumps(s.last_drift_measurement, sort_keys=True)
             if s.last_drift_measurement else None),
            ("Last volume", json.dumps(s.last_volume_measurement, sort_keys=True)
             if s.last_volume_measurement else None),
            ("Baseline", json.dumps(s.baseline_snapshot, sort_keys=True) if s.baseline_snapshot else None),
            ("Armed", armed[s.condition_armed]), ("Condition firings", str(s.condition_firings)),
            ("Source errors", f"{s.source_errors} in a row" if s.source_errors else None),
            ("Last firing", stamped(s.last_cooldown_at, now))]


def _compound_fields(s: TriggerStatus, spec: Mapping[str, Any], created: dt.datetime | None,
                     now: dt.datetime) -> list[tuple[str, str | None]]:
    """Each part's last firing and whether it counts now (core/firing/compound.py's rule)."""
    config = spec.get("scheduleConfig") or {}
    within = config.get("withinSeconds")
    since = s.active_since or created
    live = {r.trigger for r in counted(s.compound_parts, since, now, dt.timedelta(seconds=within))} \
        if isinstance(within, int) and since is not None else set()
    pairs: list[tuple[str, str | None]] = [("Require", f"{config.get('require') or 'all'} of "
                                            f"{len(config.get('parts') or [])} within {within} s")]
    for record in s.compound_parts:
        if record.fired_run is None:
            said_ = "not fired (or no such Trigger)"
        else:
            said_ = f"fired {relative(record.fired_at, now)} (run {record.fired_run}): " + (
                "counts" if record.trigger in live else "used by a run" if record.spent
                else "outside the window")
        pairs.append((f"Part {record.trigger}", said_))
    return [*pairs, ("Compound firings", str(s.compound_firings)), ("Last firing", stamped(s.last_cooldown_at, now))]


def _status_fields(trigger: Mapping[str, Any], s: TriggerStatus, now: dt.datetime) -> list[tuple[str, str | None]]:
    condition = ready(s)
    last_run = None
    if s.last_triggered_at is not None:
        last_run = f"{stamped(s.last_triggered_at, now)}: Job {s.last_execution_task_id}, {s.last_execution_status}"
    generation = meta(trigger).get("generation")
    pairs: list[tuple[str, str | None]] = [
        ("Phase", s.phase.value if s.phase else "- (the operator has not seen it yet)"),
        ("Ready", said(condition) if condition else None),
        ("Message", s.message if not condition or s.message != condition.message else None),
        ("Observed generation", f"{s.observed_generation} of {generation}" if s.observed_generation else None),
        ("Active since", stamped(s.active_since, now)),
        ("Next run", stamped(s.next_scheduled_at, now)),
        ("Last run", last_run),
        ("Last success", stamped(s.last_successful_time, now)),
        ("Last error", one_line(s.last_execution_error) if s.last_execution_error else None),
        ("Runs", f"{s.execution_count} succeeded, {s.failed_execution_count} failed "
                 f"({s.consecutive_failures} in a row)" + _budget(trigger, s)),
        ("Missed, skipped", f"{s.missed_runs} missed, {s.skipped_runs} skipped"),
        ("Schedule cursor", stamped(s.last_schedule_time, now)),
    ]
    kind = (trigger.get("spec") or {}).get("triggerType")
    if kind == "event":
        pairs += _event_fields(s, trigger.get("spec") or {}, now)
    if kind == "conditional":
        pairs += _condition_fields(s, now)
    if kind == "compound":
        pairs += _compound_fields(s, trigger.get("spec") or {}, parse_time(meta(trigger).get("creationTimestamp")), now)
    pairs += [(f"Condition {c.type}", said(c)) for c in s.conditions if c.type != "Ready"]
    return pairs


def _budget(trigger: Mapping[str, Any], s: TriggerStatus) -> str:
    """The run budget beside the counters: ``; scheduled runs 12 of 30`` (nothing without maxRuns)."""
    max_runs = ((trigger.get("spec") or {}).get("scheduleConfig") or {}).get("maxRuns")
    return f"; scheduled runs {s.scheduled_runs} of {max_runs}" if max_runs is not None else ""


JOB_HEADERS = ("NAME", "KIND", "STATUS", "CREATED", "DURATION", "MESSAGE")


def jobs_table(jobs: Sequence[Mapping[str, Any]], now: dt.datetime, indent: str = "") -> str:
    views = sorted(((observe_job(j), j) for j in jobs), key=lambda v: (v[0].created_at or now, v[0].name))
    rows = []
    for view, raw in views:
        state = "Deleting" if view.deletion_begun else view.phase.value
        took = view.finished_at - view.started_at if view.finished_at and view.started_at else None
        kind = (meta(raw).get("labels") or {}).get(LABEL_RUN_KIND, NONE)
        rows.append([view.name, kind, state, relative(view.created_at, now),
                     span(took) if took is not None else NONE, one_line(view.message)])
    return table(JOB_HEADERS, rows, indent)


def event_time(event: Mapping[str, Any]) -> dt.datetime | None:
    return parse_time(event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp")
                      or meta(event).get("creationTimestamp"))


def events_table(events: Sequence[Mapping[str, Any]], now: dt.datetime, indent: str = "") -> str:
    ordered = sorted(events, key=lambda e: event_time(e) or now)[-RECENT_EVENTS:]
    rows = ([e.get("type") or NONE, e.get("reason") or NONE, relative(event_time(e), now),
             str(e.get("count") or 1), one_line(e.get("message"))] for e in ordered)
    return table(("TYPE", "REASON", "AGE", "COUNT", "MESSAGE"), rows, indent)


def describe(trigger: Mapping[str, Any], jobs: Sequence[Mapping[str, Any]], events: Sequence[Mapping[str, Any]],
             now: dt.datetime) -> str:
    m, spec = meta(trigger), trigger.get("spec") or {}
    lines = fields([("Name", m.get("name")), ("Namespace", m.get("namespace")),
                    ("Description", spec.get("description")),
                    ("Created", stamped(parse_time(m.get("creationTimestamp")), now))])
    lines += ["Spec:", *fields(_spec_fields(trigger), "  ")]
    status, problem = read_status(trigger.get("status"))
    if problem is not None:
        lines += ["Status:", f"  Unreadable: {problem}"]
    else:
        lines += ["Status:", *fields(_status_fields(trigger, status, now), "  ")]
        runs = history(trigger)
        lines += ["Recent executions:", history_table(runs, "  ") if runs else "  <none>"]
        lines += backfill_lines(status)
        lines += notification_lines(spec, status, now)
    lines += ["Jobs:", jobs_table(jobs, now, "  ") if jobs else "  <none>"]
    lines += ["Events:", events_table(events, now, "  ") if events else "  <none>"]
    return "\n".join(lines)


DEAD_LETTERS_SHOWN = 5  # describe's newest dead letters (status keeps 20)


def notification_lines(spec: Mapping[str, Any], status: TriggerStatus, now: dt.datetime) -> list[str]:
    """``describe``'s Notifications section (docs/notifications.md): the sinks as people read them,
    the types, whether events are signed, how many events are still owed and the newest dead
    letters; nothing without spec.notifications and no outbox left."""
    raw = spec.get("notifications")
    box = status.notifications or {}
    pending, letters = box.get("pending") or [], box.get("deadLetters") or []
    if not raw and not pending and not letters:
        return []
    try:
        parsed = Notifications.model_validate(raw) if raw else None
    except ValidationError:
        parsed = None
    lines = ["Notifications:"]
    if parsed is not None:
        all_types = len(set(parsed.types)) == len(NotificationType)
        ref = parsed.signing_secret_ref
        lines += fields([("Sinks", ", ".join(s.describe() for s in parsed.sinks)),
                         ("Types", "all eight" if all_types else ", ".join(t.value for t in parsed.types)),
                         ("Signed", f"with Secret {ref.name} key {ref.key}" if ref else "no")], "  ")
    elif raw:
        lines += ["  Spec: unreadable (kubectl get -o yaml shows it)"]
    lines += fields([("Pending", f"{len(pending)} event(s) still owed to a sink" if pending else "none")], "  ")
    if letters:
        lines += [f"  Dead letters ({len(letters)} kept, newest last):"]
        for letter in letters[-DEAD_LETTERS_SHOWN:]:
            at = stamped(parse_time(letter.get("at")), now) if isinstance(letter, Mapping) else None
            if isinstance(letter, Mapping):
                lines.append(f"    {at or '?'}  {letter.get('type')} to {letter.get('sink')}: "
                             f"{one_line(str(letter.get('reason')))}")
    return lines


def backfill_lines(status: TriggerStatus) -> list[str]:
    """``describe``'s Backfill section: the last request's progress (status.backfill), and the
    moments the live schedule missed, which a backfill may still run; nothing when neither is set."""
    b, lines = status.backfill, []
    if b is not None:
        done = b.succeeded + b.failed
        lines += ["Backfill:", *fields([
            ("Id", b.id), ("State", b.state.value),
            ("Range", f"{format_time(b.start)} .. {format_time(b.end)} (both included)" if b.start and b.end else None),
            ("Parallelism", str(b.parallelism) if b.start else None),
            ("Progress", f"{done}/{b.total - b.skipped} finished ({b.succeeded} succeeded, {b.failed} failed), "
                         f"{b.started} started, {b.skipped} had already run" if b.start else None),
            ("Cursor", format_time(b.cursor)), ("Message", b.message)], "  ")]
    if status.missed_moments:
        lines += ["Missed moments (a backfill may run them):",
                  *(f"  {format_time(a)} .. {format_time(z)}" for a, z in status.missed_moments)]
    return lines


# --- next -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Upcoming:
    moments: list[dt.datetime]
    zone: dt.tzinfo  # the Trigger's time zone (UTC for intervals), to print the moments in
    note: str | None  # why these are hypothetical (the Trigger is not Active), or None
    # Why some or all moments are left out (the run budget, a finished Trigger), or None: said, not
    # an error, and it stands in for the shortfall note (core.ready.budget_allows).
    limit: str | None = None


def upcoming(trigger: Mapping[str, Any], now: dt.datetime, count: int) -> Upcoming:
    """The next moments of a cron or interval Trigger, starting at the operator's own next run
    (``status.nextScheduledAt``); for a Trigger that is not running, the moments it would have if
    it were resumed now."""
    name = meta(trigger).get("name")
    spec, status = spec_of(trigger), status_of(trigger)
    if not spec.is_time_based():
        raise PluginError(FAILED, f'trigger "{name}" is an {spec.trigger_type.value} Trigger '
                          f"({schedule_fingerprint(spec)}): it runs on events or conditions, not at scheduled moments")
    first = status.next_scheduled_at
    # Every line, exclusion, window and this Trigger's own jitter, as the operator applies them: from
    # its own next run when it has one (an interval's lattice runs through it); else from where the
    # controller would stand (model.spec.live_schedule, its own rule): activeSince and the cursor when
    # running, a resume now (activeSince now) when not, its creation before the operator saw it.
    running = status.phase in (Phase.ACTIVE, Phase.FINISHED)
    created = parse_time(meta(trigger).get("creationTimestamp")) or now
    since = (status.active_since or created) if running else created if status.phase is None else now
    own = (str(meta(trigger).get("namespace") or ""), str(name or ""))
    try:
        if first is not None:
            schedule = time_schedule(spec, origin=first, first_run=False, trigger=own)
            assert schedule is not None  # time-based
            found = [first, *moments(schedule, first, count - 1)]
        else:
            live = live_schedule(spec, since=since, cursor=status.last_schedule_time, trigger=own)
            found = moments(live.schedule, max(live.look_from, now), count)
    except SpecError as error:  # exclusions too costly to search: the operator says the same (Invalid)
        raise PluginError(FAILED, f'trigger "{name}": {error}') from None
    zone = calendar(spec).zone if spec.trigger_type is TriggerType.CRON else dt.UTC
    allowed, limit = budget_allows(spec, status, found[:count], now)
    note = None
    if status.phase not in (Phase.ACTIVE, Phase.FINISHED):
        note = f'trigger "{name}" is {status.phase.value if status.phase else "not seen by the operator yet"}: ' \
               "these are the moments it would have if it ran from now"
    return Upcoming(moments=allowed, zone=zone, note=note, limit=limit)


# --- run: following one run-now token -------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    job: str
    state: str  # for the progress line
    outcome: str | None = None  # the operator counted the run: Succeeded, Failed, Replaced, Lost (or Refused)
    job_outcome: str | None = None  # the Job alone says it ended: Succeeded or Failed (not counted yet)
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        return (self.outcome or self.job_outcome) == "Succeeded"


_TASK_STATES = {TaskStatus.PENDING: "Pending", TaskStatus.IN_PROGRESS: "Running", TaskStatus.COMPLETED: "Succeeded",
                TaskStatus.FAILED: "Failed", TaskStatus.CANCELED: "Cancelled"}
_END_WITHOUT_RESULT = {"Replaced": "it was replaced by a newer run (concurrencyPolicy Replace)",
                       "Lost": "its Job vanished before its result was seen"}


def progress(trigger: Mapping[str, Any], job: Mapping[str, Any] | None, token: str) -> Progress:
    """Where the run of run-now ``token`` stands: counted in status (final), ended by its Job's
    conditions (final once the operator counts it), running, or not started yet."""
    name = manual_job_name(meta(trigger).get("name", ""), token)
    status = status_of(trigger)
    done = next((e for e in status.recent_executions if e.name == name), None)
    if done is not None:
        return Progress(name, done.outcome.value, outcome=done.outcome.value,
                        error=done.error or _END_WITHOUT_RESULT.get(done.outcome.value))
    if job is not None:
        task = task_from_job(job, trigger)
        state = _TASK_STATES[task.status]
        ended = state if task.status in (TaskStatus.COMPLETED, TaskStatus.FAILED) else None
        return Progress(name, f"{state}, being counted" if ended else state, job_outcome=ended, error=task.error)
    if token_hash(token) in status.run_now_tokens and not any(r.name == name for r in status.active):
        return Progress(name, "Refused", outcome="Refused", error="the operator used the token without a run "
                        "(the Trigger is disabled?): its RunNowRefused Event says why")
    return Progress(name, "waiting for the operator" if not any(r.name == name for r in status.active)
                    else "creating the Job")


def progress_line(p: Progress, elapsed: dt.timedelta) -> str:
    return f"Job {p.job}: {p.state} ({span(elapsed)})"


def run_refusal(trigger: Mapping[str, Any]) -> str | None:
    """Why a run-now token would run nothing, or None. A token on a Trigger the operator has not
    seen yet is taken as the creation's own and never runs (README, "Run now")."""
    name, status = meta(trigger).get("name"), trigger.get("status") or {}
    if (trigger.get("spec") or {}).get("state") == "disabled":
        return f'trigger "{name}" is disabled: resume it first'
    if not status.get("phase"):
        return f'the operator has not seen trigger "{name}" yet (no status): a token now would run nothing; try again'
    if status.get("phase") == Phase.INVALID.value:
        return f'trigger "{name}" is invalid, nothing runs until its spec is fixed: {status.get("message")}'
    return None


# --- send-event -----------------------------------------------------------------------------------


def event_targets(triggers: Sequence[Mapping[str, Any]]) -> list[tuple[str, str | None]]:
    """The distinct (eventType, collectionId) of these event Triggers, in a stable order."""
    found = {(str(c["eventType"]), c.get("collectionId"))
             for t in triggers if (t.get("spec") or {}).get("triggerType") == "event"
             for c in [(t.get("spec") or {}).get("scheduleConfig") or {}] if c.get("eventType")}
    return sorted(found, key=lambda pair: (pair[0], pair[1] or ""))


def cloudevents(targets: Sequence[tuple[str, str | None]], *, source: str, new_id: Callable[[], str],
                event_id: str | None = None, count: int = 1, subject: str | None = None,
                data: Any = None) -> list[dict[str, Any]]:
    """One structured CloudEvent per (type, collection), as the operator's ``/v1/events`` reads them."""
    events = []
    for event_type, collection in targets:
        event: dict[str, Any] = {"specversion": "1.0", "id": event_id or new_id(), "source": source,
                                 "type": event_type, "count": count}
        optional = {"collectionid": collection, "subject": subject, "data": data}
        events.append({**event, **{k: v for k, v in optional.items() if v is not None}})
    return events


def tally_table(answer: Mapping[str, Any]) -> str:
    rows = ([t["name"], str(t["counted"]), str(t["duplicates"]), str(t["event_counter"])]
            for t in answer.get("triggers") or [])
    return table(("TRIGGER", "COUNTED", "DUPLICATES", "COUNTER"), rows)
