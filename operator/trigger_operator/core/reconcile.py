"""The controller's brain: given a Trigger, its Jobs and the time, decide what to do. Pure.

``reconcile`` returns a `Plan`: the status to write, the Jobs to create and delete, the Kubernetes
Events to post and when to look again. The shell (``scheduler``) writes the status *first*, with
the new runs listed in ``status.active``, and creates the Jobs after: a crash in between leaves a
run in ``active`` with no Job, which the next pass creates (the Job name makes that idempotent).
A finished run leaves ``active`` in the same write that counts it, so no result is counted twice
or lost, however often the operator restarts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from trigger_operator.jobs.observe import JobView, jobs_to_prune
from trigger_operator.jobs.render import (
    ANNOTATION_RESUME,
    ANNOTATION_RUN_NOW,
    TriggerRef,
    manual_job_name,
    render_job,
    scheduled_job_name,
    template_problem,
)
from trigger_operator.model.spec import (
    ConcurrencyPolicy,
    SpecError,
    State,
    TriggerSpec,
    parse_spec,
    schedule_fingerprint,
    time_schedule,
)
from trigger_operator.model.status import (
    ActiveRun,
    Condition,
    Execution,
    Outcome,
    Phase,
    RunKind,
    TriggerStatus,
    format_time,
)
from trigger_operator.schedule.due import due

# A run listed in status.active whose Job does not exist is created again within this time of being
# fired (the crash window between the status write and the Job create). Later, the Job is taken to
# have come and gone unseen, and the run is recorded as Lost rather than run twice.
CREATE_GRACE = dt.timedelta(minutes=5)
_EPSILON = dt.timedelta(microseconds=1)


@dataclass(frozen=True)
class TriggerView:
    """The parts of a Trigger object that the decision needs."""

    namespace: str
    name: str
    uid: str
    generation: int
    created_at: dt.datetime
    annotations: Mapping[str, str]
    spec: Mapping[str, Any]
    status: TriggerStatus


@dataclass(frozen=True)
class Notice:
    """A Kubernetes Event to post on the Trigger. Reasons are stable CamelCase words."""

    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class NewJob:
    run: ActiveRun
    manifest: dict[str, Any]


@dataclass(frozen=True)
class Plan:
    status: TriggerStatus
    create: tuple[NewJob, ...] = ()
    delete: tuple[str, ...] = ()
    notices: tuple[Notice, ...] = ()
    wake_at: dt.datetime | None = None


def resolve_template(spec: TriggerSpec, catalog: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Any]:
    """The Job template for a Trigger: its own ``jobTemplate``, else its action type's from the
    admin's catalog. Raises `SpecError` naming the field when there is none, or it is unusable."""
    if spec.job_template is not None:
        template: Mapping[str, Any] = spec.job_template
        field = "spec.jobTemplate"
    elif spec.action_type.value in catalog:
        template = catalog[spec.action_type.value]
        field = "spec.actionType"
    else:
        raise SpecError("spec.actionType", f"no Job template for action type {spec.action_type.value!r}: "
                        "the cluster admin adds one to the actions ConfigMap, or set spec.jobTemplate")
    problem = template_problem(template)
    if problem:
        where = "" if field == "spec.jobTemplate" else f" (the actions ConfigMap's {spec.action_type.value!r} template)"
        raise SpecError(field, f"the Job template{where} {problem}")
    return template


def reconcile(trigger: TriggerView, jobs: Mapping[str, JobView], catalog: Mapping[str, Mapping[str, Any]],
              now: dt.datetime) -> Plan:
    p = _Pass(trigger, jobs, now)
    try:
        spec = parse_spec(dict(trigger.spec))
        template = resolve_template(spec, catalog)
    except SpecError as error:
        p.fold_finished_runs(None)
        return p.invalid(str(error))
    p.fold_finished_runs(lambda run: p.render(spec, template, run))
    phase = p.settle_phase(spec)
    if phase is Phase.ACTIVE and spec.is_time_based():
        p.run_due_moments(spec, template)
    else:
        p.status = replace(p.status, next_scheduled_at=None)
    p.run_now(spec, template, refuse=phase is Phase.DISABLED)
    p.prune(spec)
    return p.finish(phase, spec)


