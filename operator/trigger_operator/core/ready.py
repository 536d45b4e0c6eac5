"""A Trigger's phase and its Ready condition, as one pass settles them. Pure.

`settle_phase` decides the phase (Active, Paused, Disabled, Failed) from ``spec.state``, the failure
streak and the resume annotation, and what becoming active or a new schedule resets; `settle_ready`
decides whether the pass finished an Active cron or interval Trigger (phase Finished: its run budget
is spent or its active window ended, `finished_reason`) and words the Ready condition once the runs
are drafted; `invalid` and `unreadable` are the two ways a pass ends early (a spec, or a stored
status, that cannot be read). `budget_allows` is the previews' (``next``) share of the budget rule.

Finished is decided after the schedule's moments of this pass ran (a moment due before endAt runs
even when the pass comes after endAt), and is not sticky: each pass of a Finished Trigger asks again,
so an edit that raises maxRuns or moves endAt makes it Active (from then on: no catch-up of the
moments it passed while finished, as after a resume). ``status.scheduledRuns`` is never reset, not
even by a new schedule: the budget is the Trigger's (Temporal's remaining_actions is the schedule's).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import replace

from trigger_operator.api import ANNOTATION_RESUME
from trigger_operator.conditions.evaluate import last_measurement
from trigger_operator.core.plan import Draft, Observed, Plan
from trigger_operator.events.counting import event_message
from trigger_operator.model.notice import Notice
from trigger_operator.model.spec import (
    State,
    TriggerSpec,
    TriggerType,
    jitter_edit,
    never_fires,
    same_schedule,
    schedule_fingerprint,
)
from trigger_operator.model.status import (
    MESSAGE_MAX_CHARS,
    Condition,
    Phase,
    ReadyReason,
    TriggerStatus,
    cut,
    format_time,
)
from trigger_operator.timemath.calendar import jitter_offset


def finished_reason(spec: TriggerSpec, status: TriggerStatus, now: dt.datetime) -> str | None:
    """Why a cron or interval Trigger will never run again on its own, or None: its run budget is
    spent, or its active window ended and no moment of it is still to come (a jittered moment of
    the window may fall after endAt: it still runs, ``nextScheduledAt`` shows it)."""
    if not spec.is_time_based():
        return None
    config = spec.schedule_config
    if status.runs_left(config.max_runs) == 0:
        return f"the run budget of {config.max_runs} is spent ({status.scheduled_runs} scheduled runs)"
    if config.end_at is not None and config.end_at <= now and status.next_scheduled_at is None:
        return f"the active window ended at {format_time(config.end_at)}"
    return None


def budget_allows(spec: TriggerSpec, status: TriggerStatus, found: Sequence[dt.datetime],
                  now: dt.datetime) -> tuple[list[dt.datetime], str | None]:
    """Of the upcoming moments ``found``, those the Trigger will still run, and why some or all are
    left out (None: none are): the one rule of ``trigger-operator next`` and ``kubectl trigger next``.
    A finished Trigger has none, which is an answer (said), not an error."""
    config = spec.schedule_config
    ended = replace(status, next_scheduled_at=None) if not found else status
    reason = finished_reason(spec, ended, now)
    if reason is not None:
        return [], f"finished: {reason}; no moment will run"
    left = status.runs_left(config.max_runs)
    if left is not None and left < len(found):
        return list(found[:left]), (f"the run budget of {config.max_runs} allows {left} more scheduled run(s) "
                                    f"({status.scheduled_runs} started)")
    return list(found), None


def settle_phase(o: Observed, d: Draft, spec: TriggerSpec) -> Phase:
    trigger = o.trigger
    s = d.status
    previous = s.phase
    resume_token = trigger.annotations.get(ANNOTATION_RESUME)
    if resume_token and resume_token != s.last_resume_token:
        s = replace(s, last_resume_token=resume_token)
        if previous is Phase.FAILED:
            s = replace(s, failed_at_generation=None, consecutive_failures=0)
    if previous is Phase.FAILED and s.failed_at_generation is not None \
            and trigger.generation > s.failed_at_generation:
        s = replace(s, failed_at_generation=None, consecutive_failures=0)  # the spec was edited

    wanted = {State.ACTIVE: Phase.ACTIVE, State.PAUSED: Phase.PAUSED, State.DISABLED: Phase.DISABLED}[spec.state]
    phase = wanted
    if wanted is Phase.ACTIVE:
        if previous is Phase.FINISHED and finished_reason(spec, s, o.now) is not None:
            phase = Phase.FINISHED  # still nothing to run; otherwise it becomes Active again, from now
        elif s.failed_at_generation is not None:
            phase = Phase.FAILED
        elif 0 < spec.max_consecutive_failures <= s.consecutive_failures:
            phase = Phase.FAILED
            s = replace(s, failed_at_generation=trigger.generation)
            d.notice("Warning", "FailureLimitReached",
                     f"{s.consecutive_failures} consecutive failures (maxConsecutiveFailures is "
                     f"{spec.max_consecutive_failures}): the Trigger stops until it is edited or "
                     f"annotated {ANNOTATION_RESUME}=<new token>")
    fingerprint = schedule_fingerprint(spec)
    changed = s.observed_schedule is not None and not same_schedule(s.observed_schedule, spec)
    old_jitter = jitter_edit(s.observed_schedule, spec) if changed and s.observed_schedule else None
    if old_jitter is not None:
        # Only jitterSeconds changed: the same nominal moments, each at a new offset. The cursor
        # moves by the change of offset, so it names the same nominal moment: one already run is
        # not run again (at its new offset), one not yet run runs at its new offset.
        changed = False
        shift = (jitter_offset(trigger.namespace, trigger.name, spec.schedule_config.jitter_seconds)
                 - jitter_offset(trigger.namespace, trigger.name, old_jitter))
        if s.last_schedule_time is not None:
            s = replace(s, last_schedule_time=s.last_schedule_time + shift)
        d.notice("Normal", "ScheduleChanged", f"schedule is now {fingerprint}; the moments already run are "
                 "not run again, the others run at the new offset")
    if phase is Phase.ACTIVE and (previous is not Phase.ACTIVE or s.active_since is None or changed):
        # Becoming active (created, resumed, un-failed, fixed) or given a new schedule: moments
        # before now are not caught up (the old schedule's cursor says nothing of the new one).
        since = trigger.created_at if previous is None else o.now.replace(microsecond=0)
        s = replace(s, active_since=since)
    if changed:
        d.notice("Normal", "ScheduleChanged", f"schedule is now {fingerprint}; it starts afresh from now")
        s = replace(s, baseline_snapshot=None, condition_fired_value=None)  # a new condition: a new baseline
    edited = s.observed_generation is not None and trigger.generation > s.observed_generation
    if edited or (resume_token and resume_token != trigger.status.last_resume_token):
        s = replace(s, condition_armed=None)  # an edit or a resume re-arms a condition that fired
    s = replace(s, observed_schedule=fingerprint)
    if previous is not None and previous is not phase:
        d.notice("Normal" if phase is not Phase.FAILED else "Warning", "PhaseChanged",
                 f"phase {previous.value} -> {phase.value}")
    d.status = replace(s, phase=phase)
    return phase


def settle_ready(o: Observed, d: Draft, phase: Phase, spec: TriggerSpec, missing_template: str | None,
                 source_is_default: bool) -> None:
    """The Ready condition and status message for the phase, once this pass's runs are drafted; an
    Active cron or interval Trigger this pass leaves with nothing to run becomes Finished here."""
    phase = _settle_finished(o, d, phase, spec)
    status = d.status
    message: str | None = None
    state = "False"
    config = spec.schedule_config
    if phase is Phase.FINISHED:
        reason, message = ReadyReason.FINISHED, finished_reason(spec, status, o.now)
    elif phase is Phase.ACTIVE and missing_template is not None:
        reason, message = ReadyReason.ACTION_TEMPLATE_MISSING, missing_template
    elif phase is Phase.ACTIVE and spec.trigger_type is TriggerType.EVENT:
        reason, state = ReadyReason.SCHEDULED, "True"
        message = event_message(status, spec)  # events/counting.py: threshold, groupBy keys, absence
    elif phase is Phase.ACTIVE and status.source_errors:
        reason = ReadyReason.SOURCE_FAILING
        message = (f"{status.source_errors} failed check(s) in a row, retrying with backoff: "
                   f"{last_measurement(status, spec).get('error')}")
    elif phase is Phase.ACTIVE and spec.trigger_type is TriggerType.CONDITIONAL:
        reason, state = ReadyReason.SCHEDULED, "True"
        last = last_measurement(status, spec)
        source = spec.schedule_config.source.kind if spec.schedule_config.source else ""
        source += " default" if source_is_default else ""
        message = (f"checks the {source} source every {spec.schedule_config.check_interval_seconds} s"
                   + (f"; last: {last.get('drift', last.get('value'))} (exceeded: {last.get('exceeded')})"
                      if last else ""))
    elif phase is Phase.ACTIVE and status.next_scheduled_at is None and spec.is_time_based():
        reason = ReadyReason.NEVER_FIRES
        message = never_fires(spec, o.now)
        begun = config.start_at is None or config.start_at <= o.now
        if config.end_at is not None and begun and message.startswith("spec.scheduleConfig.endAt"):
            # The window's last moment passed before its end: nothing is wrong, it finishes at endAt.
            reason, state = ReadyReason.SCHEDULED, "True"
            message = (f"no moment remains in the active window: the Trigger finishes when it ends at "
                       f"{format_time(config.end_at)}")
    elif phase is Phase.ACTIVE:
        reason, state = ReadyReason.SCHEDULED, "True"
        if spec.is_time_based() and config.start_at is not None and o.now < config.start_at:
            message = (f"waits for startAt {format_time(config.start_at)}: the first moment is "
                       f"{format_time(status.next_scheduled_at)}")
    else:
        reason = {Phase.PAUSED: ReadyReason.PAUSED, Phase.DISABLED: ReadyReason.DISABLED,
                  Phase.FAILED: ReadyReason.FAILURE_LIMIT_REACHED}[phase]
    if phase is Phase.FAILED:
        message = f"stopped after {status.consecutive_failures} consecutive failures"
    status = replace(status, message=message, observed_generation=o.trigger.generation)
    d.status = status.with_condition(ready_condition(o, state, reason, message or reason.value))


def _settle_finished(o: Observed, d: Draft, phase: Phase, spec: TriggerSpec) -> Phase:
    """Finished once the pass's moments ran and nothing remains to run (`finished_reason`); a
    Normal Event ``Finished`` says so once, on the change. The runs going finish and are counted."""
    if phase is not Phase.ACTIVE or not spec.is_time_based():
        return phase
    end = spec.schedule_config.end_at
    why = finished_reason(spec, d.status, o.now)
    if why is None:
        if end is not None and o.now < end and d.status.next_scheduled_at is None:
            d.wake(end)  # no moment left in the window: it finishes when the window ends
        return phase
    d.notice("Normal", ReadyReason.FINISHED.value, f"the Trigger is finished: {why}")
    d.status = replace(d.status, phase=Phase.FINISHED, next_scheduled_at=None)
    return Phase.FINISHED


def invalid(o: Observed, d: Draft, message: str) -> None:
    """Phase Invalid with the reason in Ready; runs already going are still counted (the caller
    folds them first), none starts."""
    message = cut(message)  # as status keeps it, so the stored one compares equal
    if message != o.trigger.status.message:
        d.notice("Warning", "InvalidConfiguration", message)
    # active_since is cleared so that, once fixed, the Trigger runs from then on and does not
    # catch up moments from the time it could not run.
    status = replace(d.status, message=message, next_scheduled_at=None, active_since=None,
                     phase=Phase.INVALID, observed_generation=o.trigger.generation)
    d.status = status.with_condition(ready_condition(o, "False", ReadyReason.INVALID_SPEC, message))


def unreadable(o: Observed, d: Draft, error: str) -> Plan:
    """Nothing runs and nothing is counted: guessing would reset counters and the schedule
    position and could run or count a moment again. A person decides how to go on."""
    t = o.trigger
    # The parse error may quote the broken value at length: cut it, so the way out stays whole.
    message = cut(f"{cut(error, MESSAGE_MAX_CHARS // 2)}. Nothing runs until the status can be read. "
                  "To start afresh (counters, schedule position and used run-now tokens reset, a moment "
                  f"due now may run): kubectl patch trigger {t.name} -n {t.namespace} --subresource=status "
                  "--type=json -p '[{\"op\":\"remove\",\"path\":\"/status\"}]'")
    stored = t.raw_status or {}
    ready = [c for c in stored.get("conditions") or [] if isinstance(c, Mapping) and c.get("type") == "Ready"]
    if ready and ready[0].get("reason") == ReadyReason.STATUS_UNREADABLE and ready[0].get("message") == message:
        return Plan(status=d.status)
    condition = ready_condition(o, "False", ReadyReason.STATUS_UNREADABLE, message)
    patch = {"message": message, "observedGeneration": t.generation,
             "conditions": TriggerStatus(conditions=(condition,)).to_dict()["conditions"]}
    return Plan(status=d.status, patch=patch,
                notices=(Notice("Warning", ReadyReason.STATUS_UNREADABLE.value, message),))


def ready_condition(o: Observed, state: str, reason: ReadyReason, message: str) -> Condition:
    return Condition(type="Ready", status=state, reason=reason.value, message=message,
                     last_transition_time=o.now.replace(microsecond=0),
                     observed_generation=o.trigger.generation)
