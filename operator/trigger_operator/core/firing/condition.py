"""Conditional Triggers: each reading of the source is taken in, at most one run fires for it,
and the next check is asked for when it is due. The rule of a crossing (armed, fired, backoff) is
conditions/evaluate.py's; the catalog's default sources are jobs/catalog.py's. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from trigger_operator.conditions.evaluate import (
    UnwrittenCheck,
    announce,
    changes_nothing,
    evaluate,
    fired,
    interrupted,
    last_check,
    next_check_at,
)
from trigger_operator.conditions.measure import Reading, Value
from trigger_operator.core.concurrency import condition_run_waits
from trigger_operator.core.firing.cooldown import cooling_until
from trigger_operator.core.plan import Draft, Observed
from trigger_operator.core.runs import make_room, start_run
from trigger_operator.jobs.catalog import Sources, default_source
from trigger_operator.jobs.render import condition_job_name
from trigger_operator.model.spec import TriggerSpec, TriggerType
from trigger_operator.model.status import ActiveRun, RunKind


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


def uses_default_source(spec: TriggerSpec, raw_spec: Mapping[str, Any]) -> bool:
    """Whether ``spec`` (from `with_default_source`) reads the catalog's default source rather than
    one the Trigger names (``raw_spec``: the spec as written)."""
    return spec.schedule_config.source is not None and "source" not in (raw_spec.get("scheduleConfig") or {})


def check_condition(o: Observed, d: Draft, spec: TriggerSpec, template: Mapping[str, Any] | None,
                    reading: Reading | None, source_is_default: bool) -> None:
    """Takes in a new reading of the source (conditions/evaluate.py has the rule), fires at most one
    run for it, and asks for the next check when it is due (``template`` None: paused, no run).
    ``source_is_default``: the source is the catalog's default (see `uses_default_source`)."""
    s = d.status
    last = last_check(s, o.own_checks)
    if reading is None or (last is not None and reading.at <= last):
        reading = interrupted(s, o.own_checks, o.now)  # a check that died with its process, if any
    own = o.own_checks
    if reading is not None:
        check = evaluate(s, spec, reading)
        d.status = check.status
        acted = (len(d.create), len(d.delete))
        if check.fire and check.value is not None:
            _fire_on_condition(o, d, spec, template, check.value)  # held back (cooldown...): changes nothing
        if (d.status is check.status and (len(d.create), len(d.delete)) == acted
                and s.last_condition_check_at is not None and changes_nothing(s, check.status, spec, reading.at)):
            # Status keeps showing the last written check (its time, record and the Ready message
            # agree); the shell remembers this one (`Plan.unwritten_check`), and so does this pass.
            d.status = s
            d.quiet_check = UnwrittenCheck(over=s.last_condition_check_at, at=reading.at)
            own = replace(own, unwritten=d.quiet_check)
    due = next_check_at(d.status, spec, o.trigger.created_at, own)
    if due <= o.now:
        d.check = spec.schedule_config.source
        d.check_is_default = source_is_default
        d.status = announce(d.status, o.own_checks, o.now)
    else:
        d.wake(due)


def _fire_on_condition(o: Observed, d: Draft, spec: TriggerSpec, template: Mapping[str, Any] | None,
                       value: Value) -> None:
    if template is None or cooling_until(d.status, spec, o.now) is not None:
        return  # stays armed: the next check that finds it still true fires
    if condition_run_waits(spec.concurrency_policy, any(r.kind is RunKind.CONDITION for r in d.status.active)):
        return
    if make_room(o, d, spec) is not None:
        return
    d.status = fired(d.status, value, o.now)
    name = condition_job_name(o.trigger.name, d.status.condition_firings)
    start_run(o, d, spec, template, ActiveRun(name=name, kind=RunKind.CONDITION, scheduled_time=o.now,
                                              fired_at=o.now))