class _Pass:
    """One reconcile pass: a working copy of the status plus what to do. Internal to `reconcile`."""

    def __init__(self, trigger: TriggerView, jobs: Mapping[str, JobView], now: dt.datetime) -> None:
        self.trigger = trigger
        self.jobs = jobs
        self.now = now
        self.status = trigger.status
        self.create: list[NewJob] = []
        self.delete: list[str] = []
        self.notices: list[Notice] = []
        self.wake_at: dt.datetime | None = None
        self.ref: TriggerRef | None = None

    def notice(self, type_: str, reason: str, message: str) -> None:
        self.notices.append(Notice(type_, reason, message))

    def wake(self, at: dt.datetime | None) -> None:
        if at is not None and (self.wake_at is None or at < self.wake_at):
            self.wake_at = at

    def render(self, spec: TriggerSpec, template: Mapping[str, Any], run: ActiveRun) -> NewJob:
        ref = TriggerRef(namespace=self.trigger.namespace, name=self.trigger.name, uid=self.trigger.uid,
                         action_type=spec.action_type.value, action_config=spec.action_config)
        return NewJob(run, render_job(ref, name=run.name, kind=run.kind, scheduled_time=run.scheduled_time,
                                      template=template))

    # --- results ------------------------------------------------------------------------------

    def fold_finished_runs(self, recreate: Callable[[ActiveRun], NewJob] | None) -> None:
        """Counts every finished run once; records the uid of a run's Job when first seen; creates
        again a run whose Job was never seen, within the grace time; records as Lost a run whose
        Job was seen and is gone unseen (deleted by TTL or by hand while the operator was away),
        or was never seen for longer than the grace time."""
        for run in sorted(self.status.active, key=lambda r: r.fired_at):
            job = self.jobs.get(run.name)
            if job is not None and run.job_uid is not None and job.uid not in (None, run.job_uid):
                job = None  # a namesake made by someone else: ours is gone
            if job is not None and run.job_uid is None and job.uid is not None:
                self.status = self.status.with_job_seen(run.name, job.uid)
            if job is None and run.job_uid is not None:
                self.finish_run(run, Outcome.LOST, None,
                                f"Job {run.name} was deleted before its result was seen")
            elif job is None:
                if self.now - run.fired_at <= CREATE_GRACE and recreate is not None:
                    self.create.append(recreate(run))
                    self.wake(run.fired_at + CREATE_GRACE + _EPSILON)
                elif self.now - run.fired_at > CREATE_GRACE:
                    self.finish_run(run, Outcome.LOST, None,
                                    f"Job {run.name} disappeared before its result was seen")
                else:
                    self.wake(run.fired_at + CREATE_GRACE + _EPSILON)
            elif job.finished:
                outcome = Outcome.SUCCEEDED if job.phase.value == "Succeeded" else Outcome.FAILED
                self.finish_run(run, outcome, job, job.message if outcome is Outcome.FAILED else None)
            elif job.deleted:
                self.finish_run(run, Outcome.FAILED, job, f"Job {run.name} was deleted before it finished")

    def finish_run(self, run: ActiveRun, outcome: Outcome, job: JobView | None, error: str | None) -> None:
        finished_at = (job.finished_at if job and job.finished_at else None) or self.now
        self.status = self.status.with_run_finished(Execution(
            name=run.name, kind=run.kind, scheduled_time=run.scheduled_time, outcome=outcome,
            finished_at=finished_at, started_at=job.started_at if job else None, error=error))
        if outcome is Outcome.SUCCEEDED:
            self.notice("Normal", "JobSucceeded", f"Job {run.name} succeeded")
        elif outcome is Outcome.FAILED:
            self.notice("Warning", "JobFailed", f"Job {run.name} failed: {error}")
        elif outcome is Outcome.LOST:
            self.notice("Warning", "JobLost", error or run.name)
        else:
            self.notice("Normal", "JobReplaced", f"Job {run.name} was replaced by a newer run")

    # --- phase ----------------------------------------------------------------------------------

    def settle_phase(self, spec: TriggerSpec) -> Phase:
        s = self.status
        previous = s.phase
        resume_token = self.trigger.annotations.get(ANNOTATION_RESUME)
        if resume_token and resume_token != s.last_resume_token:
            s = replace(s, last_resume_token=resume_token)
            if previous is Phase.FAILED:
                s = replace(s, failed_at_generation=None, consecutive_failures=0)
        if previous is Phase.FAILED and s.failed_at_generation is not None \
                and self.trigger.generation > s.failed_at_generation:
            s = replace(s, failed_at_generation=None, consecutive_failures=0)  # the spec was edited

        wanted = {State.ACTIVE: Phase.ACTIVE, State.PAUSED: Phase.PAUSED, State.DISABLED: Phase.DISABLED}[spec.state]
        phase = wanted
        if wanted is Phase.ACTIVE:
            if s.failed_at_generation is not None:
                phase = Phase.FAILED
            elif 0 < spec.max_consecutive_failures <= s.consecutive_failures:
                phase = Phase.FAILED
                s = replace(s, failed_at_generation=self.trigger.generation)
                self.notice("Warning", "FailureLimitReached",
                            f"{s.consecutive_failures} consecutive failures (maxConsecutiveFailures is "
                            f"{spec.max_consecutive_failures}): the Trigger stops until it is edited or "
                            f"annotated {ANNOTATION_RESUME}=<new token>")
        fingerprint = schedule_fingerprint(spec)
        changed = s.observed_schedule is not None and fingerprint != s.observed_schedule
        if phase is Phase.ACTIVE and (previous is not Phase.ACTIVE or s.active_since is None or changed):
            # Becoming active (created, resumed, un-failed, fixed) or given a new schedule: moments
            # before now are not caught up (the old schedule's cursor says nothing of the new one).
            since = self.trigger.created_at if previous is None else self.now.replace(microsecond=0)
            s = replace(s, active_since=since)
        if changed:
            self.notice("Normal", "ScheduleChanged", f"schedule is now {fingerprint}; it starts afresh from now")
        s = replace(s, observed_schedule=fingerprint)
        if previous is not None and previous is not phase:
            self.notice("Normal" if phase is not Phase.FAILED else "Warning", "PhaseChanged",
                        f"phase {previous.value} -> {phase.value}")
        self.status = replace(s, phase=phase)
        return phase

    # --- scheduled runs -------------------------------------------------------------------------

    def run_due_moments(self, spec: TriggerSpec, template: Mapping[str, Any]) -> None:
        s = self.status
        since = s.active_since or self.trigger.created_at
        cursor = s.last_schedule_time
        earliest = max(cursor, since) if cursor is not None else since
        first_run = cursor is None
        schedule = time_schedule(spec, origin=earliest, first_run=first_run)
        assert schedule is not None
        # startImmediately makes the origin itself a moment, so look from just before it.
        look_from = earliest - _EPSILON if first_run else earliest
        d = due(schedule, earliest=look_from, now=self.now, deadline=spec.starting_deadline,
                policy=spec.catch_up_policy)
        if d.missed:
            self.status = replace(self.status, missed_runs=self.status.missed_runs + d.missed)
            self.notice("Warning", "MissedSchedule",
                        f"{d.missed} scheduled moment(s) passed without a run (catchUpPolicy "
                        f"{spec.catch_up_policy.value}, startingDeadlineSeconds {spec.starting_deadline_seconds})")
        moments = d.run
        if spec.concurrency_policy is ConcurrencyPolicy.REPLACE and len(moments) > 1:
            # Each run would replace the one before it at once: start only the last.
            self.status = replace(self.status, skipped_runs=self.status.skipped_runs + len(moments) - 1)
            moments = moments[-1:]
        for moment in moments:
            self.start_scheduled_run(spec, template, moment)
        if d.cursor is not None:
            self.status = replace(self.status, last_schedule_time=d.cursor)
        following = schedule.next_after(d.cursor if d.more and d.cursor else max(self.now, d.cursor or self.now))
        self.status = replace(self.status, next_scheduled_at=following)
        self.wake(self.now if d.more else following)

    def start_scheduled_run(self, spec: TriggerSpec, template: Mapping[str, Any], moment: dt.datetime) -> None:
        name = scheduled_job_name(self.trigger.name, moment)
        if any(r.name == name for r in self.status.active):
            return
        active = [r.name for r in self.status.active]
        running = active + [j.name for j in self.jobs.values()
                            if not j.finished and not j.deleted and j.name not in active]
        if running and spec.concurrency_policy is ConcurrencyPolicy.FORBID:
            self.status = replace(self.status, skipped_runs=self.status.skipped_runs + 1)
            self.notice("Normal", "RunSkipped", f"skipped the run for {format_time(moment)}: Job "
                        f"{running[0]} is still running (concurrencyPolicy Forbid)")
            return
        if running and spec.concurrency_policy is ConcurrencyPolicy.REPLACE:
            for run in list(self.status.active):
                self.delete.append(run.name)
                self.finish_run(run, Outcome.REPLACED, self.jobs.get(run.name), None)
            # Running Jobs that are no active run are deleted by `prune`, which runs on every pass.
            # A replaced run whose Job was about to be created again must not be created at all.
            self.create = [new for new in self.create if new.run.name not in self.delete]
        self.start_run(spec, template, ActiveRun(name=name, kind=RunKind.SCHEDULED, scheduled_time=moment,
                                                 fired_at=self.now))

    def start_run(self, spec: TriggerSpec, template: Mapping[str, Any], run: ActiveRun) -> None:
        self.status = self.status.with_run_started(run)
        self.create.append(self.render(spec, template, run))
        what = "run now" if run.kind is RunKind.MANUAL else f"the moment {format_time(run.scheduled_time)}"
        self.notice("Normal", "JobCreated", f"created Job {run.name} for {what}")

    def run_now(self, spec: TriggerSpec, template: Mapping[str, Any], *, refuse: bool) -> None:
        """One Job per new run-now token. A token given while the Trigger is disabled is used up
        without a run, so that enabling it later does not start a run nobody asked for then."""
        token = self.trigger.annotations.get(ANNOTATION_RUN_NOW)
        if not token or token == self.status.last_run_now_token:
            return
        self.status = replace(self.status, last_run_now_token=token)
        if refuse:
            self.notice("Warning", "RunNowRefused", f"run-now token {token!r} ignored: the Trigger is disabled")
            return
        name = manual_job_name(self.trigger.name, token)
        if any(r.name == name for r in self.status.active) or name in self.jobs:
            return
        self.start_run(spec, template, ActiveRun(name=name, kind=RunKind.MANUAL,
                                                 scheduled_time=self.now, fired_at=self.now))

    # --- history and conclusion ----------------------------------------------------------------

    def prune(self, spec: TriggerSpec) -> None:
        counted = {r.name for r in self.status.active}
        if spec.concurrency_policy is ConcurrencyPolicy.REPLACE:
            # A replaced Job whose delete was lost (a crash, an API error) is deleted again.
            self.delete.extend(j.name for j in self.jobs.values()
                               if not j.finished and not j.deleted and j.name not in counted)
        finished = [j for j in self.jobs.values() if j.finished and j.name not in counted]
        self.delete.extend(jobs_to_prune(finished, successful_limit=spec.successful_jobs_history_limit,
                                         failed_limit=spec.failed_jobs_history_limit))

    def invalid(self, message: str) -> Plan:
        if message != self.trigger.status.message:
            self.notice("Warning", "InvalidConfiguration", message)
        # active_since is cleared so that, once fixed, the Trigger runs from then on and does not
        # catch up moments from the time it could not run.
        self.status = replace(self.status, message=message, next_scheduled_at=None, active_since=None,
                              phase=self.status.phase or Phase.ACTIVE,
                              observed_generation=self.trigger.generation)
        self.status = self.status.with_condition(self.condition("False", "InvalidSpec", message))
        return self.plan()

    def finish(self, phase: Phase, spec: TriggerSpec) -> Plan:
        message: str | None = None
        if phase is Phase.ACTIVE and not spec.is_time_based():
            reason, state = "AwaitingEventIntake", "False"
            message = (f"{spec.trigger_type.value} Triggers fire once event intake is served by the "
                       "operator; run-now works meanwhile")
        else:
            reason, state = {Phase.ACTIVE: ("Scheduled", "True"), Phase.PAUSED: ("Paused", "False"),
                             Phase.DISABLED: ("Disabled", "False"),
                             Phase.FAILED: ("FailureLimitReached", "False")}[phase]
        if phase is Phase.FAILED:
            message = f"stopped after {self.status.consecutive_failures} consecutive failures"
        self.status = replace(self.status, message=message, observed_generation=self.trigger.generation)
        self.status = self.status.with_condition(self.condition(state, reason, message or reason))
        return self.plan()

    def condition(self, state: str, reason: str, message: str) -> Condition:
        return Condition(type="Ready", status=state, reason=reason, message=message,
                         last_transition_time=self.now.replace(microsecond=0),
                         observed_generation=self.trigger.generation)

    def plan(self) -> Plan:
        return Plan(status=self.status, create=tuple(self.create), delete=tuple(dict.fromkeys(self.delete)),
                    notices=tuple(self.notices), wake_at=self.wake_at)

