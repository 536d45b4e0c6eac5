"""The cooldown after an event or condition run (``scheduleConfig.cooldownSeconds``). Pure."""

from __future__ import annotations

import datetime as dt

from trigger_operator.model.spec import TriggerSpec
from trigger_operator.model.status import TriggerStatus


def cooling_until(status: TriggerStatus, spec: TriggerSpec, now: dt.datetime) -> dt.datetime | None:
    """When the cooldown after the last event or condition run ends, if it has not yet."""
    last, seconds = status.last_cooldown_at, spec.schedule_config.cooldown_seconds
    if last is None or not seconds:
        return None
    ends = last + dt.timedelta(seconds=seconds)
    return ends if now < ends else None
