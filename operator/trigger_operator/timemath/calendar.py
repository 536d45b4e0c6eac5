"""Schedules composed of schedules: several lines, exclusions, an active window, a jitter. Pure.

Each piece is a `Schedule` (``next_after``), so the due rule (due.py), the previews and the
controller use a composed schedule exactly as a single cron line. The order is fixed by `compose`:
the union of the lines, then the exclusions, then the window, all on the *nominal* moment (what the
cron lines or the interval lattice say); the jitter shifts last. So ``excludeDates: [2026-12-25]``
removes the moments the lines put on Christmas even when the jitter would push one past midnight,
and the window bounds what the lines say, not where the jitter puts it.

Every search is bounded: a schedule whose exclusions remove every moment ends with None (it never
fires) within `SEARCH_LIMIT`, and no search takes more than `MAX_STEPS` steps (`TooCostly`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol
from zoneinfo import ZoneInfo

from trigger_operator.timemath import Schedule
from trigger_operator.timemath.cron import MAX_FOLD, SEARCH_YEARS, UTC, CronExpression, CronSchedule
from trigger_operator.timemath.interval import IntervalSchedule

# How far a search for the next moment looks past its start: cron's own bound (robfig's five years).
SEARCH_LIMIT = dt.timedelta(days=366 * SEARCH_YEARS)
_MINUTE = dt.timedelta(minutes=1)
_HOUR = dt.timedelta(hours=1)
# Work done by one `Excluding.next_after`, in steps: a day examined, a moment of a line looked at
# (one per line of a union), or a moment enumerated to learn an interval's minutes. Days that can hold
# no moment the exclusions leave are passed over in a step each, so even five years of search (a
# schedule that never fires) take about 1,850 steps, some 10-20 ms. Past the bound the search stops
# with `TooCostly` (about 40 ms at most) instead of stalling the operator's one event loop, where every
# Trigger is reconciled, or the admission webhook (whose timeout is 5 s).
MAX_STEPS = 4_000
_EPSILON = dt.timedelta(microseconds=1)
_FULL = (1 << 60) - 1  # every minute of an hour, as a bit mask (bit m: minute m)
_FULL_DAY = (_FULL,) * 24


@dataclass(frozen=True)
class Union:
    """Every moment of any of the schedules; a moment two of them share is one moment."""

    schedules: tuple[Schedule, ...]

    def next_after(self, after: dt.datetime) -> dt.datetime | None:
        found = [m for m in (s.next_after(after) for s in self.schedules) if m is not None]
        return min(found) if found else None


class TooCostly(ValueError):
    """Finding a moment of the schedule took more than `MAX_STEPS` steps: the exclusions leave too few
    of the lines' moments to find one at a bounded cost. Callers say it naming the exclusions."""


@dataclass
class StepMeter:
    """Counts the steps of each search (`MAX_STEPS`): ``last`` of the last search, ``peak`` of any."""

    last: int = 0
    peak: int = 0

    def step(self, count: int = 1) -> None:
        self.last += count
        if self.last > MAX_STEPS:
            self.peak = max(self.peak, self.last)
            raise TooCostly(f"too costly to evaluate: no moment the exclusions leave was found within "
                            f"{MAX_STEPS} steps of the search (a day, an hour or a moment each)")


def _mask(minutes: Collection[int]) -> int:
    mask = 0
    for minute in minutes:
        mask |= 1 << minute
    return mask


def _hour_masks(expressions: Sequence[CronExpression], day: dt.date,
                cache: dict[tuple[int, ...], tuple[int, ...]]) -> tuple[int, ...]:
    """The minutes the expressions match on ``day``, one mask per hour: the same tuple object for
    every day the same expressions match (``cache``, keyed by which match)."""
    key = tuple(i for i, e in enumerate(expressions) if e.matches_day(day))
    masks = cache.get(key)
    if masks is None:
        built = [0] * 24
        for i in key:
            minutes = _mask(expressions[i].minutes)
            for h in expressions[i].hours:
                built[h] |= minutes
        masks = cache[key] = _FULL_DAY if built == list(_FULL_DAY) else tuple(built)
    return masks


def _earliest_instant(zone: ZoneInfo, wall: dt.datetime) -> dt.datetime:
    """The earlier of the instants a wall time can name (a repeated one names two, a skipped one is
    read with both offsets): resuming there never passes over a moment."""
    return min(wall.replace(tzinfo=zone, fold=fold).astimezone(UTC) for fold in (0, 1))


