"""The run ledger of one pass: runs start (listed in ``status.active``, a Job to create), finish
(counted once into ``recentExecutions``), make room for each other (concurrencyPolicy, from
core/concurrency.py), and their Jobs are pruned and released. Pure.

A finished run leaves ``active`` in the same write that counts it, so no result is counted twice
or lost, however often the operator restarts or however many replicas act at once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, NamedTuple

from trigger_operator.conditions.evaluate import run_finished
from trigger_operator.core.concurrency import deletes_unfinished_strays, room
from trigger_operator.core.plan import Draft, NewJob, Observed
from trigger_operator.jobs.observe import JobPhase, JobView, Presence, jobs_to_prune
from trigger_operator.jobs.render import TriggerRef, render_job
from trigger_operator.model.notice import Notice
from trigger_operator.model.spec import TriggerSpec
from trigger_operator.model.status import ActiveRun, Execution, Outcome, RunKind, format_time

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
                                  template=template, event_key=run.event_key, event_count=run.event_count),
                  Notice("Normal", "JobCreated", f"created Job {run.name} for {what}",
                         routine=run.kind is RunKind.SCHEDULED))


# --- starting -----------------------------------------------------------------------------------

def start_run(o: Observed, d: Draft, spec: TriggerSpec, template: Mapping[str, Any], run: ActiveRun) -> None:
    """Lists the run in ``status.active`` and drafts its Job; a name held by someone else's Job
    fails the run at once."""
    d.status = d.status.with_run_started(run)
    holder = o.jobs.get(run.name)
    if holder is not None and holder.exists and not o.ours(holder):
        finish_run(o, d, spec, run, Outcome.FAILED, None, stranger_message(holder))
        return
    d.create.append(render(o, spec, template, run))


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
    fails the run; a Job deleted while running failed; one that vanished unseen is Lost."""
    for run in sorted(d.status.active, key=lambda r: r.fired_at):
        job = o.jobs.get(run.name)
        if job is not None and not o.ours(job):
            if job.exists:
                finish_run(o, d, spec, run, Outcome.FAILED, None, stranger_message(job))
                continue
            job = None
        if job is None:
            if o.now - run.fired_at <= CREATE_GRACE:
                if recreate is not None:
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
