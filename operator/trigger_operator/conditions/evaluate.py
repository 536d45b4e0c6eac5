"""One check of a conditional Trigger, decided. Pure.

The rule (edge, not level): a condition fires when it holds and the Trigger is *armed*; firing
disarms it, and seeing the condition false again re-arms it. So a threshold that stays crossed
makes one Job, not one per check (the trap KEDA ScaledJob and Airflow users report), and a drift
fires once, after which the successful run moves the baseline to the value it was fired for. After
a failed run the drift still holds but the Trigger stays disarmed: it fires again only once the
value came back, or after ``resume`` re-arms it. With no baseline yet, the first good value becomes
the baseline. A failing source is recorded (``lastDriftMeasurement.error``, ``sourceErrors``) and
checked again with backoff: the interval doubles per failure, up to 10 minutes (or the interval,
if longer).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import Any

from trigger_operator.conditions.measure import MeasureError, Reading, Value, as_json, compare, drift, read_value
from trigger_operator.model.spec import ConditionType, TriggerSpec
from trigger_operator.model.status import TriggerStatus, format_time

BACKOFF_CAP = dt.timedelta(minutes=10)


@dataclass(frozen=True)
class Check:
    status: TriggerStatus
    fire: bool = False  # the condition holds and the Trigger is armed
    value: Value | None = None


def evaluate(status: TriggerStatus, spec: TriggerSpec, reading: Reading) -> Check:
    config = spec.schedule_config
    assert config.condition_type is not None and config.threshold is not None
    record: dict[str, Any] = {"checkedAt": format_time(reading.at), "metric": config.metric,
                              "threshold": config.threshold, "source": config.source.kind if config.source else None}
    checked = replace(status, last_condition_check_at=reading.at)
    try:
        if reading.error is not None:
            raise MeasureError(reading.error)
        value = read_value(reading.raw)
        record["value"] = as_json(value)
        if config.condition_type is ConditionType.DRIFT:
            if status.baseline_snapshot is None:
                baseline = {"value": as_json(value), "capturedAt": format_time(reading.at)}
                record.update(baseline=baseline["value"], drift=0.0, exceeded=False, note="first value: the baseline")
                return Check(replace(checked, baseline_snapshot=baseline, last_drift_measurement=record,
                                     source_errors=0, condition_armed=True))
            base = read_value(status.baseline_snapshot.get("value"))
            measured = drift(str(config.metric), value, base)
            record.update(baseline=as_json(base), drift=measured)
            exceeded = measured > config.threshold
        else:
            if isinstance(value, tuple):
                raise MeasureError("a threshold condition needs a number, not a list")
            exceeded = compare(config.comparison, value, config.threshold)
            record["comparison"] = config.comparison
    except (MeasureError, ArithmeticError) as error:
        record.update(exceeded=None, error=str(error) if isinstance(error, MeasureError) else "out of range")
        return Check(replace(checked, last_drift_measurement=record, source_errors=status.source_errors + 1))
    record["exceeded"] = exceeded
    armed = status.condition_armed is not False
    checked = replace(checked, last_drift_measurement=record, source_errors=0,
                      condition_armed=True if not exceeded else status.condition_armed)
    return Check(checked, fire=exceeded and armed, value=value)


def next_check_at(status: TriggerStatus, spec: TriggerSpec, origin: dt.datetime) -> dt.datetime:
    """When the next check is due: an interval after the last (backed off while the source fails)."""
    assert spec.schedule_config.check_interval_seconds is not None
    interval = dt.timedelta(seconds=spec.schedule_config.check_interval_seconds)
    if status.last_condition_check_at is None:
        return origin
    if status.source_errors:
        cap = max(interval, BACKOFF_CAP)
        doublings = min(status.source_errors - 1, 20)
        interval = cap if interval > cap / 2 ** doublings else min(interval * 2 ** doublings, cap)
    return status.last_condition_check_at + interval


def fired(status: TriggerStatus, value: Value, now: dt.datetime) -> TriggerStatus:
    """The status once a run was fired for ``value``: disarmed until the condition is seen false."""
    return replace(status, condition_firings=status.condition_firings + 1, condition_armed=False,
                   condition_fired_value=as_json(value), last_cooldown_at=now.replace(microsecond=0))


def run_finished(status: TriggerStatus, spec: TriggerSpec, succeeded: bool, finished_at: dt.datetime) -> TriggerStatus:
    """After a condition run: on success a drift's baseline moves to the value the run was fired for."""
    if status.condition_fired_value is None:
        return status
    if succeeded and spec.schedule_config.condition_type is ConditionType.DRIFT:
        status = replace(status, baseline_snapshot={"value": status.condition_fired_value,
                                                    "capturedAt": format_time(finished_at)})
    return replace(status, condition_fired_value=None)
