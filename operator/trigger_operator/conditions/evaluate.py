"""One check of a conditional Trigger, decided. Pure.

The rule (edge, not level): a condition fires when it holds and the Trigger is *armed*; firing
disarms it, and seeing the condition false again re-arms it. So a threshold that stays crossed
makes one Job, not one per check (the trap KEDA ScaledJob and Airflow users report), and a drift
fires once, after which the successful run moves the baseline to the value it was fired for. After
a failed run the drift still holds but the Trigger stays disarmed: it fires again only once the
value came back, or after ``resume`` re-arms it. With no baseline yet, the first good value becomes
the baseline. A volume condition (a document count) fires as a threshold one does, and is recorded
in ``lastVolumeMeasurement`` (the seed's field) rather than ``lastDriftMeasurement``. A failing
source is recorded (``lastDriftMeasurement.error`` or ``lastVolumeMeasurement.error``, ``sourceErrors``) and
checked again with backoff: the interval doubles per failure, up to 10 minutes (or the interval,
if longer).

A check running when the operator process died counts as failed, so a source whose answer crashes
the operator (memory, a parser) backs off across restarts instead of crash-looping it. Writing a
marker before every check would double the status writes of every conditional Trigger (1,000
Triggers every 10 s: 100 more writes a second) and checks write only when something changed (below).
So only the *first* check of a Trigger by a process is announced: the pass that starts it writes
``conditionCheckStartedAt = now`` (`announce`) and the shell starts the read only once that write
landed. A pass that finds that marker newer than ``lastConditionCheckAt`` (or no check at all)
while this process has no check of the Trigger in flight and started none since the marker
(`OwnChecks`, the shell's memory as plain data) records a failed check (`interrupted`): the
process that announced it died before its reading was written. A crash loop is thus broken after
at most one more crash (the new process's own first check is announced again), and each further
crash doubles the backoff. A crash in a later, unannounced check is not seen: the price of no
write per check. A take-over from a live replica whose announced first check was still running
records one failed check too, which costs one backoff step.

A check that changes nothing that matters writes nothing (`changes_nothing`): same armed state,
baseline and error count, the same record but for its time and the value measured (``checkedAt``,
``value``, ``drift``), no firing, and no announced check waiting for its end. Such a check is
remembered by the shell (`UnwrittenCheck`, in `OwnChecks`), so the next is due an interval after it
all the same (`last_check`). ``lastConditionCheckAt`` and the record are written at least every
`heartbeat` (max(60 s, 6 intervals)), so status shows the checks live, and at once whenever a check
changes anything else. A new process has no such memory: it checks at the persisted time (its
``lastConditionCheckAt`` plus the interval, usually already past: at once), announced as every
first check of a process is, and that check's end is always written, so the crash-loop guard holds.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import cast

from trigger_operator.conditions.measure import MeasureError, Reading, Value, as_json, compare, drift, read_value
from trigger_operator.model.spec import ConditionType, TriggerSpec
from trigger_operator.model.status import Measurement, TriggerStatus, format_time, recorded_measurement

BACKOFF_CAP = dt.timedelta(minutes=10)
# A check that changes nothing is still written once the last written one is this old: at least a
# minute, and at least this many intervals (a slow cadence gains nothing from writing each check).
HEARTBEAT_MIN = dt.timedelta(seconds=60)
HEARTBEAT_INTERVALS = 6
# What a check's record says that moves from check to check without changing what it means.
MEASURED_KEYS = frozenset({"checkedAt", "value", "valueLength", "drift"})


@dataclass(frozen=True)
class UnwrittenCheck:
    """A check taken in without a status write: made at ``at``, over a stored status whose
    ``lastConditionCheckAt`` was ``over`` (the memory holds only while status still says so: a
    check written since, or a person setting the time back, makes it moot)."""

    over: dt.datetime
    at: dt.datetime


@dataclass(frozen=True)
class OwnChecks:
    """What this operator process knows of its own checks of one Trigger's source."""

    in_flight: bool = False  # a read of the source is running now
    last_started_at: dt.datetime | None = None  # the pass time of the last check it started; None: never
    unwritten: UnwrittenCheck | None = None  # its last check that wrote nothing, if any


NO_CHECKS = OwnChecks()  # a process that has checked nothing yet (as after a start)


def announce(status: TriggerStatus, own: OwnChecks, now: dt.datetime) -> TriggerStatus:
    """The status of a pass that starts a check: the process's first check of it is announced."""
    if own.last_started_at is not None:
        return status
    return replace(status, condition_check_started_at=now)


def interrupted(status: TriggerStatus, own: OwnChecks, now: dt.datetime) -> Reading | None:
    """The failed reading to record when status shows a check that never ended (see the module's
    docstring), else None."""
    started = status.condition_check_started_at
    if started is None or own.in_flight:
        return None
    if status.last_condition_check_at is not None and status.last_condition_check_at >= started:
        return None
    if own.last_started_at is not None and own.last_started_at >= started:
        return None  # ours: its reading is on its way to status, or was dropped
    return Reading(at=now, error=f"the operator stopped while this source was being checked (started "
                                 f"{format_time(started)}); checked again after the backoff")


@dataclass(frozen=True)
class Check:
    status: TriggerStatus
    fire: bool = False  # the condition holds and the Trigger is armed
    value: Value | None = None


