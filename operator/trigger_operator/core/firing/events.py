"""Event Triggers: the counting window is refreshed and, at the threshold, one run fires; with
groupBy (events/keys.py) each key fires on its own; with absence (events/absence.py) a silent
window fires. How events are matched and counted is events/counting.py's. Pure."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from trigger_operator.core.concurrency import room
from trigger_operator.core.firing.cooldown import cooling_until
from trigger_operator.core.plan import Draft, Observed
from trigger_operator.core.runs import finish_run, make_room, start_run
from trigger_operator.events import absence, keys
from trigger_operator.events.counting import next_expiry, refresh_window, spend_threshold
from trigger_operator.jobs.render import event_job_name
from trigger_operator.model.spec import TriggerSpec
from trigger_operator.model.status import ActiveRun, Outcome, RunKind, TriggerStatus


def fire_on_events(o: Observed, d: Draft, spec: TriggerSpec, template: Mapping[str, Any] | None) -> None:
    """Drops counted events that left the window (and looks again when the next one leaves), then
    fires one run when the counter reaches the threshold and the cooldown has passed; the surplus
    stays counted. Under Forbid a firing waits for the running Job (its end brings the Trigger
    back), rather than spending the events on a skip. ``template`` None (not active, or no
    template in the catalog): counts, fires nothing."""
    config = spec.schedule_config
    if config.absence is not None:
        _judge_absence(o, d, spec, template)
        return
    if config.group_by is not None:
        _fire_per_key(o, d, spec, template)
        return
    d.status = refresh_window(d.status, spec, o.now)
    d.wake(next_expiry(d.status, spec))
    if template is None:
        return
    s = d.status
    assert config.event_threshold is not None
    if s.event_counter < config.event_threshold:
        return
    ready_at = cooling_until(s, spec, o.now)
    if ready_at is not None:
        d.status = replace(s, next_scheduled_at=ready_at)
        d.wake(ready_at)
        return
    if make_room(o, d, spec) is not None:
        return
    s = d.status  # under Replace, make_room has just recorded the replaced runs
    firing = s.event_firings + 1
    d.status = replace(spend_threshold(s, spec), event_firings=firing,
                       last_cooldown_at=o.now.replace(microsecond=0))
    start_run(o, d, spec, template, ActiveRun(name=event_job_name(o.trigger.name, firing), kind=RunKind.EVENT,
                                              scheduled_time=o.now, fired_at=o.now))


# --- groupBy --------------------------------------------------------------------------------------

def _key_room(o: Observed, d: Draft, spec: TriggerSpec, key: str) -> bool:
    """concurrencyPolicy for one key: only that key's runs count. Under Replace they are deleted and
    counted Replaced; under Forbid a running one holds the key's next run back (False)."""
    going = [r for r in d.status.active if r.kind is RunKind.EVENT and r.event_key == key]
    decided = room(spec.concurrency_policy, [r.name for r in going])
    if decided.replace:
        for run in going:
            d.delete.append(run.name)
            finish_run(o, d, spec, run, Outcome.REPLACED, o.jobs.get(run.name), None)
        d.create = [new for new in d.create if new.run.name not in d.delete]
    return decided.blocker is None


def _start_key_run(o: Observed, d: Draft, spec: TriggerSpec, template: Mapping[str, Any], key: str,
                   count: int | None = None) -> None:
    """One run for ``key``: the Trigger's firing number names it (jobs/render.py), written in the same
    status as the key's spent events."""
    firing = d.status.event_firings + 1
    now = o.now.replace(microsecond=0)
    d.status = replace(d.status, event_firings=firing, last_cooldown_at=now)
    start_run(o, d, spec, template, ActiveRun(name=event_job_name(o.trigger.name, firing), kind=RunKind.EVENT,
                                              scheduled_time=o.now, fired_at=o.now, event_key=key, event_count=count))


def _fire_per_key(o: Observed, d: Draft, spec: TriggerSpec, template: Mapping[str, Any] | None) -> None:
    """Each key at its threshold, out of its cooldown and with room under concurrencyPolicy, fires
    one run told its key; idle keys leave status (their place under maxKeys is free again)."""
    config = spec.schedule_config
    assert config.event_threshold is not None
    now = int(o.now.timestamp())
    window = config.window_seconds
    width = keys.key_bucket_width(window) if window else 1
    state = {k: keys.refreshed(s, window, now) for k, s in keys.read_keys(d.status.event_key_state).items()}
    for key in sorted(state, key=lambda k: (-state[k].counter, k)):
        s = state[key]
        if template is None or s.counter < config.event_threshold:
            continue
        cooled = s.last_cooldown_at + config.cooldown_seconds
        if config.cooldown_seconds and now < cooled:
            d.wake(dt.datetime.fromtimestamp(cooled, dt.UTC))
            continue
        if not _key_room(o, d, spec, key):
            continue
        state[key] = replace(keys.spend(s, config.event_threshold, width), firings=s.firings + 1,
                             last_cooldown_at=now)
        _start_key_run(o, d, spec, template, key)
    # A key with a run going keeps its place: runs count against maxKeys as the keys they are for,
    # so status.active holds runs of at most maxKeys keys.
    going = {r.event_key for r in d.status.active if r.kind is RunKind.EVENT}
    for key in [k for k, s in state.items()
                if s.idle and k not in going
                and (not config.cooldown_seconds or s.last_cooldown_at + config.cooldown_seconds <= now)]:
        del state[key]
    if window:
        firsts = [s.base for s in state.values() if s.counts]
        if firsts:
            d.wake(dt.datetime.fromtimestamp(min(firsts) + width + window, dt.UTC))
    _keep_keys(o, d, spec, state)


