"""Compound Triggers: one run when ``require`` of the parts (other Triggers of the namespace) fired
within the last ``withinSeconds``, each part's firing used up once. Pure.

- A part fires each time it starts a run, whatever its type and whatever started it (its schedule,
  its events, its condition, run-now, a backfill): its own exactly-once and edge rules decide that,
  the compound only watches. The durable fact naming one firing is the part's status pair
  (``lastExecutionTaskId``, ``lastTriggeredAt``), written in the part's guarded write that starts
  the run; the pair stays unique when a part is deleted and created again under its name (its run
  names start over, its times do not). A part firing twice before the compound looks counts once:
  only its last firing is seen, and a part is one vote however often it fired.
- The window is read at the compound's pass, as of its ``now``: a firing counts while
  ``now - withinSeconds <= firedAt`` (both ends inclusive), and only if it came after the compound
  became Active (``activeSince``: created, resumed, or its parts, require or window changed), so
  firings of before are never carried into a new rule. A part's status change requeues its
  compounds (controller/store.py), so the pass comes within the controller's latency.
- When the compound fires it uses up every counted firing (not only ``require`` of them, as Argo
  Events' ``conditionsReset`` resets all): ``status.compoundParts[].consumed*`` records each in the
  same guarded write that numbers the run (``<trigger>-x<N>``), so neither a restart nor a second
  replica uses a firing twice. The Job is told the parts (TRIGGER_PARTS and an annotation).
- Cooldown and concurrencyPolicy as for event Triggers: a firing that comes while the compound
  cools down or (Forbid) runs stays unused and counts once it may run, if it is still in the window.
- A part that names no Trigger (yet) is a part that has not fired: the compound still fires if the
  others suffice (``require`` below their number) and says so in Ready (PartMissing). Parts leading
  back to the compound (through other compounds) are a cycle: it never fires (PartCycle), so no
  chain of compounds can feed itself.
- Bounded cost: a part's firing brings a pass to every compound naming it, and each pass reads the
  Triggers reachable through its parts (to find cycles). A pass follows at most MAX_REACHABLE_PARTS
  of them: a compound reaching more never fires (TooManyParts: a cycle beyond cannot be ruled out).
  A part feeds at most MAX_COMPOUNDS_PER_PART compounds of its namespace, the first created
  (then by name); a later one never fires while they name it (TooManyCompounds) and gets its pass
  when one of them lets go (controller/store.py). So one firing costs at most
  MAX_COMPOUNDS_PER_PART passes of at most MAX_REACHABLE_PARTS look-ups each, never O(compounds²).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from trigger_operator.core.firing.cooldown import cooling_until
from trigger_operator.core.plan import Draft, Observed, PartView
from trigger_operator.core.ready import ready_condition
from trigger_operator.core.runs import EPSILON, make_room, start_run
from trigger_operator.jobs.render import compound_job_name
from trigger_operator.model.spec import TriggerSpec, TriggerType, required_parts
from trigger_operator.model.status import ActiveRun, PartRecord, Phase, ReadyReason, RunKind, parse_time

# Triggers one compound's pass follows through its parts and theirs (2 to 8 direct parts each: 64
# is a deep tree of compounds, and a pass stays a few hundred look-ups).
MAX_REACHABLE_PARTS = 64
# Compound Triggers one part feeds, per namespace: a part's firing costs this many passes at most.
MAX_COMPOUNDS_PER_PART = 100


def part_names(spec: Mapping[str, Any]) -> tuple[str, ...]:
    """The parts a stored spec names, if it is a compound Trigger's (for the store's index); any
    malformed entry is passed over: the index must never fail on a spec the core would refuse."""
    if not isinstance(spec, Mapping) or spec.get("triggerType") != TriggerType.COMPOUND.value:
        return ()
    config = spec.get("scheduleConfig")
    parts = config.get("parts") if isinstance(config, Mapping) else None
    if not isinstance(parts, list):
        return ()
    return tuple(p["trigger"] for p in parts if isinstance(p, Mapping) and isinstance(p.get("trigger"), str))


def part_view(body: Mapping[str, Any]) -> PartView:
    """A Trigger as its compounds see it: its last firing from its status (none if unreadable)."""
    status = body.get("status")
    status = status if isinstance(status, Mapping) else {}
    run, at = status.get("lastExecutionTaskId"), None
    with contextlib.suppress(TypeError, ValueError):  # a hand-edited time: no firing seen, no failed pass
        at = parse_time(status.get("lastTriggeredAt"))
    fired = isinstance(run, str) and at is not None
    return PartView(name=str(body["metadata"]["name"]), fired_run=run if fired else None,
                    fired_at=at if fired else None, parts=part_names(body.get("spec") or {}))


def find_cycle(name: str, own: Sequence[str], parts: Mapping[str, PartView]) -> list[str] | None:
    """A shortest path of part names from the Trigger ``name`` back to itself (``[name, ..., name]``),
    or None. Breadth first with one parent per name met: linear in the names and parts read."""
    parent: dict[str, str] = {}
    queue: list[str] = []
    for part in own:
        if part == name:
            return [name, name]
        if part not in parent:
            parent[part] = name
            queue.append(part)
    for current in queue:  # grows while read
        view = parts.get(current)
        for part in view.parts if view is not None else ():
            if part == name:
                path = [current]
                while path[-1] != name:
                    path.append(parent[path[-1]])
                return [*reversed(path), name]
            if part not in parent:
                parent[part] = current
                queue.append(part)
    return None


def part_trouble(name: str, own: Sequence[str], parts: Mapping[str, PartView]) -> tuple[ReadyReason, str] | None:
    """Why the compound ``name`` with parts ``own`` never fires as things stand (the reason and the
    Ready message naming the field), or None: a part feeding too many compounds already, more
    Triggers reached than a pass follows, or a cycle."""
    for index, part in enumerate(own):
        view = parts.get(part)
        if view is not None and view.compounds_before >= MAX_COMPOUNDS_PER_PART:
            return ReadyReason.TOO_MANY_COMPOUNDS, (
                f"spec.scheduleConfig.parts[{index}].trigger: {part!r} is already a part of "
                f"{MAX_COMPOUNDS_PER_PART} compound Triggers created before this one (the most one Trigger feeds): "
                "this one never fires while they name it")
    if len(parts) > MAX_REACHABLE_PARTS:
        through = [p for p in own if p in parts and parts[p].parts]
        return ReadyReason.TOO_MANY_PARTS, (
            f"spec.scheduleConfig.parts: more than {MAX_REACHABLE_PARTS} Triggers are reached through the parts"
            + (f" (via the compound part(s) {', '.join(through)})" if through else "")
            + ", more than a pass follows to rule out a cycle: this compound never fires; name fewer compound "
            "Triggers as parts")
    cycle = find_cycle(name, own, parts)
    if cycle is not None:
        return ReadyReason.PART_CYCLE, (f"spec.scheduleConfig.parts: {' -> '.join(cycle)} leads back to this "
                                        "Trigger: compound Triggers in a cycle never fire")
    return None


def counted(records: Sequence[PartRecord], since: dt.datetime, now: dt.datetime,
            within: dt.timedelta) -> list[PartRecord]:
    """The parts whose last firing counts now: not used up, after ``since``, within the window."""
    return [r for r in records if not r.spent and r.fired_at is not None and r.fired_at >= since
            and r.fired_at >= now - within]


def fire_on_parts(o: Observed, d: Draft, spec: TriggerSpec, template: Mapping[str, Any] | None) -> None:
    """Records each part's last firing, then fires one run when enough of them count (the module's
    rule). ``template`` None (not active, or no template in the catalog): records, fires nothing."""
    config = spec.schedule_config
    names = [p.trigger for p in config.parts or ()]
    known = {r.trigger: r for r in d.status.compound_parts}
    records = []
    for name in names:
        view = o.parts.get(name)
        record = known.get(name) or PartRecord(trigger=name)
        records.append(replace(record, fired_run=view.fired_run if view else None,
                               fired_at=view.fired_at if view else None))
    d.status = replace(d.status, compound_parts=tuple(records))
    if template is None or part_trouble(o.trigger.name, names, o.parts) is not None:
        return
    assert config.within_seconds is not None
    within = dt.timedelta(seconds=config.within_seconds)
    since = d.status.active_since or o.trigger.created_at
    fresh = counted(records, since, o.now, within)
    if fresh:  # look again when the first of them leaves the window (Ready counts what is in it)
        d.wake(min(r.fired_at for r in fresh if r.fired_at is not None) + within + EPSILON)
    if len(fresh) < required_parts(config):
        return
    ready_at = cooling_until(d.status, spec, o.now)
    if ready_at is not None:
        d.status = replace(d.status, next_scheduled_at=ready_at)
        d.wake(ready_at)
        return
    if make_room(o, d, spec) is not None:
        return  # Forbid: the running Job's end brings the Trigger back
    used = {r.trigger for r in fresh}
    spent = tuple(replace(r, consumed_run=r.fired_run, consumed_at=r.fired_at) if r.trigger in used else r
                  for r in records)
    firing = d.status.compound_firings + 1
    d.status = replace(d.status, compound_firings=firing, compound_parts=spent, next_scheduled_at=None,
                       last_cooldown_at=o.now.replace(microsecond=0))
    parts = tuple(name for name in names if name in used)
    run = ActiveRun(name=compound_job_name(o.trigger.name, firing), kind=RunKind.COMPOUND, scheduled_time=o.now,
                    fired_at=o.now, parts=parts)
    d.notice("Normal", "CompoundFired", f"parts {', '.join(parts)} fired within {config.within_seconds} s "
             f"({_required_text(spec)}): run {run.name}")
    start_run(o, d, spec, template, run)


def _required_text(spec: TriggerSpec) -> str:
    require = spec.schedule_config.require
    if require is None or require == "all":
        return "all required"
    return "any one required" if require == "any" else f"{require} required"


def settle_compound_ready(o: Observed, d: Draft, spec: TriggerSpec) -> None:
    """The Ready condition of an Active compound Trigger with nothing else to say (core/ready.py
    said Scheduled): False TooManyCompounds, TooManyParts, PartCycle or PartMissing naming the
    field, else True with what counts."""
    ready = next((c for c in d.status.conditions if c.type == "Ready"), None)
    if spec.trigger_type is not TriggerType.COMPOUND or d.status.phase is not Phase.ACTIVE \
            or ready is None or ready.reason != ReadyReason.SCHEDULED.value:
        return
    config = spec.schedule_config
    names = [p.trigger for p in config.parts or ()]
    trouble = part_trouble(o.trigger.name, names, o.parts)
    missing = [(i, n) for i, n in enumerate(names) if n not in o.parts]
    state = "False"
    if trouble is not None:
        reason, message = trouble
    elif missing:
        reason = ReadyReason.PART_MISSING
        index, name = missing[0]
        message = (f"spec.scheduleConfig.parts[{index}].trigger: no Trigger named {name!r} in namespace "
                   f"{o.trigger.namespace} (yet): it counts as a part that has not fired")
        if len(missing) > 1:
            message += f"; {len(missing) - 1} more part(s) missing: " + ", ".join(n for _, n in missing[1:])
    else:
        reason, state = ReadyReason.SCHEDULED, "True"
        assert config.within_seconds is not None
        since = d.status.active_since or o.trigger.created_at
        fresh = counted(d.status.compound_parts, since, o.now, dt.timedelta(seconds=config.within_seconds))
        message = (f"{len(fresh)} of {len(names)} parts fired within the last {config.within_seconds} s "
                   f"({_required_text(spec)})" + (": " + ", ".join(r.trigger for r in fresh) if fresh else ""))
    previous = next((c for c in o.trigger.status.conditions if c.type == "Ready"), None)
    if state == "False" and (previous is None or previous.reason != reason.value):
        d.notice("Warning", reason.value, message)
    d.status = replace(d.status, message=message).with_condition(ready_condition(o, state, reason, message))
