"""Cron and interval Triggers: the moments due now run (catch-up, starting deadline, missed and
skipped moments counted), and the next moment is kept in status. The time math is timemath/'s. Pure."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from trigger_operator.core.concurrency import moments_to_start
from trigger_operator.core.firing.backfill import merged, with_handled, with_missed
from trigger_operator.core.plan import Draft, Observed
from trigger_operator.core.runs import EPSILON, goes_first, make_room, start_run, unlisted_announced_run
from trigger_operator.jobs.render import scheduled_job_name
from trigger_operator.model.spec import SpecError, TriggerSpec, same_schedule, time_schedule
from trigger_operator.model.status import ActiveRun, RunKind, format_time
from trigger_operator.timemath.due import due, latest_at_or_before


def run_due_moments(o: Observed, d: Draft, spec: TriggerSpec, template: Mapping[str, Any] | None) -> None:
    """Runs the moments due now; with no template (the catalog lacks it) runs none and keeps
    the cursor where it is, so the moments due meanwhile are caught up or counted missed later.
    Raises OverflowError when a moment falls outside the calendar."""
    now = o.now
    since = d.status.active_since or o.trigger.created_at
    cursor = d.status.last_schedule_time
    earliest = max(cursor, since) if cursor is not None else since
    first_run = cursor is None
    schedule = time_schedule(spec, origin=earliest, first_run=first_run, trigger=(o.trigger.namespace, o.trigger.name))
    assert schedule is not None
    if template is None:
        spent = d.status.runs_left(spec.schedule_config.max_runs) == 0
        d.status = replace(d.status, next_scheduled_at=None if spent else schedule.next_after(max(now, earliest)))
        return
    # startImmediately makes the origin itself a moment, so look from just before it.
    look_from = earliest - EPSILON if first_run else earliest
    found = due(schedule, earliest=look_from, now=now, deadline=spec.starting_deadline,
                policy=spec.catch_up_policy)
    if found.missed:
        d.status = replace(d.status, missed_runs=d.status.missed_runs + found.missed)
        d.status = with_missed(d.status, schedule, look_from, found)  # what a backfill may run
        d.notice("Warning", "MissedSchedule",
                 f"{found.missed} scheduled moment(s) passed without a run (catchUpPolicy "
                 f"{spec.catch_up_policy.value}, startingDeadlineSeconds {spec.starting_deadline_seconds})")
    moments, skipped = moments_to_start(spec.concurrency_policy, found.run)
    if skipped:
        d.status = replace(d.status, skipped_runs=d.status.skipped_runs + skipped)
    handled_until = found.cursor
    for moment in moments:
        # The run budget (maxRuns): due moments beyond it are passed over, neither run nor missed
        # (the cursor moves past them): the Trigger is finished (core/ready.py), not late. They
        # never ran, so they are not handled: a backfill may run them.
        if d.status.runs_left(spec.schedule_config.max_runs) == 0:
            handled_until = latest_at_or_before(schedule, moment - EPSILON, look_from)
            break
        _start_scheduled_run(o, d, spec, template, moment)
    if found.cursor is not None:
        if handled_until is not None:  # what a backfill passes over (core/firing/backfill.py)
            d.status = with_handled(d.status, schedule, since=since, look_from=look_from, until=handled_until)
        d.status = replace(d.status, last_schedule_time=found.cursor)
    following = schedule.next_after(found.cursor if found.more and found.cursor
                                    else max(now, found.cursor or now))
    if d.status.runs_left(spec.schedule_config.max_runs) == 0:
        following = None  # no moment will run
    d.status = replace(d.status, next_scheduled_at=following)
    d.wake(now if found.more else following)


def adopt_announced(o: Observed, d: Draft, spec: TriggerSpec | None) -> None:
    """Lists the announced run whose Job of ours exists unlisted (`core.runs.unlisted_announced_run`:
    its create went first, its listing write did not land) and records its moment handled: it is
    neither run again (by the schedule or a backfill) nor counted missed, and no later pass adopts it
    again. Every pass does it first, whatever the phase (paused, deleting, an invalid spec too),
    before a jitter edit shifts the cursor (core/ready.py). The cursor moves to the moment, as the
    write that starts a run does, when it is the schedule's next one; with moments between (the
    cursor held back while the template was missing), the cursor stays for `run_due_moments` to
    count those as caught up or missed."""
    run = unlisted_announced_run(o, d)
    if run is None:
        return
    d.status = d.status.with_run_started(run)
    if spec is None or not spec.is_time_based():
        # An invalid spec, or a type edit (cron -> event): no schedule of these moments to read; a
        # spec fixed or turned time-based again starts afresh (core/ready.py).
        d.status = replace(d.status, last_schedule_time=run.scheduled_time,
                           handled_moments=merged(d.status.handled_moments, (run.scheduled_time, run.scheduled_time),
                                                  overflow_merges=True))
        return
    since = d.status.active_since or o.trigger.created_at
    cursor, moment = d.status.last_schedule_time, run.scheduled_time
    earliest = max(cursor, since) if cursor is not None else since
    look_from = earliest - EPSILON if cursor is None else earliest
    try:
        schedule = time_schedule(spec, origin=earliest, first_run=cursor is None,
                                 trigger=(o.trigger.namespace, o.trigger.name))
        assert schedule is not None
        following = schedule.next_after(look_from)
    except (OverflowError, SpecError):  # the schedule's own pass reports it
        schedule, following = None, None
    recorded = d.status.observed_schedule
    edited = recorded is not None and not same_schedule(recorded, spec)  # the moments are not these
    if schedule is not None and not edited and following is not None and following < moment:
        d.status = replace(d.status, handled_moments=merged(d.status.handled_moments, (moment, moment),
                                                            overflow_merges=True))
        return  # moments between the cursor and this one: `run_due_moments` catches up or counts them
    if schedule is not None and not edited:
        d.status = with_handled(d.status, schedule, since=since, look_from=look_from, until=moment)
    else:  # an edited schedule starts afresh or shifts the cursor (core/ready.py): this moment alone
        d.status = replace(d.status, handled_moments=merged(d.status.handled_moments, (moment, moment),
                                                            overflow_merges=True))
    d.status = replace(d.status, last_schedule_time=moment)


def _start_scheduled_run(o: Observed, d: Draft, spec: TriggerSpec, template: Mapping[str, Any],
                         moment: dt.datetime) -> None:
    """Starts the moment's run unless it is already active; under Forbid a running Job skips it."""
    name = scheduled_job_name(o.trigger.name, moment)
    if any(r.name == name for r in d.status.active):
        return
    deletes = len(d.delete)
    blocker = make_room(o, d, spec)
    if blocker is not None:
        d.status = replace(d.status, skipped_runs=d.status.skipped_runs + 1)
        d.notice("Normal", "RunSkipped", f"skipped the run for {format_time(moment)}: Job "
                 f"{blocker} is still running (concurrencyPolicy Forbid)")
        return
    # A run that replaces another goes after its write: the old Job must be deleted first.
    start_run(o, d, spec, template, ActiveRun(name=name, kind=RunKind.SCHEDULED, scheduled_time=moment,
                                              fired_at=o.now),
              announced=goes_first(o, moment) and len(d.delete) == deletes)
