"""The controller's reconcile decision: given a Trigger, its Jobs and the time, decide what to do. Pure.

``reconcile`` returns a `Plan` (core/plan.py): the status patch to write, the Jobs to create, delete
and release (remove our finalizer from), the Kubernetes Events to post and when to look again. The
shell (``controller``) carries it out in this order, and only on a copy of the Trigger confirmed
current (its status write succeeded with a resourceVersion precondition, or a fresh read found the
same resourceVersion):

1. the status patch, listing new runs in ``status.active`` before their Jobs exist: a crash after it
   leaves a run with no Job, which a later pass creates (the Job name makes that idempotent);
2. releases: a Job keeps our finalizer until its result is in status, so it cannot vanish unseen,
   and until it is ``name_hold`` old, so that its name stays taken while a replica that stalled
   between deciding a create and sending it could still send it (see `core.runs.releases`);
3. deletes (``Replace``, history), then creates.

This module only composes one pass, in the order below; each concern has its own module:
core/runs.py (the run ledger: start, finish, room, prune, release), core/ready.py (phase and the
Ready condition), core/firing/ (each type of Trigger's firing: schedule, events, condition, compound, run-now).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from trigger_operator.conditions.evaluate import NO_CHECKS, OwnChecks
from trigger_operator.conditions.measure import Reading
from trigger_operator.core.firing.backfill import refuse_failed, run_backfill
from trigger_operator.core.firing.compound import fire_on_parts, settle_compound_ready
from trigger_operator.core.firing.condition import check_condition, uses_default_source, with_default_source
from trigger_operator.core.firing.events import fire_on_events
from trigger_operator.core.firing.run_now import run_now, take_creation_token
from trigger_operator.core.firing.schedule import adopt_announced, run_due_moments
from trigger_operator.core.outbox import record as record_notifications
from trigger_operator.core.plan import Draft, Observed, PartView, Plan
from trigger_operator.core.ready import invalid, settle_phase, settle_ready, unreadable
from trigger_operator.core.runs import finish_run, fold_finished_runs, keep_announcement, prune, releases, render
from trigger_operator.jobs.catalog import Sources, TemplateMissing, resolve_template
from trigger_operator.jobs.observe import JobView
from trigger_operator.model.notice import Notice
from trigger_operator.model.spec import SpecError, TriggerSpec, TriggerType, check_own_part, parse_spec
from trigger_operator.model.status import STATUS_MAX_BYTES, Outcome, Phase, status_patch
from trigger_operator.model.trigger import TriggerView


def reconcile(trigger: TriggerView, jobs: Mapping[str, JobView], catalog: Mapping[str, Mapping[str, Any]],
              now: dt.datetime, reading: Reading | None = None, *,
              name_hold: dt.timedelta = dt.timedelta(0), create_within: dt.timedelta | None = None,
              own_checks: OwnChecks = NO_CHECKS,
              sources: Sources | None = None, parts: Mapping[str, PartView] | None = None, shards: int = 1) -> Plan:
    """The plan for one Trigger. ``jobs`` are the Jobs labelled with its name, as last seen (any owner);
    an active run's Job missing from it was just read from the API server and found absent.
    ``reading`` is a conditional Trigger's latest check of its source, when one was made.
    ``name_hold``: how old a Job of ours must be before our finalizer comes off (the shell's setting).
    ``create_within``: how late an announced moment's create may still go before the status write
    (the shell's setting; None: never, every create waits for the write).
    ``own_checks``: what this process knows of its own checks of the source (conditions/evaluate.py).
    ``sources``: the catalog's default condition sources, for conditional Triggers that name none.
    ``parts``: a compound Trigger's view of its parts (core/plan.py, `PartView`).
    ``shards``: the sharded mode's shard count, for the shard label of the Jobs it creates.

    A plan whose status patch would be larger than `STATUS_MAX_BYTES` as JSON is decided again
    with the reading's values dropped, as a failed check that says so: status is no store for
    whatever a source answered, and an oversized write would be refused again at every pass."""
    sources = sources or {}
    seen = Observed(trigger, jobs, now, name_hold=name_hold, create_within=create_within, own_checks=own_checks,
                    parts=parts or {}, shards=shards)
    plan = _reconcile(seen, catalog, reading, sources)
    if reading is not None and reading.error is None and plan.patch:
        size = len(json.dumps(plan.patch, separators=(",", ":")))
        if size > STATUS_MAX_BYTES:
            error = (f"the value is too large to keep in status (a status write of {size} bytes; at most "
                     f"{STATUS_MAX_BYTES}): the reading was dropped")
            plan = _reconcile(seen, catalog, dataclasses.replace(reading, raw=None, error=error), sources)
    return plan


def _reconcile(o: Observed, catalog: Mapping[str, Mapping[str, Any]], reading: Reading | None,
               sources: Sources) -> Plan:
    """One pass: every part reads ``o`` and changes only the draft ``d``."""
    trigger = o.trigger
    d = Draft(status=trigger.status)
    if trigger.status_error is not None:
        return unreadable(o, d, trigger.status_error)
    take_creation_token(o, d)
    source_is_default = False
    try:
        spec = parse_spec(dict(trigger.spec))
        check_own_part(spec, trigger.name)
        spec = with_default_source(spec, sources, trigger.namespace)
        source_is_default = uses_default_source(spec, trigger.spec)
        template: Mapping[str, Any] | None = resolve_template(spec, catalog)
        missing = None
    except TemplateMissing as error:
        template, missing = None, str(error)
    except SpecError as error:
        adopt_announced(o, d, None)  # an announced run created first is listed and counted too
        fold_finished_runs(o, d, None, None)  # runs already going are still counted
        invalid(o, d, str(error))
        return _plan(o, d)
    # An announced run created first whose listing write did not land is listed (and the cursor
    # moved to it) before anything else reads the status: in every phase, before a jitter edit.
    adopt_announced(o, d, spec)
    if trigger.deleting_since is not None:
        # Deleted, held by the notify finalizer until its events are delivered (docs/notifications.md):
        # the runs going on are still counted and reported, but nothing new starts (none is announced).
        d.status = replace(d.status, next_scheduled_at=None)
        fold_finished_runs(o, d, spec, None)
        record_notifications(o, d, spec)
        return _plan(o, d)
    fold_finished_runs(o, d, spec, (lambda run: render(o, spec, template, run)) if template is not None else None)
    phase = settle_phase(o, d, spec)
    try:
        if phase is Phase.ACTIVE and spec.is_time_based():
            run_due_moments(o, d, spec, template)
        else:
            d.status = replace(d.status, next_scheduled_at=None)
    except OverflowError as error:  # bounded in the schema; this is the last line of defence
        invalid(o, d, f"spec.scheduleConfig: a moment falls outside the calendar ({error})")
        return _plan(o, d)
    except SpecError as error:  # exclusions too costly to search (model/spec.py, time_schedule)
        invalid(o, d, str(error))
        return _plan(o, d)
    _backfill(o, d, spec, template, phase)
    if spec.trigger_type is TriggerType.EVENT:
        fire_on_events(o, d, spec, template if phase is Phase.ACTIVE else None)
    if spec.trigger_type is TriggerType.CONDITIONAL and phase in (Phase.ACTIVE, Phase.PAUSED):
        check_condition(o, d, spec, template if phase is Phase.ACTIVE else None, reading, source_is_default)
    if spec.trigger_type is TriggerType.COMPOUND:
        fire_on_parts(o, d, spec, template if phase is Phase.ACTIVE else None)
    if template is not None:
        run_now(o, d, spec, template, refuse=phase is Phase.DISABLED)
    prune(o, d, spec)
    settle_ready(o, d, phase, spec, missing, source_is_default)
    settle_compound_ready(o, d, spec)  # PartMissing, PartCycle
    record_notifications(o, d, spec)  # in this pass's status write: core/outbox.py
    return _plan(o, d)


def _backfill(o: Observed, d: Draft, spec: TriggerSpec, template: Mapping[str, Any] | None, phase: Phase) -> None:
    """The backfill's part of the pass. Its request is an annotation anyone who may patch the
    Trigger can write, so whatever it raises is refused (core/firing/backfill.py, `refuse_failed`)
    with the draft put back as it was: a backfill never stops the live schedule or the other runs."""
    before = (d.status, len(d.create), len(d.delete), len(d.notices), len(d.finished), d.wake_at)
    try:
        # A finished Trigger (window or budget spent) still backfills: a backfill is asked for by hand.
        run_backfill(o, d, spec, template,
                     waits=None if phase in (Phase.ACTIVE, Phase.FINISHED) else f"the Trigger is {phase.value}")
    except Exception as error:  # the last line of defence, as for the schedule's OverflowError
        d.status, d.wake_at = before[0], before[5]
        del d.create[before[1]:], d.delete[before[2]:], d.notices[before[3]:], d.finished[before[4]:]
        refuse_failed(o, d, error)


def _plan(o: Observed, d: Draft) -> Plan:
    """The draft as a plan: the status as a merge patch against the stored one, and the releases
    (decided last, as they depend on the runs counted and the Jobs deleted)."""
    trigger = o.trigger
    current = trigger.raw_status if trigger.raw_status is not None else trigger.status.to_dict()
    if trigger.status_error is None:
        keep_announcement(o, d)
    free = releases(o, d)
    d.wake(free.hold_ends_at)
    return Plan(status=d.status, patch=status_patch(current, d.status), create=tuple(d.create),
                delete=tuple(dict.fromkeys(d.delete)), release=free.free, release_proven=free.proven,
                notices=tuple(d.notices), wake_at=d.wake_at, check=d.check,
                check_is_default=d.check is not None and d.check_is_default, finished=tuple(d.finished),
                unwritten_check=d.quiet_check,
                create_first=bool(d.create) and all(new.announced for new in d.create))


def refused_creates(trigger: TriggerView, refused: Mapping[str, str], now: dt.datetime) -> Plan:
    """Counts runs whose Job the API server refused for good (an invalid template, a forbidden
    field) as failed at once: ``refused`` maps the run's name to the API server's message."""
    o, d = Observed(trigger, {}, now), Draft(status=trigger.status)
    for run in trigger.status.active:
        if run.name in refused:
            error = f"the API server refused Job {run.name}: {refused[run.name]}"
            finish_run(o, d, None, run, Outcome.FAILED, None, error)
            d.notices[-1] = Notice("Warning", "JobCreateFailed", error)
    try:
        spec = parse_spec(dict(trigger.spec))
    except SpecError:
        spec = None  # the next pass reports it; its outbox is left as it is
    if spec is not None and d.finished:  # trigger.execution.failed for each, in this same status write
        record_notifications(o, d, spec, runs_only=True)
    return _plan(o, d)