def _offset(zone: ZoneInfo, instant: dt.datetime) -> dt.timedelta:
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None
    return offset


def _change(zone: ZoneInfo, low: dt.datetime, high: dt.datetime) -> dt.datetime:
    """The first instant in (low, high] whose offset is no longer ``low``'s (there is one, and only one
    change between them): whole seconds, as clocks change on seconds."""
    before = _offset(zone, low)
    lo, hi = int(low.timestamp()), int(high.timestamp()) + 1
    while hi - lo > 1:
        middle = (lo + hi) // 2
        if _offset(zone, dt.datetime.fromtimestamp(middle, UTC)) == before:
            lo = middle
        else:
            hi = middle
    return max(dt.datetime.fromtimestamp(hi, UTC), low + _EPSILON)


class _LineMinutes(Protocol):
    def day(self, day: dt.date, meter: StepMeter) -> tuple[int, ...]:
        """For each wall-clock hour of ``day``, a superset of the minutes (a mask) at which the lines
        may have a moment. The same tuple object for days alike, which the caller's cache relies on."""


def _changes(zone: ZoneInfo, day: dt.date) -> tuple[dt.timedelta, dt.timedelta]:
    """The offsets at the start of ``day`` and of the next: they differ on a day clocks change (a
    change at midnight itself counts for the day it begins). Cheap: no conversion of an instant."""
    start = dt.datetime.combine(day, dt.time())
    before, after = zone.utcoffset(start), zone.utcoffset(start + dt.timedelta(days=1))
    assert before is not None and after is not None
    return before, after


@dataclass
class _AnyMinute:
    """A schedule of unknown shape: every minute may hold a moment (each is then looked at)."""

    def day(self, day: dt.date, meter: StepMeter) -> tuple[int, ...]:
        return _FULL_DAY


@dataclass
class _CronMinutes:
    """Cron lines in the exclusions' zone: exactly the minutes their fields match, and on a day clocks
    go forward the first minute after the gap, where a fixed-time line in the gap runs (cron.py)."""

    expressions: tuple[CronExpression, ...]
    zone: ZoneInfo
    cache: dict[tuple[int, ...], tuple[int, ...]] = field(default_factory=dict)

    def day(self, day: dt.date, meter: StepMeter) -> tuple[int, ...]:
        masks = _hour_masks(self.expressions, day, self.cache)
        if any(e.fixed_time for e in self.expressions):
            before, after = _changes(self.zone, day)
            if after > before:  # clocks go forward this day
                start = _earliest_instant(self.zone, dt.datetime.combine(day, dt.time()))
                wall = _change(self.zone, start, start + dt.timedelta(days=1)).astimezone(self.zone)
                if wall.date() == day:
                    masks = tuple(m | (1 << wall.minute if h == wall.hour else 0) for h, m in enumerate(masks))
        return masks


@dataclass
class _LatticeMinutes:
    """An interval lattice: the minutes its moments fall in, hour by hour. A day without a clock
    change holds the same minutes as any other at the same phase of the lattice (cached); a period
    of a minute or less has a moment in every minute of every hour that exists."""

    lattice: IntervalSchedule
    zone: ZoneInfo
    by_phase: dict[dt.timedelta, tuple[int, ...]] = field(default_factory=dict)

    def day(self, day: dt.date, meter: StepMeter) -> tuple[int, ...]:
        midnight = dt.datetime.combine(day, dt.time())
        before, after = _changes(self.zone, day)
        if before == after:
            start = (midnight - before).replace(tzinfo=UTC)
            if self.lattice.period <= _MINUTE:
                return _FULL_DAY
            phase = (start - self.lattice.origin) % self.lattice.period
            cacheable = start > self.lattice.origin
            if cacheable and phase in self.by_phase:
                return self.by_phase[phase]
            masks = tuple(self._hour(day, h, start + h * _HOUR, start + (h + 1) * _HOUR, meter) for h in range(24))
            if cacheable:
                self.by_phase[phase] = masks
            return masks
        return tuple(self._hour(day, h, _earliest_instant(self.zone, midnight + h * _HOUR),
                                _earliest_instant(self.zone, midnight + (h + 1) * _HOUR), meter) for h in range(24))

    def _hour(self, day: dt.date, hour: int, low: dt.datetime, high: dt.datetime, meter: StepMeter) -> int:
        """The minutes of the wall-clock hour, whose instants are [low, high) (none in a gap)."""
        if high <= low:
            return 0
        if self.lattice.period <= _MINUTE:
            return _FULL
        mask = 0
        moment = self.lattice.next_after(low - _EPSILON)
        while moment is not None and moment < high:
            meter.step()
            wall = moment.astimezone(self.zone)
            if wall.date() == day and wall.hour == hour:
                mask |= 1 << wall.minute
            moment = self.lattice.next_after(moment)
        return mask


