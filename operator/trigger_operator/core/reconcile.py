"""The controller's brain: given a Trigger, its Jobs and the time, decide what to do. Pure.

``reconcile`` returns a `Plan`: the status patch to write, the Jobs to create, delete and release
(remove our finalizer from), the Kubernetes Events to post and when to look again. The shell
(``controller``) carries it out in this order, and only on a copy of the Trigger confirmed current
(its status write succeeded with a resourceVersion precondition, or a fresh read found the same
resourceVersion):

1. the status patch, listing new runs in ``status.active`` before their Jobs exist: a crash after it
   leaves a run with no Job, which a later pass creates (the Job name makes that idempotent);
2. releases: a Job keeps our finalizer until its result is in status, so it cannot vanish unseen,
   and until it is ``name_hold`` old, so that its name stays taken while a replica that stalled
   between deciding a create and sending it could still send it (see `_Pass.releases`);
3. deletes (``Replace``, history), then creates.

A finished run leaves ``active`` in the same write that counts it, so no result is counted twice
or lost, however often the operator restarts or however many replicas act at once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from trigger_operator.api import ANNOTATION_RESUME, ANNOTATION_RUN_NOW
from trigger_operator.conditions.evaluate import (
    NO_CHECKS,
    OwnChecks,
    announce,
    evaluate,
    fired,
    interrupted,
    last_measurement,
    next_check_at,
    run_finished,
)
from trigger_operator.conditions.measure import Reading, Value
from trigger_operator.core.concurrency import (
    condition_run_waits,
    deletes_unfinished_strays,
    moments_to_start,
    room,
)
from trigger_operator.events.counting import next_expiry, refresh_window, spend_threshold
from trigger_operator.jobs.catalog import Sources, TemplateMissing, default_source, resolve_template
from trigger_operator.jobs.observe import JobPhase, JobView, Presence, jobs_to_prune
from trigger_operator.jobs.render import (
    TriggerRef,
    condition_job_name,
    event_job_name,
    manual_job_name,
    render_job,
    scheduled_job_name,
)
from trigger_operator.model.notice import Notice
from trigger_operator.model.spec import (
    ConditionSource,
    SpecError,
    State,
    TriggerSpec,
    TriggerType,
    never_fires,
    parse_spec,
    same_schedule,
    schedule_fingerprint,
    time_schedule,
)
from trigger_operator.model.status import (
    MESSAGE_MAX_CHARS,
    STATUS_MAX_BYTES,
    ActiveRun,
    Condition,
    Execution,
    Outcome,
    Phase,
    ReadyReason,
    RunKind,
    TriggerStatus,
    cut,
    format_time,
    status_patch,
    token_hash,
)
from trigger_operator.model.trigger import TriggerView
from trigger_operator.timemath.due import due

# A run listed in status.active whose Job does not exist is created again within this time of being
# fired (the crash window between the status write and the Job create, and API errors on create).
# Later it is recorded as Lost rather than run at a time nobody expects.
CREATE_GRACE = dt.timedelta(minutes=5)
_EPSILON = dt.timedelta(microseconds=1)


@dataclass(frozen=True)
class NewJob:
    run: ActiveRun
    manifest: dict[str, Any]
    notice: Notice  # posted once the API server has taken the Job, never before


@dataclass(frozen=True)
class Plan:
    status: TriggerStatus
    patch: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # empty: status is as stored
    create: tuple[NewJob, ...] = ()
    delete: tuple[str, ...] = ()
    release: tuple[str, ...] = ()  # Jobs whose result is counted (or not ours): remove our finalizer
    # Of those, the ones whose run this copy's recentExecutions shows counted: a count is never
    # taken back, so a stale copy proves these as well as a current one does.
    release_proven: frozenset[str] = frozenset()
    notices: tuple[Notice, ...] = ()
    wake_at: dt.datetime | None = None
    check: ConditionSource | None = None  # a source due to be read: the shell reads it and passes the reading
    # The source to read is the admin's default from the catalog (filled from actionConfig), not the
    # Trigger's own: it needs no author approval (admission/approval.py, docs/security.md).
    check_is_default: bool = False
    finished: tuple[Execution, ...] = ()  # runs this pass counts (for metrics, once the write is in)

    @property
    def acts(self) -> bool:
        """Whether carrying out the plan touches Jobs in a way that needs a Trigger copy confirmed
        current (a release the copy proves counted does not: it costs no read of the Trigger)."""
        return bool(self.create or self.delete or set(self.release) - self.release_proven)


def stranger_message(job: JobView) -> str:
    owner = f"Trigger uid {job.owner_uid}" if job.owner_uid else "no controller"
    return (f"a Job named {job.name} already exists and does not belong to this Trigger ({owner}): "
            "delete that Job or rename the Trigger")


def reconcile(trigger: TriggerView, jobs: Mapping[str, JobView], catalog: Mapping[str, Mapping[str, Any]],
              now: dt.datetime, reading: Reading | None = None, *,
              name_hold: dt.timedelta = dt.timedelta(0), own_checks: OwnChecks = NO_CHECKS,
              sources: Sources | None = None) -> Plan:
    """The plan for one Trigger. ``jobs`` are the Jobs labelled with its name, as last seen (any owner);
    an active run's Job missing from it was just read from the API server and found absent.
    ``reading`` is a conditional Trigger's latest check of its source, when one was made.
    ``name_hold``: how old a Job of ours must be before our finalizer comes off (the shell's setting).
    ``own_checks``: what this process knows of its own checks of the source (conditions/evaluate.py).
    ``sources``: the catalog's default condition sources, for conditional Triggers that name none.

    A plan whose status patch would be larger than `STATUS_MAX_BYTES` as JSON is decided again
    with the reading's values dropped, as a failed check that says so: status is no store for
    whatever a source answered, and an oversized write would be refused again at every pass."""
    sources = sources or {}
    plan = _reconcile(trigger, jobs, catalog, now, reading, name_hold, own_checks, sources)
    if reading is not None and reading.error is None and plan.patch:
        size = len(json.dumps(plan.patch, separators=(",", ":")))
        if size > STATUS_MAX_BYTES:
            error = (f"the value is too large to keep in status (a status write of {size} bytes; at most "
                     f"{STATUS_MAX_BYTES}): the reading was dropped")
            plan = _reconcile(trigger, jobs, catalog, now, dataclasses.replace(reading, raw=None, error=error),
                              name_hold, own_checks, sources)
    return plan


def _reconcile(trigger: TriggerView, jobs: Mapping[str, JobView], catalog: Mapping[str, Mapping[str, Any]],
               now: dt.datetime, reading: Reading | None, name_hold: dt.timedelta, own_checks: OwnChecks,
               sources: Sources) -> Plan:
    p = _Pass(trigger, jobs, now, name_hold, own_checks)
    if trigger.status_error is not None:
        return p.unreadable(trigger.status_error)
    p.take_creation_token()
    try:
        spec = parse_spec(dict(trigger.spec))
        spec = with_default_source(spec, sources, trigger.namespace)
        p.source_is_default = spec.schedule_config.source is not None and "source" not in (
            trigger.spec.get("scheduleConfig") or {})
        template: Mapping[str, Any] | None = resolve_template(spec, catalog)
        missing = None
    except TemplateMissing as error:
        template, missing = None, str(error)
    except SpecError as error:
        p.fold_finished_runs(None)
        return p.invalid(str(error))
    p.spec = spec
    p.fold_finished_runs((lambda run: p.render(spec, template, run)) if template is not None else None)
    phase = p.settle_phase(spec)
    try:
        if phase is Phase.ACTIVE and spec.is_time_based():
            p.run_due_moments(spec, template)
        else:
            p.status = replace(p.status, next_scheduled_at=None)
    except OverflowError as error:  # bounded in the schema; this is the last line of defence
        return p.invalid(f"spec.scheduleConfig: a moment falls outside the calendar ({error})")
    if spec.trigger_type is TriggerType.EVENT:
        p.status = refresh_window(p.status, spec, now)
        p.wake(next_expiry(p.status, spec))
        if phase is Phase.ACTIVE and template is not None:
            p.fire_on_events(spec, template)
    if spec.trigger_type is TriggerType.CONDITIONAL and phase in (Phase.ACTIVE, Phase.PAUSED):
        p.check_condition(spec, template if phase is Phase.ACTIVE else None, reading)
    if template is not None:
        p.run_now(spec, template, refuse=phase is Phase.DISABLED)
    p.prune(spec)
    return p.finish(phase, spec, missing)


def with_default_source(spec: TriggerSpec, sources: Sources, namespace: str) -> TriggerSpec:
    """The spec of a conditional Trigger that names no source, with its action type's default from
    the catalog filled in (jobs/catalog.py; ``{namespace}`` is the Trigger's ``namespace``); any
    other spec as it is. Raises `SpecError` naming ``spec.scheduleConfig.source`` (no default) or
    the actionConfig key that cannot fill it."""
    config = spec.schedule_config
    if spec.trigger_type is not TriggerType.CONDITIONAL or config.source is not None:
        return spec
    assert config.condition_type is not None
    source = default_source(spec.action_type.value, config.condition_type, spec.action_config, sources,
                            namespace=namespace)
    return spec.model_copy(update={"schedule_config": config.model_copy(update={"source": source})})


class _Releases(NamedTuple):
    free: tuple[str, ...]  # Jobs whose finalizer may go now
    proven: frozenset[str]  # of those, ours that the stored recentExecutions shows counted
    hold_ends_at: dt.datetime | None  # the first end of a name hold no later pass would come for


class _Pass:
    """One reconcile pass: a working copy of the status plus what to do. Internal to `reconcile`."""

    def __init__(self, trigger: TriggerView, jobs: Mapping[str, JobView], now: dt.datetime,
                 name_hold: dt.timedelta = dt.timedelta(0), own_checks: OwnChecks = NO_CHECKS) -> None:
        self.trigger = trigger
        self.name_hold = name_hold
        self.own_checks = own_checks
        self.jobs = jobs
        self.now = now
        self.status = trigger.status
        self.create: list[NewJob] = []
        self.delete: list[str] = []
        self.notices: list[Notice] = []
        self.wake_at: dt.datetime | None = None
        self.check: ConditionSource | None = None  # a conditional Trigger's source, due to be read
        self.source_is_default = False  # that source is the catalog's default, not the Trigger's own
        self.finished: list[Execution] = []
        self.spec: TriggerSpec | None = None

    def ours(self, job: JobView) -> bool:
        """The one owner rule: a Job is this Trigger's only if the Trigger (this uid) controls it.
        Jobs of a deleted namesake, orphans and hand-made Jobs with our label are never counted,
        adopted or pruned."""
        return job.owner_uid == self.trigger.uid

    def notice(self, type_: str, reason: str, message: str) -> None:
        self.notices.append(Notice(type_, reason, message))

    def wake(self, at: dt.datetime | None) -> None:
        if at is not None and (self.wake_at is None or at < self.wake_at):
            self.wake_at = at

    def render(self, spec: TriggerSpec, template: Mapping[str, Any], run: ActiveRun) -> NewJob:
        ref = TriggerRef(namespace=self.trigger.namespace, name=self.trigger.name, uid=self.trigger.uid,
                         action_type=spec.action_type.value, action_config=spec.action_config)
        what = "run now" if run.kind is RunKind.MANUAL else f"the moment {format_time(run.scheduled_time)}"
        return NewJob(run, render_job(ref, name=run.name, kind=run.kind, scheduled_time=run.scheduled_time,
                                      template=template),
                      Notice("Normal", "JobCreated", f"created Job {run.name} for {what}",
                             routine=run.kind is RunKind.SCHEDULED))

    # --- results ------------------------------------------------------------------------------

    def take_creation_token(self) -> None:
        """A run-now token the Trigger carries when the operator first sees it is taken as used: a
        manifest re-applied from Git (or re-created by Argo CD) keeps its last token and must not
        run again each time."""
        token = self.trigger.annotations.get(ANNOTATION_RUN_NOW)
        if token and self.trigger.status.phase is None:
            self.status = self.status.with_run_now_token(token_hash(token))

    def fold_finished_runs(self, recreate: Callable[[ActiveRun], NewJob] | None) -> None:
        """Counts every finished run once. A run whose Job was never seen is created again within
        the grace time (``recreate``), then recorded as Lost; a name held by someone else's Job
        fails the run; a Job deleted while running failed; one that vanished unseen is Lost."""
        for run in sorted(self.status.active, key=lambda r: r.fired_at):
            job = self.jobs.get(run.name)
            if job is not None and not self.ours(job):
                if job.exists:
                    self.finish_run(run, Outcome.FAILED, None, stranger_message(job))
                    continue
                job = None
            if job is None:
                if self.now - run.fired_at <= CREATE_GRACE:
                    if recreate is not None:
                        self.create.append(recreate(run))
                    self.wake(run.fired_at + CREATE_GRACE + _EPSILON)
                else:
                    self.finish_run(run, Outcome.LOST, None,
                                    f"Job {run.name} was not seen within {int(CREATE_GRACE.total_seconds())} s of "
                                    "the run's start: it could not be created, or was deleted with its "
                                    "finalizer removed by hand")
            elif job.finished:
                outcome = Outcome.SUCCEEDED if job.phase is JobPhase.SUCCEEDED else Outcome.FAILED
                self.finish_run(run, outcome, job, job.message if outcome is Outcome.FAILED else None)
            elif job.presence is Presence.VANISHED:
                self.finish_run(run, Outcome.LOST, job,
                                f"Job {run.name} disappeared while running and its end was never seen")
            elif job.deleted:
                self.finish_run(run, Outcome.FAILED, job, f"Job {run.name} was deleted before it finished")

    def finish_run(self, run: ActiveRun, outcome: Outcome, job: JobView | None, error: str | None) -> None:
        finished_at = (job.finished_at if job and job.finished_at else None) or self.now
        execution = Execution(name=run.name, kind=run.kind, scheduled_time=run.scheduled_time, outcome=outcome,
                              finished_at=finished_at, started_at=job.started_at if job else None, error=error)
        streak_before = self.status.consecutive_failures
        counted = self.status.with_run_finished(execution)
        if counted is not self.status:
            self.finished.append(execution)
        self.status = counted
        if run.kind is RunKind.CONDITION:
            self.status = (run_finished(self.status, self.spec, outcome is Outcome.SUCCEEDED, finished_at)
                           if self.spec is not None else replace(self.status, condition_fired_value=None))
        if outcome is Outcome.SUCCEEDED:
            self.notices.append(Notice("Normal", "JobSucceeded", f"Job {run.name} succeeded",
                                       routine=run.kind is RunKind.SCHEDULED and streak_before == 0))
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
        changed = s.observed_schedule is not None and not same_schedule(s.observed_schedule, spec)
        if phase is Phase.ACTIVE and (previous is not Phase.ACTIVE or s.active_since is None or changed):
            # Becoming active (created, resumed, un-failed, fixed) or given a new schedule: moments
            # before now are not caught up (the old schedule's cursor says nothing of the new one).
            since = self.trigger.created_at if previous is None else self.now.replace(microsecond=0)
            s = replace(s, active_since=since)
        if changed:
            self.notice("Normal", "ScheduleChanged", f"schedule is now {fingerprint}; it starts afresh from now")
            s = replace(s, baseline_snapshot=None, condition_fired_value=None)  # a new condition: a new baseline
        edited = s.observed_generation is not None and self.trigger.generation > s.observed_generation
        if edited or (resume_token and resume_token != self.trigger.status.last_resume_token):
            s = replace(s, condition_armed=None)  # an edit or a resume re-arms a condition that fired
        s = replace(s, observed_schedule=fingerprint)
        if previous is not None and previous is not phase:
            self.notice("Normal" if phase is not Phase.FAILED else "Warning", "PhaseChanged",
                        f"phase {previous.value} -> {phase.value}")
        self.status = replace(s, phase=phase)
        return phase

    # --- scheduled runs -------------------------------------------------------------------------

    def run_due_moments(self, spec: TriggerSpec, template: Mapping[str, Any] | None) -> None:
        """Runs the moments due now; with no template (the catalog lacks it) runs none and keeps
        the cursor where it is, so the moments due meanwhile are caught up or counted missed later."""
        s = self.status
        since = s.active_since or self.trigger.created_at
        cursor = s.last_schedule_time
        earliest = max(cursor, since) if cursor is not None else since
        first_run = cursor is None
        schedule = time_schedule(spec, origin=earliest, first_run=first_run)
        assert schedule is not None
        if template is None:
            self.status = replace(self.status, next_scheduled_at=schedule.next_after(max(self.now, earliest)))
            return
        # startImmediately makes the origin itself a moment, so look from just before it.
        look_from = earliest - _EPSILON if first_run else earliest
        d = due(schedule, earliest=look_from, now=self.now, deadline=spec.starting_deadline,
                policy=spec.catch_up_policy)
        if d.missed:
            self.status = replace(self.status, missed_runs=self.status.missed_runs + d.missed)
            self.notice("Warning", "MissedSchedule",
                        f"{d.missed} scheduled moment(s) passed without a run (catchUpPolicy "
                        f"{spec.catch_up_policy.value}, startingDeadlineSeconds {spec.starting_deadline_seconds})")
        moments, skipped = moments_to_start(spec.concurrency_policy, d.run)
        if skipped:
            self.status = replace(self.status, skipped_runs=self.status.skipped_runs + skipped)
        for moment in moments:
            self.start_scheduled_run(spec, template, moment)
        if d.cursor is not None:
            self.status = replace(self.status, last_schedule_time=d.cursor)
        following = schedule.next_after(d.cursor if d.more and d.cursor else max(self.now, d.cursor or self.now))
        self.status = replace(self.status, next_scheduled_at=following)
        self.wake(self.now if d.more else following)

    def running(self) -> list[str]:
        """Runs still going: listed active, or our Jobs not finished (e.g. replaced, not yet gone)."""
        active = [r.name for r in self.status.active]
        return active + [j.name for j in self.jobs.values()
                         if self.ours(j) and not j.finished and not j.deleted and j.name not in active]

    def fire_on_events(self, spec: TriggerSpec, template: Mapping[str, Any]) -> None:
        """One run when the counter reaches the threshold and the cooldown has passed; the surplus
        stays counted. Under Forbid a firing waits for the running Job (its end brings the Trigger
        back), rather than spending the events on a skip."""
        s = self.status
        config = spec.schedule_config
        assert config.event_threshold is not None
        if s.event_counter < config.event_threshold:
            return
        ready_at = self.cooling_until(spec)
        if ready_at is not None:
            self.status = replace(s, next_scheduled_at=ready_at)
            self.wake(ready_at)
            return
        if self.make_room(spec) is not None:
            return
        firing = s.event_firings + 1
        self.status = replace(spend_threshold(s, spec), event_firings=firing,
                              last_cooldown_at=self.now.replace(microsecond=0))
        self.start_run(spec, template, ActiveRun(name=event_job_name(self.trigger.name, firing), kind=RunKind.EVENT,
                                                 scheduled_time=self.now, fired_at=self.now))

    def check_condition(self, spec: TriggerSpec, template: Mapping[str, Any] | None, reading: Reading | None) -> None:
        """Takes in a new reading of the source (conditions/evaluate.py has the rule), fires at most one
        run for it, and asks for the next check when it is due (``template`` None: paused, no run)."""
        s = self.status
        if reading is None or (s.last_condition_check_at is not None and reading.at <= s.last_condition_check_at):
            reading = interrupted(s, self.own_checks, self.now)  # a check that died with its process, if any
        if reading is not None:
            check = evaluate(s, spec, reading)
            self.status = check.status
            if check.fire and check.value is not None:
                self.fire_on_condition(spec, template, check.value)
        due = next_check_at(self.status, spec, self.trigger.created_at)
        if due <= self.now:
            self.check = spec.schedule_config.source
            self.status = announce(self.status, self.own_checks, self.now)
        else:
            self.wake(due)

    def fire_on_condition(self, spec: TriggerSpec, template: Mapping[str, Any] | None, value: Value) -> None:
        if template is None or self.cooling_until(spec) is not None:
            return  # stays armed: the next check that finds it still true fires
        if condition_run_waits(spec.concurrency_policy, any(r.kind is RunKind.CONDITION for r in self.status.active)):
            return
        if self.make_room(spec) is not None:
            return
        self.status = fired(self.status, value, self.now)
        name = condition_job_name(self.trigger.name, self.status.condition_firings)
        self.start_run(spec, template, ActiveRun(name=name, kind=RunKind.CONDITION, scheduled_time=self.now,
                                                 fired_at=self.now))

    def make_room(self, spec: TriggerSpec) -> str | None:
        """Makes room for a new run as concurrencyPolicy says (core/concurrency.py): under Replace
        queues the running runs' deletes and counts them Replaced; returns the run that forbids a
        new one under Forbid, else None."""
        room_for = room(spec.concurrency_policy, self.running())
        if room_for.replace:
            self.replace_running()
        return room_for.blocker

    def cooling_until(self, spec: TriggerSpec) -> dt.datetime | None:
        """When the cooldown after the last event or condition run ends, if it has not yet."""
        last, seconds = self.status.last_cooldown_at, spec.schedule_config.cooldown_seconds
        if last is None or not seconds:
            return None
        ends = last + dt.timedelta(seconds=seconds)
        return ends if self.now < ends else None

    def replace_running(self) -> None:
        for run in list(self.status.active):
            self.delete.append(run.name)
            self.finish_run(run, Outcome.REPLACED, self.jobs.get(run.name), None)
        # Running Jobs that are no active run are deleted by `prune`, which runs on every pass.
        # A replaced run whose Job was about to be created again must not be created at all.
        self.create = [new for new in self.create if new.run.name not in self.delete]

    def start_scheduled_run(self, spec: TriggerSpec, template: Mapping[str, Any], moment: dt.datetime) -> None:
        name = scheduled_job_name(self.trigger.name, moment)
        if any(r.name == name for r in self.status.active):
            return
        blocker = self.make_room(spec)
        if blocker is not None:
            self.status = replace(self.status, skipped_runs=self.status.skipped_runs + 1)
            self.notice("Normal", "RunSkipped", f"skipped the run for {format_time(moment)}: Job "
                        f"{blocker} is still running (concurrencyPolicy Forbid)")
            return
        self.start_run(spec, template, ActiveRun(name=name, kind=RunKind.SCHEDULED, scheduled_time=moment,
                                                 fired_at=self.now))

    def start_run(self, spec: TriggerSpec, template: Mapping[str, Any], run: ActiveRun) -> None:
        self.status = self.status.with_run_started(run)
        holder = self.jobs.get(run.name)
        if holder is not None and holder.exists and not self.ours(holder):
            self.finish_run(run, Outcome.FAILED, None, stranger_message(holder))
            return
        self.create.append(self.render(spec, template, run))

    def run_now(self, spec: TriggerSpec, template: Mapping[str, Any], *, refuse: bool) -> None:
        """One Job per new run-now token. Status remembers the last RUN_NOW_TOKENS_KEPT tokens, so
        a token used again (A, B, then A; Argo CD reverting a manual token to Git's) runs nothing.
        A token given while the Trigger is disabled is used up without a run, so that enabling it
        later does not start a run nobody asked for then."""
        token = self.trigger.annotations.get(ANNOTATION_RUN_NOW)
        if not token or token_hash(token) in self.status.run_now_tokens:
            return
        self.status = self.status.with_run_now_token(token_hash(token))
        if refuse:
            self.notice("Warning", "RunNowRefused", f"run-now token {token!r} ignored: the Trigger is disabled")
            return
        name = manual_job_name(self.trigger.name, token)
        job = self.jobs.get(name)
        if any(r.name == name for r in self.status.active) or (job is not None and self.ours(job)):
            return
        self.start_run(spec, template, ActiveRun(name=name, kind=RunKind.MANUAL,
                                                 scheduled_time=self.now, fired_at=self.now))

    # --- history and conclusion ----------------------------------------------------------------

    def prune(self, spec: TriggerSpec) -> None:
        counted = {r.name for r in self.status.active}
        ours = [j for j in self.jobs.values() if self.ours(j) and j.presence is Presence.EXISTS]
        if deletes_unfinished_strays(spec.concurrency_policy):
            self.delete.extend(j.name for j in ours if not j.finished and j.name not in counted)
        finished = [j for j in ours if j.finished and j.name not in counted]
        self.delete.extend(jobs_to_prune(finished, successful_limit=spec.successful_jobs_history_limit,
                                         failed_limit=spec.failed_jobs_history_limit))

    def releases(self) -> _Releases:
        """Jobs that may go now: others', and ours whose result status holds (no longer active) once
        they are ``name_hold`` old. Until then a Job keeps its run's name taken, even deleted: a
        replica that decided to create it (its pass began before the Job existed) sends that create
        within the shell's ``create_within`` or not at all, so it meets AlreadyExists rather than
        running the moment a second time. Jobs live longer than that as a rule, so this holds back
        only fast ones (history limit 0, a TTL of 0, Replace); a deleted one brings a pass back."""
        active = {r.name for r in self.status.active}
        counted = {e.name for e in self.trigger.status.recent_executions}  # as stored, not as this pass writes
        free: list[str] = []
        proven: set[str] = set()
        hold_ends: list[dt.datetime] = []
        for job in self.jobs.values():
            ours = self.ours(job)
            if not (job.finalized and job.exists) or (ours and job.name in active):
                continue
            held_until = job.created_at + self.name_hold if ours and job.created_at is not None else None
            if held_until is not None and self.now < held_until:
                if job.deleted or job.name in self.delete:  # no later pass may come to release it
                    hold_ends.append(held_until)
                continue
            free.append(job.name)
            if ours and job.name in counted:
                proven.add(job.name)
        return _Releases(tuple(sorted(free)), frozenset(proven), min(hold_ends, default=None))

    def unreadable(self, error: str) -> Plan:
        """Nothing runs and nothing is counted: guessing would reset counters and the schedule
        position and could run or count a moment again. A person decides how to go on."""
        t = self.trigger
        # The parse error may quote the broken value at length: cut it, so the way out stays whole.
        message = cut(f"{cut(error, MESSAGE_MAX_CHARS // 2)}. Nothing runs until the status can be read. "
                      "To start afresh (counters, schedule position and used run-now tokens reset, a moment "
                      f"due now may run): kubectl patch trigger {t.name} -n {t.namespace} --subresource=status "
                      "--type=json -p '[{\"op\":\"remove\",\"path\":\"/status\"}]'")
        stored = t.raw_status or {}
        ready = [c for c in stored.get("conditions") or [] if isinstance(c, Mapping) and c.get("type") == "Ready"]
        if ready and ready[0].get("reason") == ReadyReason.STATUS_UNREADABLE and ready[0].get("message") == message:
            return Plan(status=self.status)
        condition = self.condition("False", ReadyReason.STATUS_UNREADABLE, message)
        patch = {"message": message, "observedGeneration": t.generation,
                 "conditions": TriggerStatus(conditions=(condition,)).to_dict()["conditions"]}
        return Plan(status=self.status, patch=patch,
                    notices=(Notice("Warning", ReadyReason.STATUS_UNREADABLE.value, message),))

    def invalid(self, message: str) -> Plan:
        message = cut(message)  # as status keeps it, so the stored one compares equal
        if message != self.trigger.status.message:
            self.notice("Warning", "InvalidConfiguration", message)
        # active_since is cleared so that, once fixed, the Trigger runs from then on and does not
        # catch up moments from the time it could not run.
        self.status = replace(self.status, message=message, next_scheduled_at=None, active_since=None,
                              phase=Phase.INVALID, observed_generation=self.trigger.generation)
        self.status = self.status.with_condition(self.condition("False", ReadyReason.INVALID_SPEC, message))
        return self.plan()

    def finish(self, phase: Phase, spec: TriggerSpec, missing_template: str | None) -> Plan:
        message: str | None = None
        state = "False"
        if phase is Phase.ACTIVE and missing_template is not None:
            reason, message = ReadyReason.ACTION_TEMPLATE_MISSING, missing_template
        elif phase is Phase.ACTIVE and spec.trigger_type is TriggerType.EVENT:
            reason, state = ReadyReason.SCHEDULED, "True"
            config = spec.schedule_config
            assert config.event_threshold is not None
            message = (f"{self.status.event_counter} of {config.event_threshold} {config.event_type} events "
                       "counted" + (f" in the last {config.window_seconds} s" if config.window_seconds else ""))
        elif phase is Phase.ACTIVE and self.status.source_errors:
            reason = ReadyReason.SOURCE_FAILING
            message = (f"{self.status.source_errors} failed check(s) in a row, retrying with backoff: "
                       f"{last_measurement(self.status, spec).get('error')}")
        elif phase is Phase.ACTIVE and spec.trigger_type is TriggerType.CONDITIONAL:
            reason, state = ReadyReason.SCHEDULED, "True"
            last = last_measurement(self.status, spec)
            source = spec.schedule_config.source.kind if spec.schedule_config.source else ""
            source += " default" if self.source_is_default else ""
            message = (f"checks the {source} source every {spec.schedule_config.check_interval_seconds} s"
                       + (f"; last: {last.get('drift', last.get('value'))} (exceeded: {last.get('exceeded')})"
                          if last else ""))
        elif phase is Phase.ACTIVE and self.status.next_scheduled_at is None and spec.is_time_based():
            reason = ReadyReason.NEVER_FIRES
            message = never_fires(spec)
        elif phase is Phase.ACTIVE:
            reason, state = ReadyReason.SCHEDULED, "True"
        else:
            reason = {Phase.PAUSED: ReadyReason.PAUSED, Phase.DISABLED: ReadyReason.DISABLED,
                      Phase.FAILED: ReadyReason.FAILURE_LIMIT_REACHED}[phase]
        if phase is Phase.FAILED:
            message = f"stopped after {self.status.consecutive_failures} consecutive failures"
        self.status = replace(self.status, message=message, observed_generation=self.trigger.generation)
        self.status = self.status.with_condition(self.condition(state, reason, message or reason.value))
        return self.plan()

    def condition(self, state: str, reason: ReadyReason, message: str) -> Condition:
        return Condition(type="Ready", status=state, reason=reason.value, message=message,
                         last_transition_time=self.now.replace(microsecond=0),
                         observed_generation=self.trigger.generation)

    def plan(self) -> Plan:
        current = self.trigger.raw_status if self.trigger.raw_status is not None else self.trigger.status.to_dict()
        releases = self.releases()
        self.wake(releases.hold_ends_at)
        return Plan(status=self.status, patch=status_patch(current, self.status), create=tuple(self.create),
                    delete=tuple(dict.fromkeys(self.delete)), release=releases.free,
                    release_proven=releases.proven,
                    notices=tuple(self.notices), wake_at=self.wake_at, check=self.check,
                    check_is_default=self.check is not None and self.source_is_default,
                    finished=tuple(self.finished))


def refused_creates(trigger: TriggerView, refused: Mapping[str, str], now: dt.datetime) -> Plan:
    """Counts runs whose Job the API server refused for good (an invalid template, a forbidden
    field) as failed at once: ``refused`` maps the run's name to the API server's message."""
    p = _Pass(trigger, {}, now)
    for run in trigger.status.active:
        if run.name in refused:
            error = f"the API server refused Job {run.name}: {refused[run.name]}"
            p.finish_run(run, Outcome.FAILED, None, error)
            p.notices[-1] = Notice("Warning", "JobCreateFailed", error)
    return p.plan()
