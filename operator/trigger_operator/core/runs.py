"""The run ledger of one pass: runs start (listed in ``status.active``, a Job to create), finish
(counted once into ``recentExecutions``), make room for each other (concurrencyPolicy, from
core/concurrency.py), and their Jobs are pruned and released. Pure.

A finished run leaves ``active`` in the same write that counts it, so no result is counted twice
or lost, however often the operator restarts or however many replicas act at once.

The next scheduled moment is announced ahead of its time: ``status.nextScheduledAt``, written by a
guarded status write, names its run (the Job's name is the moment). At that moment its create may
go out first (`goes_first`), on the copy this process's own write produced, owned since (the shell
decides that, controller/reconciler.py); a Job of ours named for the announced moment but listed
nowhere was created first and its listing write did not land (a crash, a conflict): it is listed now
(`unlisted_announced_run`, core/firing/schedule.py), and the announcement is not withdrawn while
such a create may still be on its way (`keep_announcement`). docs/exactly-once.md says why each case
still holds.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, NamedTuple

from trigger_operator.conditions.evaluate import run_finished
from trigger_operator.core.concurrency import deletes_unfinished_strays, room
from trigger_operator.core.plan import Draft, NewJob, Observed
from trigger_operator.core.sharding import shard_label
from trigger_operator.jobs.observe import JobPhase, JobView, Presence, jobs_to_prune
from trigger_operator.jobs.render import TriggerRef, render_job, scheduled_job_name
from trigger_operator.model.notice import Notice
from trigger_operator.model.spec import TriggerSpec, time_based_fingerprint
from trigger_operator.model.status import ActiveRun, Execution, Outcome, RunKind, format_time
from trigger_operator.model.trigger import TriggerView

# A run listed in status.active whose Job does not exist is created again within this time of being
# fired (the crash window between the status write and the Job create, and API errors on create).
# Later it is recorded as Lost rather than run at a time nobody expects.
CREATE_GRACE = dt.timedelta(minutes=5)
EPSILON = dt.timedelta(microseconds=1)  # "just after" (or before) a moment


def stranger_message(job: JobView) -> str:
    owner = f"Trigger uid {job.owner_uid}" if job.owner_uid else "no controller"
    return (f"a Job named {job.name} already exists and does not belong to this Trigger ({owner}): "
            "delete that Job or rename the Trigger")


def render(o: Observed, spec: TriggerSpec, template: Mapping[str, Any], run: ActiveRun) -> NewJob:
    ref = TriggerRef(namespace=o.trigger.namespace, name=o.trigger.name, uid=o.trigger.uid,
                     action_type=spec.action_type.value, action_config=spec.action_config)
    what = "run now" if run.kind is RunKind.MANUAL else f"the moment {format_time(run.scheduled_time)}"
    return NewJob(run, render_job(ref, name=run.name, kind=run.kind, scheduled_time=run.scheduled_time, parts=run.parts,
                                  template=template, event_key=run.event_key, event_count=run.event_count,
                                  shard=shard_label(ref.namespace, ref.name, o.shards) if o.shards > 1 else None),
                  Notice("Normal", "JobCreated", f"created Job {run.name} for {what}",
                         routine=run.kind is RunKind.SCHEDULED))


# --- starting -----------------------------------------------------------------------------------

def start_run(o: Observed, d: Draft, spec: TriggerSpec, template: Mapping[str, Any], run: ActiveRun, *,
              announced: bool = False) -> None:
    """Lists the run in ``status.active`` and drafts its Job; a name held by someone else's Job
    fails the run at once. ``announced``: its create may go first (`announced`)."""
    d.status = d.status.with_run_started(run)
    holder = o.jobs.get(run.name)
    if holder is not None and holder.exists and not o.ours(holder):
        if holder.deletion_begun:  # going away (a deleted namesake's): the run waits for the name
            d.wake(run.fired_at + CREATE_GRACE + EPSILON)
            return
        finish_run(o, d, spec, run, Outcome.FAILED, None, stranger_message(holder))
        return
    d.create.append(dataclasses.replace(render(o, spec, template, run), announced=announced))


# --- the announced moment -------------------------------------------------------------------------

def announced_job(trigger: TriggerView) -> tuple[str, dt.datetime] | None:
    """The run the stored status announces (its Job's name and moment): ``nextScheduledAt`` of a
    status a cron or interval Trigger's pass wrote (its ``observedSchedule`` says so), while the
    cursor has not reached it. Every guarded write that moves the schedule writes it. Read from the
    stored status, not the live spec: a run announced, then created first as the type was edited
    (cron -> event), is still adopted. (Event and compound Triggers keep their cooldown's end there,
    written with their own observedSchedule: no run.)"""
    stored = trigger.status
    if trigger.status_error is not None or not time_based_fingerprint(stored.observed_schedule):
        return None
    moment, cursor = stored.next_scheduled_at, stored.last_schedule_time
    if moment is None or (cursor is not None and moment <= cursor):
        return None
    return scheduled_job_name(trigger.name, moment), moment


def announced(o: Observed) -> tuple[str, dt.datetime] | None:
    return announced_job(o.trigger)


def goes_first(o: Observed, moment: dt.datetime) -> bool:
    """Whether the run of ``moment``, starting now, may be created before the pass's status write:
    the stored status announced it, and it is due no longer than ``create_within`` ago (the shell
    sends it within ``create_within`` of the moment, or not at all: rule 4 then holds as for a
    create decided before its Job existed). The shell sends it first only on a copy its own write
    produced, owned since (controller/reconciler.py); on any other copy the write goes first."""
    ahead = announced(o)
    return (o.create_within is not None and ahead is not None and ahead[1] == moment
            and dt.timedelta(0) <= o.now - moment <= o.create_within)


def unlisted_announced_run(o: Observed, d: Draft) -> ActiveRun | None:
    """The announced run if a Job of ours holds its name and status lists it nowhere, neither
    active nor among the runs counted: its create went first and the write listing it did not land
    (a crash, a conflict). The cursor had not reached the moment, so it was never counted. Adopted by
    `core.firing.schedule.adopt_announced`, which also moves the cursor to it."""
    ahead = announced(o)
    if ahead is None:
        return None
    name, moment = ahead
    job = o.jobs.get(name)
    if job is None or not o.ours(job):  # gone since: its last state is what it did
        return None
    if any(r.name == name for r in d.status.active) or any(e.name == name for e in d.status.recent_executions):
        return None
    return ActiveRun(name=name, kind=RunKind.SCHEDULED, scheduled_time=moment, fired_at=job.created_at or o.now)


def keep_announcement(o: Observed, d: Draft) -> None:
    """An announcement whose moment has come, withdrawn by this pass (paused, edited, deleted) with
    no Job of its run known and the cursor still before it, stands until ``name_hold`` after the
    moment: a create decided on it (by a replica that had not seen the edit) may still be on its
    way, and its Job must be found and listed (`core.firing.schedule.adopt_announced`). Then the
    shell reads the Job once before the withdrawal (controller/reconciler.py): the pass decides on
    what that read found. A moment the pass handled (run, skipped, adopted) moved the cursor: its
    announcement is over."""
    ahead = announced(o)
    if ahead is None:
        return
    name, moment = ahead
    cursor = d.status.last_schedule_time
    if o.now < moment or d.status.next_scheduled_at == moment or name in o.jobs:
        return
    if (cursor is not None and cursor >= moment) or any(r.name == name for r in d.status.active):
        return
    if o.now < moment + o.name_hold:
        # After a type edit (cron -> event) the schedule recorded stays with it: it is what makes
        # the stored status an announcement (`announced_job`); the new type's takes over after.
        recorded = d.status.observed_schedule if time_based_fingerprint(d.status.observed_schedule) \
            else o.trigger.status.observed_schedule
        d.status = replace(d.status, next_scheduled_at=moment, observed_schedule=recorded)
        d.wake(moment + o.name_hold + EPSILON)


def running(o: Observed, d: Draft) -> list[str]:
    """Runs still going: listed active, or our Jobs not finished (e.g. replaced, not yet gone).
    Backfill runs are not among them: they have their own bound (core/firing/backfill.py)."""
    active = [r.name for r in d.status.active]
    return [r.name for r in d.status.active if r.kind is not RunKind.BACKFILL] + [
        j.name for j in o.jobs.values()
        if o.ours(j) and not j.finished and not j.deletion_begun and j.name not in active]


def make_room(o: Observed, d: Draft, spec: TriggerSpec) -> str | None:
    """Makes room for a new run as concurrencyPolicy says (core/concurrency.py): under Replace
    queues the running runs' deletes and counts them Replaced; returns the run that forbids a
    new one under Forbid, else None."""
    room_for = room(spec.concurrency_policy, running(o, d))
    if room_for.replace:
        _replace_running(o, d, spec)
    return room_for.blocker


def _replace_running(o: Observed, d: Draft, spec: TriggerSpec) -> None:
    for run in [r for r in d.status.active if r.kind is not RunKind.BACKFILL]:
        d.delete.append(run.name)
        finish_run(o, d, spec, run, Outcome.REPLACED, o.jobs.get(run.name), None)
    # Running Jobs that are no active run are deleted by `prune`, which runs on every pass.
    # A replaced run whose Job was about to be created again must not be created at all.
    d.create = [new for new in d.create if new.run.name not in d.delete]


# --- finishing ----------------------------------------------------------------------------------

def fold_finished_runs(o: Observed, d: Draft, spec: TriggerSpec | None,
                       recreate: Callable[[ActiveRun], NewJob] | None) -> None:
    """Counts every finished run once. A run whose Job was never seen is created again within
    the grace time (``recreate``), then recorded as Lost; a name held by someone else's Job
    fails the run, unless that Job is being deleted (a deleted namesake's, e.g. created first for
    it as it was deleted and re-created): the run waits for the name, within the same grace (its
    deletion brings a pass); a Job deleted while running failed; one that vanished unseen is Lost. An
    announced run whose Job exists unlisted was listed before (`core.firing.schedule.adopt_announced`)."""
    for run in sorted(d.status.active, key=lambda r: r.fired_at):
        job = o.jobs.get(run.name)
        name_taken = False
        if job is not None and not o.ours(job):
            if job.exists and not job.deletion_begun:
                finish_run(o, d, spec, run, Outcome.FAILED, None, stranger_message(job))
                continue
            name_taken, job = job.exists, None
        if job is None:
            if o.now - run.fired_at <= CREATE_GRACE:
                if recreate is not None and not name_taken:
                    d.create.append(recreate(run))
                d.wake(run.fired_at + CREATE_GRACE + EPSILON)
            else:
                finish_run(o, d, spec, run, Outcome.LOST, None,
                           f"Job {run.name} was not seen within {int(CREATE_GRACE.total_seconds())} s of "
                           "the run's start: it could not be created, or was deleted with its "
                           "finalizer removed by hand")
        elif job.finished:
            outcome = Outcome.SUCCEEDED if job.phase is JobPhase.SUCCEEDED else Outcome.FAILED
            finish_run(o, d, spec, run, outcome, job, job.message if outcome is Outcome.FAILED else None)
        elif job.presence is Presence.VANISHED:
            finish_run(o, d, spec, run, Outcome.LOST, job,
                       f"Job {run.name} disappeared while running and its end was never seen")
        elif job.deletion_begun:
            finish_run(o, d, spec, run, Outcome.FAILED, job, f"Job {run.name} was deleted before it finished")


def finish_run(o: Observed, d: Draft, spec: TriggerSpec | None, run: ActiveRun, outcome: Outcome,
               job: JobView | None, error: str | None) -> None:
    """Counts the run (it leaves ``active`` in the same change) and drafts its Event. ``spec`` is
    None when it is invalid: a condition run then only clears the value it fired on."""
    finished_at = (job.finished_at if job and job.finished_at else None) or o.now
    execution = Execution(name=run.name, kind=run.kind, scheduled_time=run.scheduled_time, outcome=outcome,
                          finished_at=finished_at, started_at=job.started_at if job else None, error=error)
    streak_before = d.status.consecutive_failures
    counted = d.status.with_run_finished(execution)
    if counted is not d.status:
        d.finished.append(execution)
    d.status = counted
    if run.kind is RunKind.CONDITION:
        d.status = (run_finished(d.status, spec, outcome is Outcome.SUCCEEDED, finished_at)
                    if spec is not None else replace(d.status, condition_fired_value=None))
    if outcome is Outcome.SUCCEEDED:
        d.notices.append(Notice("Normal", "JobSucceeded", f"Job {run.name} succeeded",
                                routine=run.kind is RunKind.SCHEDULED and streak_before == 0))
    elif outcome is Outcome.FAILED:
        d.notice("Warning", "JobFailed", f"Job {run.name} failed: {error}")
    elif outcome is Outcome.LOST:
        d.notice("Warning", "JobLost", error or run.name)
    else:
        d.notice("Normal", "JobReplaced", f"Job {run.name} was replaced by a newer run")


# --- history and finalizers ---------------------------------------------------------------------

def prune(o: Observed, d: Draft, spec: TriggerSpec) -> None:
    """Deletes our finished Jobs beyond the history limits (and, under Replace, unfinished strays)."""
    counted = {r.name for r in d.status.active}
    ours = [j for j in o.jobs.values() if o.ours(j) and j.presence is Presence.EXISTS]
    if deletes_unfinished_strays(spec.concurrency_policy):
        d.delete.extend(j.name for j in ours if not j.finished and j.name not in counted)
    finished = [j for j in ours if j.finished and j.name not in counted]
    d.delete.extend(jobs_to_prune(finished, successful_limit=spec.successful_jobs_history_limit,
                                  failed_limit=spec.failed_jobs_history_limit))


class Releases(NamedTuple):
    free: tuple[str, ...]  # Jobs whose finalizer may go now
    proven: frozenset[str]  # of those, ours that the stored recentExecutions shows counted
    hold_ends_at: dt.datetime | None  # the first end of a name hold no later pass would come for


def releases(o: Observed, d: Draft) -> Releases:
    """Jobs that may go now: others', and ours whose result status holds (no longer active) once
    they are ``name_hold`` old. Until then a Job keeps its run's name taken, even deleted: a
    replica that decided to create it (its pass began before the Job existed) sends that create
    within the shell's ``create_within`` or not at all, so it meets AlreadyExists rather than
    running the moment a second time. Jobs live longer than that as a rule, so this holds back
    only fast ones (history limit 0, a TTL of 0, Replace); a deleted one brings a pass back."""
    active = {r.name for r in d.status.active}
    counted = {e.name for e in o.trigger.status.recent_executions}  # as stored, not as this pass writes
    free: list[str] = []
    proven: set[str] = set()
    hold_ends: list[dt.datetime] = []
    for job in o.jobs.values():
        ours = o.ours(job)
        if not (job.finalized and job.exists) or (ours and job.name in active):
            continue
        held_until = job.created_at + o.name_hold if ours and job.created_at is not None else None
        if held_until is not None and o.now < held_until:
            if job.deletion_begun or job.name in d.delete:  # no later pass may come to release it
                hold_ends.append(held_until)
            continue
        free.append(job.name)
        if ours and job.name in counted:
            proven.add(job.name)
    return Releases(tuple(sorted(free)), frozenset(proven), min(hold_ends, default=None))
