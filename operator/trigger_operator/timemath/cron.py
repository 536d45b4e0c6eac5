"""Cron expressions with Kubernetes CronJob syntax and classic-cron daylight-saving behaviour.

Pure: no clock and no I/O but reading the time zone database.

Syntax is that of robfig/cron v3's standard parser, which the CronJob controller uses: five fields
(minute hour day-of-month month day-of-week), ``*``/``?``, lists, ranges, steps, month and weekday
names, and the ``@yearly``/``@annually``/``@monthly``/``@weekly``/``@daily``/``@midnight``/``@hourly``
macros. When both day fields are restricted a day matches either of them; when either holds a star
(``*``, ``?`` or ``*/1``) a day must match both. A differential test checks this module against
robfig/cron itself. We refuse two things robfig accepts: ``@every`` (use ``triggerType: interval``)
and a ``TZ=``/``CRON_TZ=`` prefix (use ``scheduleConfig.timezone``), as CronJob does since 1.29.

Daylight saving follows classic cron (Vixie/Debian), which does better than CronJob:

* A *fixed-time* job (no ``*`` and no step in its minute and hour fields, e.g. daily 01:30) runs once
  on the day clocks go back: at the first occurrence of the repeated wall time.
* A fixed time that clocks skip when they go forward runs once, at the first instant after the gap.
* A *repeating* job (``*`` or a step in the minute or hour field) fires on real time through both
  changes: each wall time that exists fires once per occurrence, so both passes through a repeated
  hour fire; wall times inside a gap do not exist and do not fire. No instant ever fires twice.

Why not croniter: its accepted syntax (seconds, ``L``, ``#``, ``7`` for Sunday) and its day rule
differ from robfig's, so Triggers would fire at other times than the CronJobs users migrate from.
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import importlib.resources
import os
import re
import zoneinfo
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UTC = dt.UTC
MINUTE = dt.timedelta(minutes=1)
# Clocks go back by at most this much (30 min to 2 h in the tz database since 1970); it bounds the
# search for instants that a repeated hour puts before a wall time already passed.
MAX_FOLD = dt.timedelta(hours=3)
# Like robfig: a schedule with no match within SEARCH_YEARS never fires. SEARCH_SPAN is how every
# message says it, derived here so that the number and the words cannot part.
SEARCH_YEARS = 5
_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
SEARCH_SPAN = f"{_WORDS[SEARCH_YEARS] if len(_WORDS) > SEARCH_YEARS else SEARCH_YEARS} years"


class CronError(ValueError):
    """A cron expression or time zone that cannot be used; the message says why, and ``field``
    which setting is at fault: ``cronExpression`` or ``timezone``."""

    def __init__(self, message: str, field: str = "cronExpression") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int]


_FIELDS = (
    _Field("minute", 0, 59, {}),
    _Field("hour", 0, 23, {}),
    _Field("day-of-month", 1, 31, {}),
    _Field("month", 1, 12, {m: i + 1 for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"])}),
    _Field("day-of-week", 0, 6, {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}),
)

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_NUMBER = re.compile(r"\+?[0-9]+")  # what Go's strconv.Atoi accepts, less the minus sign


@dataclass(frozen=True)
class _ParsedField:
    values: tuple[int, ...]  # sorted
    star: bool  # "*" or "?" without a step above 1: robfig's star bit
    wildcard_or_step: bool  # "*" anywhere or any step: makes a minute/hour field "repeating"


def _number(text: str, field: _Field, part: str) -> int:
    if text.lower() in field.names:
        return field.names[text.lower()]
    if not _NUMBER.fullmatch(text):
        raise CronError(f"{field.name} field: {text!r} in {part!r} is not a number"
                        + (f" or a name ({', '.join(field.names)})" if field.names else ""))
    return int(text)


def _parse_field(text: str, field: _Field) -> _ParsedField:
    values: set[int] = set()
    star = wildcard_or_step = False
    # Like robfig (strings.FieldsFunc), empty list items are ignored.
    for part in (p for p in text.split(",") if p):
        range_and_step = part.split("/")
        if len(range_and_step) > 2:
            raise CronError(f"{field.name} field: too many slashes in {part!r}")
        low_high = range_and_step[0].split("-")
        part_star = False
        if low_high[0] in ("*", "?"):
            # robfig ignores anything after "*-", so "*-5" means "*"
            start, end, part_star = field.low, field.high, True
            wildcard_or_step = True
        elif len(low_high) > 2:
            raise CronError(f"{field.name} field: too many hyphens in {part!r}")
        else:
            start = _number(low_high[0], field, part)
            end = _number(low_high[1], field, part) if len(low_high) == 2 else start
        step = 1
        if len(range_and_step) == 2:
            wildcard_or_step = True
            if not _NUMBER.fullmatch(range_and_step[1]):
                raise CronError(f"{field.name} field: step {range_and_step[1]!r} in {part!r} is not a number")
            step = int(range_and_step[1])
            if len(low_high) == 1:  # "N/step" means "N-max/step"
                end = field.high
            if step > 1:
                part_star = False
        if start < field.low:
            raise CronError(f"{field.name} field: {start} in {part!r} is below the minimum {field.low}")
        if end > field.high:
            raise CronError(f"{field.name} field: {end} in {part!r} is above the maximum {field.high}")
        if start > end:
            raise CronError(f"{field.name} field: range {part!r} starts after it ends")
        if step == 0:
            raise CronError(f"{field.name} field: step in {part!r} must be a positive number")
        values.update(range(start, end + 1, step))
        star = star or part_star
    return _ParsedField(tuple(sorted(values)), star, wildcard_or_step)


@dataclass(frozen=True)
class CronExpression:
    """A parsed cron expression: which wall-clock minutes match. Time zones come in `CronSchedule`."""

    text: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: tuple[int, ...]
    weekdays: frozenset[int]  # 0 = Sunday
    day_and: bool  # a day must match both day fields (one of them holds a star)
    fixed_time: bool  # no "*" and no step in the minute and hour fields (see the module docstring)

    @classmethod
    def parse(cls, text: str) -> CronExpression:
        # Not stripped: like robfig, "@hourly " is no macro and " @hourly" is one field.
        spec = text
        if not spec:
            raise CronError("the cron expression is empty")
        if spec.startswith(("TZ=", "CRON_TZ=")):
            raise CronError("a time zone inside the expression is not supported: "
                            "set scheduleConfig.timezone instead")
        if spec.startswith("@"):
            if spec.startswith("@every"):
                raise CronError("'@every' is not supported: use triggerType 'interval' with intervalSeconds")
            if spec not in _MACROS:
                raise CronError(f"unknown macro {spec!r}: expected one of {', '.join(_MACROS)}")
            spec = _MACROS[spec]
        parts = spec.split()
        if len(parts) != 5:
            raise CronError(f"expected exactly 5 fields (minute hour day-of-month month day-of-week), "
                            f"found {len(parts)} in {text!r}")
        minute, hour, dom, month, dow = (_parse_field(p, f) for p, f in zip(parts, _FIELDS, strict=True))
        return cls(text=text, minutes=minute.values, hours=hour.values, days=frozenset(dom.values),
                   months=month.values, weekdays=frozenset(dow.values),
                   day_and=dom.star or dow.star,
                   fixed_time=not (minute.wildcard_or_step or hour.wildcard_or_step))

    @property
    def meaning(self) -> tuple[object, ...]:
        """What the expression matches, without how it is written: ``0 2 * * *``, ``0  2 * * *``
        and ``0 2 * * 0-6`` mean the same and must not count as a new schedule."""
        return (self.minutes, self.hours, self.days, self.months, self.weekdays, self.day_and, self.fixed_time)

    def matches_day(self, day: dt.date) -> bool:
        """Whether the day fields (and the month) let ``day`` match at some hour and minute."""
        return day.month in self.months and self._day_matches(day)

    def _day_matches(self, day: dt.date) -> bool:
        dom = day.day in self.days
        dow = (day.isoweekday() % 7) in self.weekdays
        return (dom and dow) if self.day_and else (dom or dow)

    def next_wall_time(self, after: dt.datetime) -> dt.datetime | None:
        """The first naive wall-clock minute strictly after ``after`` that matches, or None if
        there is none within five calendar years (robfig's limit)."""
        t = after.replace(second=0, microsecond=0) + MINUTE
        year_limit = t.year + SEARCH_YEARS
        while t.year <= year_limit:
            if t.month not in self.months:
                i = bisect.bisect_right(self.months, t.month)
                t = (dt.datetime(t.year, self.months[i], 1) if i < len(self.months)
                     else dt.datetime(t.year + 1, self.months[0], 1)) if self.months else _never(t)
                continue
            if not self._day_matches(t.date()):
                t = dt.datetime.combine(t.date() + dt.timedelta(days=1), dt.time())
                continue
            if t.hour not in self.hours:
                i = bisect.bisect_right(self.hours, t.hour)
                if i < len(self.hours):
                    t = t.replace(hour=self.hours[i], minute=0)
                else:
                    t = dt.datetime.combine(t.date() + dt.timedelta(days=1), dt.time())
                continue
            if t.minute not in self.minutes:
                i = bisect.bisect_right(self.minutes, t.minute)
                if i < len(self.minutes):
                    t = t.replace(minute=self.minutes[i])
                else:
                    t = t.replace(minute=0) + dt.timedelta(hours=1)
                continue
            return t
        return None


def _never(t: dt.datetime) -> dt.datetime:
    """Moves past the search limit: a field with no values at all (e.g. ',') never matches."""
    return dt.datetime(min(t.year + SEARCH_YEARS + 1, dt.MAXYEAR), 1, 1)


def load_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise CronError(f"unknown time zone {name!r}: use an IANA name such as 'Europe/Berlin'",
                        field="timezone") from error


def zone_identity(name: str) -> bytes:
    """What a time zone means: the rules it carries, so that ``UTC`` and ``Etc/UTC`` (or
    ``US/Eastern`` and ``America/New_York``) are one zone. tz database links are copies of one file,
    so the bytes of the file zoneinfo loads decide; a zone whose file cannot be found is its name."""
    load_zone(name)  # the name must be valid first (this also refuses paths such as '../x')
    for root in zoneinfo.TZPATH:
        path = os.path.join(root, *name.split("/"))
        if os.path.isfile(path):
            with open(path, "rb") as file:
                return hashlib.sha256(file.read()).digest()
    try:
        data = importlib.resources.files("tzdata.zoneinfo").joinpath(*name.split("/")).read_bytes()
    except (ModuleNotFoundError, FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return name.encode()
    return hashlib.sha256(data).digest()


@dataclass(frozen=True)
class CronSchedule:
    """A cron expression in a time zone: the instants at which it fires."""

    expression: CronExpression
    zone: ZoneInfo

    @classmethod
    def parse(cls, expression: str, timezone: str = "UTC") -> CronSchedule:
        return cls(CronExpression.parse(expression), load_zone(timezone))

    def next_after(self, after: dt.datetime) -> dt.datetime | None:
        """The first firing instant strictly after ``after`` (aware), in UTC; None if it never fires."""
        after = after.astimezone(UTC)
        local = after.astimezone(self.zone)
        wall = local.replace(tzinfo=None)
        candidate = self._first_candidate(wall, after)
        # Matching wall times are visited in order from `after`'s wall time, and each resolves to
        # its exact instants, so the first one found is the answer - unless clocks go back soon:
        # then the second pass through the repeated hour holds instants whose wall times lie
        # before `after`'s. Only then is the slower scan from before `after`'s wall time needed.
        if local.utcoffset() == (after + MAX_FOLD).astimezone(self.zone).utcoffset():
            return candidate
        return self._earliest_near_changes(wall, after, candidate)

    def _first_candidate(self, wall: dt.datetime, after: dt.datetime) -> dt.datetime | None:
        w: dt.datetime | None = wall
        while w is not None:
            w = self.expression.next_wall_time(w)
            if w is None:
                return None
            later = [i for i in self._instants(w) if i > after]
            if later:
                return min(later)
        return None

    def _earliest_near_changes(self, wall: dt.datetime, after: dt.datetime,
                               best: dt.datetime | None) -> dt.datetime | None:
        """Slow path before clocks go back: scan wall times from before ``after``'s wall time
        until no earlier instant than ``best`` can come."""
        w: dt.datetime | None = wall - MAX_FOLD
        while True:
            w = self.expression.next_wall_time(w) if w is not None else None
            horizon = (best.astimezone(self.zone).replace(tzinfo=None) if best else wall) + MAX_FOLD
            if w is None or w > horizon:
                return best
            for instant in self._instants(w):
                if after < instant and (best is None or instant < best):
                    best = instant

    def _instants(self, wall: dt.datetime) -> list[dt.datetime]:
        """The instants (UTC) at which a matching wall time fires, after the DST rules above."""
        first = wall.replace(tzinfo=self.zone, fold=0)
        second = wall.replace(tzinfo=self.zone, fold=1)
        first_offset, second_offset = first.utcoffset(), second.utcoffset()
        assert first_offset is not None and second_offset is not None
        if first_offset == second_offset:
            return [first.astimezone(UTC)]
        if first_offset > second_offset:  # a repeated wall time: clocks went back
            if self.expression.fixed_time:
                return [first.astimezone(UTC)]
            return [first.astimezone(UTC), second.astimezone(UTC)]
        # a wall time inside a gap: clocks went forward
        if self.expression.fixed_time:
            return [_gap_end(wall, first_offset, second_offset, self.zone)]
        return []


def _gap_end(wall: dt.datetime, before: dt.timedelta, after: dt.timedelta, zone: ZoneInfo) -> dt.datetime:
    """The instant a clock change ends the gap holding ``wall``: the first instant whose offset is
    ``after``, searched between the two readings of ``wall`` (whole seconds; changes are on seconds)."""
    low = int((wall - after).replace(tzinfo=UTC).timestamp())  # offset still `before` here
    high = int((wall - before).replace(tzinfo=UTC).timestamp())  # offset already `after` here
    while high - low > 1:
        middle = (low + high) // 2
        if dt.datetime.fromtimestamp(middle, UTC).astimezone(zone).utcoffset() == after:
            high = middle
        else:
            low = middle
    return dt.datetime.fromtimestamp(high, UTC)