def _line_minutes(schedule: Schedule, zone: ZoneInfo) -> _LineMinutes:
    lines = schedule.schedules if isinstance(schedule, Union) else (schedule,)
    if all(isinstance(s, CronSchedule) and s.zone == zone for s in lines):
        return _CronMinutes(tuple(s.expression for s in lines if isinstance(s, CronSchedule)), zone)
    if isinstance(schedule, IntervalSchedule):
        return _LatticeMinutes(schedule, zone)
    return _AnyMinute()


@dataclass(frozen=True)
class Excluding:
    """The moments of ``schedule`` except those whose minute, read on the wall clock of ``zone``,
    matches one of ``crons`` or falls on one of ``dates``.

    A moment is judged by the wall-clock minute it falls in (an interval moment at 10:00:30 is in
    10:00), so ``* * * * 0`` removes all of Sunday and ``* 12 * * *`` the noon hour; both passes
    through a repeated hour when clocks go back read the same wall time and are judged alike.

    The search does not look at the excluded moments one by one: cron fields are sets, so the
    minutes of an hour that can still hold a moment are the lines' minutes less the exclusions'
    (bit masks per hour, the same for every day of the same month, day and weekday). Whole days and
    hours with none are passed over in a step, and the lines are asked again only from a minute that
    can hold one. Each search is bounded by `MAX_STEPS` (`TooCostly`); ``meter`` counts its steps."""

    schedule: Schedule
    crons: tuple[CronExpression, ...]
    dates: frozenset[dt.date]
    zone: ZoneInfo
    meter: StepMeter = field(default_factory=StepMeter, compare=False, repr=False)
    _lines: list[_LineMinutes] = field(default_factory=list, compare=False, repr=False)
    _excluded: dict[tuple[int, ...], tuple[int, ...]] = field(default_factory=dict, compare=False, repr=False)
    _combined: dict[tuple[int, int], tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...] | None]] = field(
        default_factory=dict, compare=False, repr=False)

    def _wall(self, moment: dt.datetime) -> dt.datetime:
        return moment.astimezone(self.zone).replace(tzinfo=None, second=0, microsecond=0)

    def _excluded_masks(self, day: dt.date) -> tuple[int, ...]:
        """The minutes the exclusions cover, one mask per wall-clock hour of ``day``."""
        if day in self.dates:
            return _FULL_DAY
        return _hour_masks(self.crons, day, self._excluded)

    def _line_minutes(self) -> _LineMinutes:
        if not self._lines:
            self._lines.append(_line_minutes(self.schedule, self.zone))
        return self._lines[0]

    def _resume(self, wall: dt.datetime, limit: dt.datetime) -> dt.datetime | None:
        """The first wall-clock minute at or after ``wall`` where the lines may have a moment that no
        exclusion covers; None when there is none before ``limit``."""
        lines = self._line_minutes()
        day, hour, minute = wall.date(), wall.hour, wall.minute
        while dt.datetime.combine(day, dt.time(hour)) < limit:
            self.meter.step()
            excluded = self._excluded_masks(day)
            if excluded is not _FULL_DAY:
                free = self._free(lines.day(day, self.meter), excluded)
                for h in range(hour, 24 if free is not None else hour):
                    left = free[h] & (_FULL >> minute << minute) if free is not None else 0
                    if left:
                        return dt.datetime.combine(day, dt.time(h, (left & -left).bit_length() - 1))
                    minute = 0
            day, hour, minute = day + dt.timedelta(days=1), 0, 0
        return None

    def _free(self, lines: tuple[int, ...], excluded: tuple[int, ...]) -> tuple[int, ...] | None:
        """The minutes of each hour the lines may hold and no exclusion covers; None: not one. Both
        inputs are cached tuples, so days alike are combined once (keyed by identity, kept alive)."""
        key = (id(lines), id(excluded))
        if key not in self._combined:
            free = tuple(line & ~out for line, out in zip(lines, excluded, strict=True))
            self._combined[key] = (lines, excluded, free if any(free) else None)
        return self._combined[key][2]

    def _fold_after(self, moment: dt.datetime, resume: dt.datetime) -> dt.datetime:
        """Where to resume after the excluded ``moment``: at ``resume``, unless clocks go back between
        them: then at the change, so that the second pass through the repeated hour, whose wall
        times lie before ``resume``'s, is not passed over."""
        probe = min(resume, moment + MAX_FOLD)
        if probe <= moment or _offset(self.zone, probe) >= _offset(self.zone, moment):
            return resume
        return min(resume, _change(self.zone, moment, probe))

    def next_after(self, after: dt.datetime) -> dt.datetime | None:
        self.meter.last = 0
        try:
            limit = after + SEARCH_LIMIT
            wall_limit = self._wall(limit) + _MINUTE
            moment = self.schedule.next_after(after)
            weight = len(self.schedule.schedules) if isinstance(self.schedule, Union) else 1
            while True:
                self.meter.step(weight)
                if moment is None or moment > limit:
                    return None
                wall = self._wall(moment)
                if not self._excluded_masks(wall.date())[wall.hour] >> wall.minute & 1:
                    return moment
                resume = self._resume(wall, wall_limit)
                if resume is None:
                    return None
                instant = self._fold_after(moment, _earliest_instant(self.zone, resume))
                moment = self.schedule.next_after(max(moment, instant - _EPSILON))
        finally:
            self.meter.peak = max(self.meter.peak, self.meter.last)


