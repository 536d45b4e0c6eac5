"""Event Triggers: the counting window is refreshed and, at the threshold, one run fires. How
events are matched and counted is events/counting.py's. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from trigger_operator.core.firing.cooldown import cooling_until
from trigger_operator.core.plan import Draft, Observed
from trigger_operator.core.runs import make_room, start_run
from trigger_operator.events.counting import next_expiry, refresh_window, spend_threshold
from trigger_operator.jobs.render import event_job_name
from trigger_operator.model.spec import TriggerSpec
from trigger_operator.model.status import ActiveRun, RunKind


def fire_on_events(o: Observed, d: Draft, spec: TriggerSpec, template: Mapping[str, Any] | None) -> None:
    """Drops counted events that left the window (and looks again when the next one leaves), then
    fires one run when the counter reaches the threshold and the cooldown has passed; the surplus
    stays counted. Under Forbid a firing waits for the running Job (its end brings the Trigger
    back), rather than spending the events on a skip. ``template`` None (not active, or no
    template in the catalog): counts, fires nothing."""
    d.status = refresh_window(d.status, spec, o.now)
    d.wake(next_expiry(d.status, spec))
    if template is None:
        return
    s = d.status
    config = spec.schedule_config
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
