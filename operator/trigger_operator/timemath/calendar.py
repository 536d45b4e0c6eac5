"""Schedules composed of schedules: several lines, exclusions, an active window, a jitter. Pure.

Each piece is a `Schedule` (``next_after``), so the due rule (due.py), the previews and the
controller use a composed schedule exactly as a single cron line. The order is fixed by `compose`:
the union of the lines, then the exclusions, then the window, all on the *nominal* moment (what the
cron lines or the interval lattice say); the jitter shifts last. So ``excludeDates: [2026-12-25]``
removes the moments the lines put on Christmas even when the jitter would push one past midnight,
and the window bounds what the lines say, not where the jitter puts it.

Every search is bounded: a schedule whose exclusions remove every moment ends with None (it never
fires) within `SEARCH_LIMIT` or `MAX_SKIPS` excluded moments in a row, never loops.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from trigger_operator.timemath import Schedule
from trigger_operator.timemath.cron import SEARCH_YEARS, UTC, CronExpression

# How far a search for the next moment looks past its start: cron's own bound (robfig's five years).
SEARCH_LIMIT = dt.timedelta(days=366 * SEARCH_YEARS)
# Excluded moments skipped in a row before a search gives up (the schedule then counts as never
# firing). Whole excluded days and hours are skipped at once, so only minute-grained exclusions
# that remove a minute-grained line's moments one by one come near it: 50,000 moments of
# "*/2 * * * *" are 69 days all excluded, which no real calendar asks for (and about a second of
# search, within the admission webhook's time).
MAX_SKIPS = 50_000
_EPSILON = dt.timedelta(microseconds=1)
_MINUTE = dt.timedelta(minutes=1)
_HOUR = dt.timedelta(hours=1)


@dataclass(frozen=True)
class Union:
    """Every moment of any of the schedules; a moment two of them share is one moment."""

    schedules: tuple[Schedule, ...]

    def next_after(self, after: dt.datetime) -> dt.datetime | None:
        found = [m for m in (s.next_after(after) for s in self.schedules) if m is not None]
        return min(found) if found else None


@dataclass(frozen=True)
class Excluding:
    """The moments of ``schedule`` except those whose minute, read on the wall clock of ``zone``,
    matches one of ``crons`` or falls on one of ``dates``.

    A moment is judged by the wall-clock minute it falls in (an interval moment at 10:00:30 is in
    10:00), so ``* * * * 0`` removes all of Sunday and ``* 12 * * *`` the noon hour; both passes
    through a repeated hour when clocks go back read the same wall time and are judged alike."""

    schedule: Schedule
    crons: tuple[CronExpression, ...]
    dates: frozenset[dt.date]
    zone: ZoneInfo

    def _wall(self, moment: dt.datetime) -> dt.datetime:
        return moment.astimezone(self.zone).replace(tzinfo=None, second=0, microsecond=0)

    def _day_excluded(self, day: dt.date) -> bool:
        return day in self.dates or any(
            c.matches_day(day) and len(c.hours) == 24 and len(c.minutes) == 60 for c in self.crons)

    def _hour_minutes(self, day: dt.date, hour: int) -> set[int]:
        """The minutes of this wall-clock hour that some exclusion covers."""
        covered: set[int] = set()
        for c in self.crons:
            if hour in c.hours and c.matches_day(day):
                covered.update(c.minutes)
        return covered

    def _resume(self, wall: dt.datetime, limit: dt.datetime) -> dt.datetime | None:
        """The first wall-clock minute at or after ``wall`` that no exclusion covers, skipping
        whole days and hours at once; None when there is none before ``limit``."""
        while wall < limit:
            if self._day_excluded(wall.date()):
                wall = dt.datetime.combine(wall.date() + dt.timedelta(days=1), dt.time())
                continue
            covered = self._hour_minutes(wall.date(), wall.hour)
            free = [m for m in range(wall.minute, 60) if m not in covered]
            if free:
                return wall.replace(minute=free[0])
            wall = wall.replace(minute=0) + _HOUR
        return None

    def _earliest_instant(self, wall: dt.datetime) -> dt.datetime:
        """The earlier of the instants a wall time can name (a repeated one names two, a skipped
        one is read with both offsets): resuming there never passes over a moment."""
        return min(wall.replace(tzinfo=self.zone, fold=fold).astimezone(UTC) for fold in (0, 1))

    def next_after(self, after: dt.datetime) -> dt.datetime | None:
        limit = after + SEARCH_LIMIT
        wall_limit = self._wall(limit) + _MINUTE
        moment = self.schedule.next_after(after)
        for _ in range(MAX_SKIPS):
            if moment is None or moment > limit:
                return None
            wall = self._wall(moment)
            if not (self._day_excluded(wall.date()) or wall.minute in self._hour_minutes(wall.date(), wall.hour)):
                return moment
            resume = self._resume(wall, wall_limit)
            if resume is None:
                return None
            moment = self.schedule.next_after(max(moment, self._earliest_instant(resume) - _EPSILON))
        return None


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