@dataclass(frozen=True)
class Window:
    """The moments m of ``schedule`` with ``start <= m < end`` (either bound may be open).

    The end is exclusive, unlike Temporal's ``start_time``/``end_time``, which "make an inclusive
    interval": a half-open window composes, so ``endAt: 10:00`` on one Trigger and ``startAt: 10:00``
    on its successor run the 10:00 moment once, and "until the first of May" means before it."""

    schedule: Schedule
    start: dt.datetime | None
    end: dt.datetime | None

    def next_after(self, after: dt.datetime) -> dt.datetime | None:
        if self.end is not None and after >= self.end:
            return None
        if self.start is not None and after < self.start:
            after = self.start - _EPSILON
        moment = self.schedule.next_after(after)
        if moment is None or (self.end is not None and moment >= self.end):
            return None
        return moment


@dataclass(frozen=True)
class Shifted:
    """Every moment of ``schedule`` moved later by ``offset`` (the jitter)."""

    schedule: Schedule
    offset: dt.timedelta

    def next_after(self, after: dt.datetime) -> dt.datetime | None:
        moment = self.schedule.next_after(after - self.offset)
        return None if moment is None else moment + self.offset


def jitter_offset(namespace: str, name: str, jitter_seconds: int) -> dt.timedelta:
    """A Trigger's own delay in whole seconds, in [0, jitter_seconds): the first 8 bytes of the
    SHA-256 of ``namespace/name``, modulo the bound.

    From the name, not the uid, so a Trigger deleted and applied again by GitOps, another replica
    and a restarted operator all compute the same offset; from SHA-256, not Python's ``hash()``,
    which is salted per process. Whole seconds, because the Job name carries the moment in seconds."""
    if jitter_seconds <= 0:
        return dt.timedelta(0)
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).digest()
    return dt.timedelta(seconds=int.from_bytes(digest[:8], "big") % jitter_seconds)


def compose(lines: Sequence[Schedule], *, zone: ZoneInfo, exclude_cron: Sequence[CronExpression] = (),
            exclude_dates: Collection[dt.date] = (), start: dt.datetime | None = None,
            end: dt.datetime | None = None, offset: dt.timedelta = dt.timedelta(0)) -> Schedule:
    """The schedule of one Trigger: the union of ``lines`` less the exclusions, within the window,
    shifted by ``offset``. Pieces that change nothing are left out, so a plain cron line stays the
    `CronSchedule` it was."""
    schedule: Schedule = lines[0] if len(lines) == 1 else Union(tuple(lines))
    if exclude_cron or exclude_dates:
        schedule = Excluding(schedule, tuple(exclude_cron), frozenset(exclude_dates), zone)
    if start is not None or end is not None:
        schedule = Window(schedule, start, end)
    if offset:
        schedule = Shifted(schedule, offset)
    return schedule