def evaluate(status: TriggerStatus, spec: TriggerSpec, reading: Reading) -> Check:
    config = spec.schedule_config
    assert config.condition_type is not None and config.threshold is not None
    volume = config.condition_type is ConditionType.VOLUME
    record = Measurement(checkedAt=format_time(reading.at), metric=config.metric, threshold=config.threshold,
                         source=config.source.kind if config.source else None)
    checked = replace(status, last_condition_check_at=reading.at)
    try:
        if reading.error is not None:
            raise MeasureError(reading.error)
        value = read_value(reading.raw)
        record["value"] = as_json(value)
        if config.condition_type is ConditionType.DRIFT:
            if status.baseline_snapshot is None:
                baseline = {"value": as_json(value), "capturedAt": format_time(reading.at)}
                record.update(Measurement(baseline=baseline["value"], drift=0.0, exceeded=False,
                              note="first value: the baseline"))
                return Check(replace(checked, baseline_snapshot=baseline, last_drift_measurement=record,
                                     source_errors=0, condition_armed=True))
            base = read_value(status.baseline_snapshot.get("value"))
            measured = drift(str(config.metric), value, base)
            record.update(Measurement(baseline=as_json(base), drift=measured))
            exceeded = measured > config.threshold
        else:
            if isinstance(value, tuple):
                raise MeasureError(f"a {config.condition_type.value} condition needs a number, not a list")
            if volume:
                document_count(value)
            exceeded = compare(config.comparison, value, config.threshold)
            record["comparison"] = config.comparison
    except (MeasureError, ArithmeticError) as error:
        record.update(Measurement(exceeded=None,
                                  error=str(error) if isinstance(error, MeasureError) else "out of range"))
        return Check(_recorded(replace(checked, source_errors=status.source_errors + 1), volume, record))
    record["exceeded"] = exceeded
    armed = status.condition_armed is not False
    checked = _recorded(replace(checked, source_errors=0,
                                condition_armed=True if not exceeded else status.condition_armed), volume, record)
    return Check(checked, fire=exceeded and armed, value=value)


def document_count(value: float) -> int:
    """A volume condition's value: a document count, so a whole number of at least 0 (a source
    answering 12.5 or -1 measures something else, and a threshold on it would mislead)."""
    if value < 0 or not value.is_integer():
        raise MeasureError("a volume condition needs a document count (a whole number of at least 0)")
    return int(value)


def _recorded(status: TriggerStatus, volume: bool, record: Measurement) -> TriggerStatus:
    """Where a check is recorded: the seed's ``lastVolumeMeasurement`` for volume conditions,
    ``lastDriftMeasurement`` for drift and threshold ones (as before)."""
    if volume:
        return replace(status, last_volume_measurement=record)
    return replace(status, last_drift_measurement=record)


def last_measurement(status: TriggerStatus, spec: TriggerSpec) -> Measurement:
    """The record of the last check of this Trigger's condition type (empty before the first)."""
    if spec.schedule_config.condition_type is ConditionType.VOLUME:
        return status.last_volume_measurement or Measurement()
    return status.last_drift_measurement or Measurement()


def last_check(status: TriggerStatus, own: OwnChecks) -> dt.datetime | None:
    """When the source was last checked: status's time, or this process's later check that wrote
    nothing (`UnwrittenCheck`) while status still says what it said then."""
    last, unwritten = status.last_condition_check_at, own.unwritten
    if unwritten is not None and unwritten.over == last and last is not None and unwritten.at > last:
        return unwritten.at
    return last


def heartbeat(spec: TriggerSpec) -> dt.timedelta:
    """How old the written check may get before a check that changes nothing is written all the same."""
    assert spec.schedule_config.check_interval_seconds is not None
    return max(HEARTBEAT_MIN, HEARTBEAT_INTERVALS * dt.timedelta(seconds=spec.schedule_config.check_interval_seconds))


def changes_nothing(before: TriggerStatus, after: TriggerStatus, spec: TriggerSpec, at: dt.datetime) -> bool:
    """Whether the check made at ``at``, which turned status ``before`` into ``after`` (`evaluate`),
    may go unwritten: it changes nothing but its time and the value measured, the last written
    check is younger than the `heartbeat`, and no announced check waits for its end to be written
    (`interrupted` reads that end from status)."""
    last, started = before.last_condition_check_at, before.condition_check_started_at
    if last is None or at - last >= heartbeat(spec) or (started is not None and started > last):
        return False
    return _lasting(after, last) == _lasting(before, last)


def _lasting(status: TriggerStatus, last: dt.datetime) -> TriggerStatus:
    """``status`` without what a check changes that means nothing (see `changes_nothing`)."""
    def kept(record: Measurement | None) -> Measurement | None:
        if record is None:
            return None
        return cast(Measurement, {k: v for k, v in recorded_measurement(record).items() if k not in MEASURED_KEYS})
    return replace(status, last_condition_check_at=last, last_drift_measurement=kept(status.last_drift_measurement),
                   last_volume_measurement=kept(status.last_volume_measurement))


def next_check_at(status: TriggerStatus, spec: TriggerSpec, origin: dt.datetime,
                  own: OwnChecks = NO_CHECKS) -> dt.datetime:
    """When the next check is due: an interval after the last (`last_check`; backed off while the
    source fails)."""
    assert spec.schedule_config.check_interval_seconds is not None
    interval = dt.timedelta(seconds=spec.schedule_config.check_interval_seconds)
    last = last_check(status, own)
    if last is None:
        return origin
    if status.source_errors:
        cap = max(interval, BACKOFF_CAP)
        doublings = min(status.source_errors - 1, 20)
        interval = cap if interval > cap / 2 ** doublings else min(interval * 2 ** doublings, cap)
    return last + interval


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
