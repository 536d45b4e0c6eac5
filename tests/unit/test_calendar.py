"""Issue 22's calendar, pure: several cron lines, exclusions, an active window and a jitter, each a
`Schedule`, composed by `compose` and built from a spec by `time_schedule`."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import pytest

from tests.unit.conftest import ANCHOR, at, utc
from tests.unit.test_cron import firings
from trigger_operator.timemath import Schedule, moments
from trigger_operator.timemath.calendar import (
    MAX_STEPS,
    Excluding,
    Shifted,
    TooCostly,
    Union,
    Window,
    compose,
    jitter_offset,
)
from trigger_operator.timemath.cron import CronExpression, CronSchedule
from trigger_operator.timemath.due import CatchUpPolicy, due
from trigger_operator.timemath.interval import IntervalSchedule

BERLIN = ZoneInfo("Europe/Berlin")


def cron(*lines: str, zone: ZoneInfo = BERLIN) -> list[Schedule]:
    return [CronSchedule(CronExpression.parse(line), zone) for line in lines]


def excluding(*patterns: str) -> list[CronExpression]:
    return [CronExpression.parse(p) for p in patterns]


# --- union ----------------------------------------------------------------------------------------


def test_two_lines_are_their_union_and_a_shared_moment_runs_once() -> None:
    union = compose(cron("*/2 * * * *", "*/3 * * * *", zone=ZoneInfo("UTC")), zone=ZoneInfo("UTC"))
    assert isinstance(union, Union)
    assert [m.minute for m in firings(union, ANCHOR, at(minutes=12))] == [2, 3, 4, 6, 8, 9, 10, 12]


def test_one_line_stays_the_plain_cron_schedule() -> None:
    assert isinstance(compose(cron("0 2 * * *"), zone=BERLIN), CronSchedule)


def test_a_union_of_lines_that_never_fire_never_fires() -> None:
    assert compose(cron("0 0 30 2 *", "0 0 31 4 *"), zone=BERLIN).next_after(ANCHOR) is None


# --- daylight saving: two lines and an exclusion in Europe/Berlin ---------------------------------------


@pytest.mark.parametrize(("lines", "exclude", "start", "end", "expected"), [
    # Spring forward 2026-03-29 02:00 CET -> 03:00 CEST. The hourly line has no 02:00 that day;
    # the fixed 02:30 runs at the first instant after the gap, 03:00 CEST, which the hourly line
    # also makes: once. 04:00 CEST is excluded on the wall clock.
    pytest.param(["0 * * * *", "30 2 * * *"], ["0 4 * * *"], "2026-03-28T23:30", "2026-03-29T03:30",
                 ["2026-03-29T00:00", "2026-03-29T01:00", "2026-03-29T03:00"], id="spring-forward"),
    # Fall back 2026-10-25 03:00 CEST -> 02:00 CET. The repeating line fires in both passes through
    # 02:xx; the fixed 02:30 once (the first pass, shared); the exclusion of 02:00 removes both 02:00s.
    pytest.param(["*/30 2 * * *", "30 2 * * *"], ["0 2 * * *"], "2026-10-24T23:00", "2026-10-26T02:00",
                 ["2026-10-25T00:30", "2026-10-25T01:30", "2026-10-26T01:30"], id="fall-back"),
    # An exclusion of the whole repeated hour removes both passes, and the day after is untouched.
    pytest.param(["*/30 * * * *"], ["* 2 25 10 *"], "2026-10-24T23:20", "2026-10-25T02:10",
                 ["2026-10-24T23:30", "2026-10-25T02:00"], id="fall-back-hour-excluded"),
])
def test_daylight_saving_with_two_lines_and_an_exclusion(lines: list[str], exclude: list[str], start: str,
                                                         end: str, expected: list[str]) -> None:
    schedule = compose(cron(*lines), zone=BERLIN, exclude_cron=excluding(*exclude))
    assert firings(schedule, utc(start), utc(end)) == [utc(e) for e in expected]


# --- exclusions -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("lines", "exclude_cron", "dates", "start", "expected"), [
    pytest.param(["0 9 * * *"], ["* * * * 0"], [], "2026-03-06T12:00",  # Friday noon
                 ["2026-03-07T08:00", "2026-03-09T08:00"], id="no-sundays"),
    pytest.param(["0 9 * * *"], ["* * 25 12 *"], [], "2026-12-24T12:00",
                 ["2026-12-26T08:00", "2026-12-27T08:00"], id="no-christmas"),
    pytest.param(["0 9 * * 1-5", "0 12 * * 6"], [], ["2026-04-03", "2026-04-04", "2026-04-06"],
                 "2026-04-02T12:00", ["2026-04-07T07:00", "2026-04-08T07:00"], id="holiday-list"),
    pytest.param(["*/15 * * * *"], ["* 12 * * *", "0-29 13 * * *"], [], "2026-03-02T10:50",  # 11:50 Berlin
                 ["2026-03-02T12:30", "2026-03-02T12:45", "2026-03-02T13:00", "2026-03-02T13:15"],
                 id="no-lunch-hour-and-a-half"),
    # Dates are whole days in the Trigger's zone: 00:30 Berlin on the 3rd is 23:30 UTC on the 2nd.
    pytest.param(["30 0 * * *"], [], ["2026-03-03"], "2026-03-01T12:00",
                 ["2026-03-01T23:30", "2026-03-03T23:30"], id="dates-in-the-zone"),
])
def test_exclusions_remove_the_moments_they_match(lines: list[str], exclude_cron: list[str], dates: list[str],
                                                  start: str, expected: list[str]) -> None:
    schedule = compose(cron(*lines), zone=BERLIN, exclude_cron=excluding(*exclude_cron),
                       exclude_dates={dt.date.fromisoformat(d) for d in dates})
    assert moments(schedule, utc(start), len(expected)) == [utc(e) for e in expected]


@pytest.mark.parametrize(("lines", "exclude_cron", "dates"), [
    pytest.param(["0 9 * * *"], ["* * * * *"], [], id="everything-excluded"),
    pytest.param(["*/2 * * * *"], ["*/2 * * * *"], [], id="each-moment-one-by-one"),
    pytest.param(["* * * * *"], ["0-29 * * * *", "30-59 * * * *"], [], id="two-halves-make-every-hour"),
    pytest.param(["0 9 * * 1-5"], ["* * * * 1-5"], [], id="weekdays-less-weekdays"),
    # Feb 29 2028 is the only leap day within five years of 2026; 2032's is past the search.
    pytest.param(["0 0 29 2 *"], [], ["2028-02-29"], id="the-one-leap-day-excluded"),
])
def test_exclusions_that_remove_every_moment_end_the_search(lines: list[str], exclude_cron: list[str],
                                                            dates: list[str]) -> None:
    schedule = compose(cron(*lines, zone=ZoneInfo("UTC")), zone=ZoneInfo("UTC"), exclude_cron=excluding(*exclude_cron),
                       exclude_dates={dt.date.fromisoformat(d) for d in dates})
    started = time.monotonic()
    assert schedule.next_after(ANCHOR) is None
    assert time.monotonic() - started < 20  # bounded: it ends (whole days and hours are skipped at once)


def test_an_interval_is_judged_by_the_wall_clock_minute_each_moment_falls_in() -> None:
    every_6h = IntervalSchedule(origin=utc("2026-03-06T23:00:30"), period=dt.timedelta(hours=6))  # Sat 00:00:30
    schedule = compose([every_6h], zone=BERLIN, exclude_cron=excluding("* * * * 0", "0 12 * * *"))
    # Saturday 06:00:30 and 18:00:30 run, 12:00:30 falls in the excluded minute 12:00; Sunday is skipped.
    assert moments(schedule, utc("2026-03-06T23:00:30"), 3) == [
        utc("2026-03-07T05:00:30"), utc("2026-03-07T17:00:30"), utc("2026-03-08T23:00:30")]


# --- window ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("start", "end", "after", "expected"), [
    pytest.param(at(minutes=2), at(minutes=5), ANCHOR, [at(minutes=2), at(minutes=3), at(minutes=4)],
                 id="start-inclusive-end-exclusive"),
    pytest.param(at(minutes=2, seconds=1), None, ANCHOR, [at(minutes=3), at(minutes=4), at(minutes=5)],
                 id="start-between-moments"),
    pytest.param(None, at(minutes=2), ANCHOR, [at(minutes=1)], id="only-an-end"),
    pytest.param(None, at(minutes=2), at(minutes=2), [], id="after-the-end"),
    pytest.param(at(minutes=2), at(minutes=5), at(minutes=3), [at(minutes=4)], id="inside"),
    pytest.param(at(days=3000), None, ANCHOR, [at(days=3000), at(days=3000, minutes=1), at(days=3000, minutes=2)],
                 id="a-start-years-ahead-searches-from-the-start"),
])
def test_the_window_holds_start_to_just_before_end(start: dt.datetime | None, end: dt.datetime | None,
                                                   after: dt.datetime, expected: list[dt.datetime]) -> None:
    schedule = compose(cron("* * * * *", zone=ZoneInfo("UTC")), zone=ZoneInfo("UTC"), start=start, end=end)
    assert isinstance(schedule, Window)
    assert moments(schedule, after, 3) == expected


# --- jitter ---------------------------------------------------------------------------------------


def test_jitter_offsets_are_whole_seconds_within_the_bound_and_spread() -> None:
    offsets = [jitter_offset("team-a", f"t-{i}", 30) for i in range(1000)]
    assert all(o.microseconds == 0 and dt.timedelta(0) <= o < dt.timedelta(seconds=30) for o in offsets)
    assert len(set(offsets)) == 30  # every second of the 30 is used by some Trigger
    assert jitter_offset("team-a", "t-1", 0) == jitter_offset("team-a", "t-1", 1) == dt.timedelta(0)
    assert jitter_offset("team-a", "t-1", 3600) != jitter_offset("team-b", "t-1", 3600)  # the namespace counts


def test_a_jitter_offset_is_the_same_in_every_process() -> None:
    """Another replica or a restarted operator computes the same offset: SHA-256, not the salted hash()."""
    code = ("from trigger_operator.timemath.calendar import jitter_offset;"
            "print([int(jitter_offset('ns', f'n{i}', 3600).total_seconds()) for i in range(20)])")
    here = str([int(jitter_offset("ns", f"n{i}", 3600).total_seconds()) for i in range(20)])
    for seed in ("0", "1", "12345"):
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": seed})
        assert run.stdout.strip() == here


def test_a_shifted_schedule_moves_every_moment_by_the_offset() -> None:
    shifted = compose(cron("* * * * *", zone=ZoneInfo("UTC")), zone=ZoneInfo("UTC"), offset=dt.timedelta(seconds=17))
    assert isinstance(shifted, Shifted)
    assert moments(shifted, ANCHOR, 3) == [at(seconds=17), at(minutes=1, seconds=17), at(minutes=2, seconds=17)]
    # Between a nominal moment and its shifted one, the shifted one is next.
    assert shifted.next_after(at(minutes=1, seconds=5)) == at(minutes=1, seconds=17)


def test_exclusions_and_the_window_judge_the_nominal_moment_not_the_shifted_one() -> None:
    utc_zone = ZoneInfo("UTC")
    offset = dt.timedelta(seconds=3000)
    schedule = compose(cron("59 23 * * *", zone=utc_zone), zone=utc_zone, exclude_dates={dt.date(2026, 3, 3)},
                       end=utc("2026-03-04T23:59:01"), offset=offset)
    # 2 March 23:59 runs, shifted into 3 March; 3 March's is excluded; 4 March's 23:59 is inside the
    # window even though its shifted moment is past endAt.
    assert moments(schedule, ANCHOR, 3) == [utc("2026-03-02T23:59") + offset, utc("2026-03-04T23:59") + offset]


def test_due_runs_the_shifted_moment_and_its_deadline_counts_from_it() -> None:
    offset = dt.timedelta(seconds=20)
    schedule = compose(cron("* * * * *", zone=ZoneInfo("UTC")), zone=ZoneInfo("UTC"), offset=offset)
    early = due(schedule, earliest=ANCHOR, now=at(minutes=1, seconds=10), deadline=None, policy=CatchUpPolicy.ALL)
    assert early.run == (at(seconds=20),)  # 10:01:00 is not due before 10:01:20
    late = due(schedule, earliest=ANCHOR, now=at(minutes=1, seconds=40), deadline=dt.timedelta(seconds=30),
               policy=CatchUpPolicy.ALL)
    assert late.run == (at(minutes=1, seconds=20),) and late.missed == 1


def test_excluding_alone_is_a_schedule_over_any_base() -> None:
    base = IntervalSchedule(origin=ANCHOR, period=dt.timedelta(minutes=30))
    schedule = Excluding(base, tuple(excluding("30 * * * *")), frozenset(), ZoneInfo("UTC"))
    assert moments(schedule, ANCHOR, 2) == [at(hours=1), at(hours=2)]


# --- the cost of a search (review of issue 22: one tenant's exclusions stalled every Trigger) ------

LINES_17 = ["*/2 * * * *"] + [f"{m}-58/2 * * * *" for m in range(2, 34, 2)]
EXCLUDED_16 = ["*/2 * * 1-2 *"] + [f"{m}-58/2 * * 1-2 *" for m in range(2, 32, 2)]


def _excluding_of(schedule: Schedule) -> Excluding:
    assert isinstance(schedule, Excluding)
    return schedule


@pytest.mark.parametrize(("lines", "exclude", "expected"), [
    # Every moment of the lines falls on an excluded minute for two months: found a day at a time.
    pytest.param(["*/2 * * * *"], ["*/2 * * 1-2 *"], "2027-03-01T00:00", id="one-line"),
    pytest.param(LINES_17, EXCLUDED_16, "2027-03-01T00:00", id="17-lines-16-exclusions"),
    pytest.param(["*/2 * * * *"], ["*/2 * * 1-3 *"], "2027-04-01T00:00", id="a-quarter"),
    # Five years searched for nothing: each day is one step.
    pytest.param(["*/2 * * * *"], ["*/2 * * * *"], None, id="never-one-line"),
    pytest.param(LINES_17, ["*/2 * * * *"], None, id="never-17-lines"),
])
def test_the_search_passes_over_whole_days_the_exclusions_empty(lines: list[str], exclude: list[str],
                                                                expected: str | None) -> None:
    utc_zone = ZoneInfo("UTC")
    schedule = _excluding_of(compose(cron(*lines, zone=utc_zone), zone=utc_zone, exclude_cron=excluding(*exclude)))
    assert schedule.next_after(utc("2027-01-01T00:00:30")) == (utc(expected) if expected else None)
    # Counted, not timed: about one step per day searched (Jan + Feb: 59 days), never one per minute.
    days = 60 if expected == "2027-03-01T00:00" else 91 if expected else 366 * 5 + 1
    assert schedule.meter.last <= days + 40 <= MAX_STEPS


def test_an_interval_lattice_on_excluded_minutes_is_searched_by_day() -> None:
    every_2_min = IntervalSchedule(origin=utc("2027-01-01T00:00"), period=dt.timedelta(minutes=2))
    schedule = _excluding_of(compose([every_2_min], zone=BERLIN, exclude_cron=excluding("*/2 * * 1-3 *")))
    assert schedule.next_after(utc("2027-01-01T00:00:30")) == utc("2027-03-31T22:00")  # 1 April 00:00 CEST
    # A step a day, and the lattice's 720 moments a day learnt three times, not 90: the day of its
    # origin, any later day (the same phase: cached), the day clocks change (29 March).
    assert schedule.meter.last <= 91 + 3 * 720 + 40 <= MAX_STEPS


@dataclass(frozen=True)
class EvenMinutes:
    """A schedule of no known shape (every even minute): the search must look at its moments."""

    def next_after(self, after: dt.datetime) -> dt.datetime | None:
        t = after.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        return t + dt.timedelta(minutes=t.minute % 2)


def test_a_search_past_the_step_bound_stops_as_too_costly() -> None:
    schedule = Excluding(EvenMinutes(), tuple(excluding("*/2 * * * *")), frozenset(), ZoneInfo("UTC"))
    with pytest.raises(TooCostly, match="too costly to evaluate"):
        schedule.next_after(ANCHOR)
    assert schedule.meter.peak == MAX_STEPS + 1


def test_an_exclusion_at_the_end_of_the_first_pass_keeps_the_second_pass_through_the_repeated_hour() -> None:
    line = cron("*/10 * * * *")
    schedule = compose(line, zone=BERLIN, exclude_cron=excluding("50-59 2 * * *"))
    start, end = utc("2026-10-24T23:55"), utc("2026-10-25T02:30")  # 01:55 CEST .. 03:30 CET
    kept = [m for m in firings(line[0], start, end)
            if not (m.astimezone(BERLIN).hour == 2 and m.astimezone(BERLIN).minute >= 50)]
    assert utc("2026-10-25T01:00") in kept  # 02:00 CET, the second pass
    assert firings(schedule, start, end) == kept