def _keep_keys(o: Observed, d: Draft, spec: TriggerSpec, state: dict[str, keys.KeyState]) -> None:
    """The keys into status, with the summary; a Warning Event once for new refusals by maxKeys."""
    summary = dict(d.status.event_keys or {})
    refused, noticed = int(summary.get("refused", 0)), int(summary.get("refusedNoticed", 0))
    if refused > noticed:
        d.notice("Warning", "KeyBoundReached", f"spec.scheduleConfig.maxKeys: {keys.max_keys(spec)} keys are "
                 f"followed; {refused - noticed} event(s) of new {spec.schedule_config.group_by} values were "
                 "refused (counted for no key)")
        noticed = refused
    d.status = replace(d.status, event_key_state=keys.rows(state), event_window=(),
                       event_counter=sum(s.counter for s in state.values()),
                       event_keys=keys.summary(state, refused, noticed))


# --- absence --------------------------------------------------------------------------------------

def _judge_absence(o: Observed, d: Draft, spec: TriggerSpec, template: Mapping[str, Any] | None) -> None:
    """Judges the last window that closed (events/absence.py) and looks again at the next end."""
    rule = spec.schedule_config.absence
    assert rule is not None
    d.wake(absence.next_window_end(d.status, rule.within_seconds, o.now))
    closed = absence.closed_window(d.status, rule.within_seconds, o.now)
    if spec.schedule_config.group_by is not None:
        _judge_keys(o, d, spec, template, closed)
        return
    d.status = _open_window_only(d.status, rule.within_seconds, o.now)
    if closed is None or template is None:
        return
    start, end = closed
    count = absence.count_in(d.status.event_window, start)
    fires = count < rule.fewer_than
    if fires and make_room(o, d, spec) is not None:
        return  # under Forbid: judged once the running Job ends (its end brings the Trigger back)
    kept = tuple((s, n) for s, n in d.status.event_window if s >= end)
    d.status = replace(d.status, event_window=kept, event_counter=absence.count_in(kept, end),
                       last_absence=absence.judged(start, end, count, fires))
    if fires:
        _start_absence_run(o, d, spec, template, count)


def _start_absence_run(o: Observed, d: Draft, spec: TriggerSpec, template: Mapping[str, Any], count: int) -> None:
    firing = d.status.event_firings + 1
    d.status = replace(d.status, event_firings=firing, last_cooldown_at=o.now.replace(microsecond=0))
    start_run(o, d, spec, template, ActiveRun(name=event_job_name(o.trigger.name, firing), kind=RunKind.EVENT,
                                              scheduled_time=o.now, fired_at=o.now, event_count=count))


def _open_window_only(status: TriggerStatus, within: int, now: dt.datetime) -> TriggerStatus:
    """Drops counts of windows off the current grid (a new activeSince starts a new grid), and all
    of them while the Trigger is not Active (events/absence.py: it counts nothing then)."""
    a = absence.anchor(status)
    if a is None:
        return status if not status.event_window and not status.event_counter else \
            replace(status, event_window=(), event_counter=0)
    kept = tuple((s, n) for s, n in status.event_window if absence.on_grid(s, a, within))
    return status if kept == status.event_window else replace(status, event_window=kept)


def _keys_on_grid(status: TriggerStatus, within: int) -> dict[str, keys.KeyState]:
    """The keys, each without counts off the current grid (all of them while not Active) and with
    at most `keys.ABSENCE_ROW_BUCKETS` windows; the keys stay followed (they were seen)."""
    a = absence.anchor(status)
    state = keys.read_keys(status.event_key_state)
    for key, s in state.items():
        if s.counts and (a is None or not absence.on_grid(s.base, a, within)):
            state[key] = replace(s, counter=0, base=0, counts=())
        else:
            state[key] = keys.clip(s, keys.ABSENCE_ROW_BUCKETS, within)
    return state


def _judge_keys(o: Observed, d: Draft, spec: TriggerSpec, template: Mapping[str, Any] | None,
                closed: tuple[int, int] | None) -> None:
    """Absence per key: every key seen before the window closed is judged on its own count."""
    rule = spec.schedule_config.absence
    assert rule is not None
    state = _keys_on_grid(d.status, rule.within_seconds)
    if closed is None or template is None:
        _keep_keys(o, d, spec, state)
        return
    start, end = closed
    width = rule.within_seconds
    total = fired = 0
    for key in sorted(state):
        s = state[key]
        if s.counts and s.base > start:
            continue  # first seen after this window: not absent from it
        index = (start - s.base) // width
        count = s.counts[index] if s.counts and 0 <= index < len(s.counts) else 0
        total += count
        s = keys.drop_before(s, end, width)
        s = replace(s, counter=s.counts[0] if s.counts and s.base == end else 0)
        if count < rule.fewer_than and _key_room(o, d, spec, key):
            s = replace(s, firings=s.firings + 1, last_cooldown_at=int(o.now.timestamp()))
            _start_key_run(o, d, spec, template, key, count)
            fired += 1
        state[key] = s
    d.status = replace(d.status, last_absence=absence.judged(start, end, total, fired > 0, absentKeys=fired))
    _keep_keys(o, d, spec, state)

