"""Cron expressions: robfig/cron syntax, the CronJob day rule, and classic-cron daylight saving."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import re
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.conftest import ANCHOR, UTC, at, utc
from trigger_operator.timemath import Schedule
from trigger_operator.timemath.cron import CronError, CronExpression, CronSchedule


def firings(schedule: Schedule, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    """Every instant the schedule fires in (start, end], by following next_after."""
    found: list[dt.datetime] = []
    moment = schedule.next_after(start)
    while moment is not None and moment <= end:
        found.append(moment)
        moment = schedule.next_after(moment)
    return found


# --- parsing ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "field", "expected"), [
    pytest.param("*/15 * * * *", "minutes", (0, 15, 30, 45), id="a-star-step-counts-from-the-minimum"),
    pytest.param("5/20 * * * *", "minutes", (5, 25, 45), id="a-start-step-runs-to-the-maximum"),
    pytest.param("10-12 * * * *", "minutes", (10, 11, 12), id="a-range-includes-both-ends"),
    pytest.param("0-30/10 * * * *", "minutes", (0, 10, 20, 30), id="a-stepped-range-stays-inside-the-range"),
    pytest.param("0 9,17 * * *", "hours", (9, 17), id="a-list-holds-each-value"),
    pytest.param("0 1-3,2-4 * * *", "hours", (1, 2, 3, 4), id="overlapping-list-items-merge"),
    pytest.param("0 0 * jan-mar *", "months", (1, 2, 3), id="month-names-make-a-range"),
    pytest.param("0 0 * JAN,Dec *", "months", (1, 12), id="month-names-ignore-case"),
    pytest.param("0 0 * * MON", "weekdays", frozenset({1}), id="weekday-names-ignore-case"),
    pytest.param("0 0 * * sun-sat", "weekdays", frozenset(range(7)), id="sunday-is-zero-and-saturday-six"),
    pytest.param("0 0 ? * ?", "weekdays", frozenset(range(7)), id="a-question-mark-is-a-star"),
    pytest.param("+5 * * * *", "minutes", (5,), id="a-plus-sign-is-allowed-as-in-go"),
])
def test_parse_reads_each_field_form(text: str, field: str, expected: object) -> None:
    assert getattr(CronExpression.parse(text), field) == expected


@pytest.mark.parametrize(("macro", "equivalent"), [
    pytest.param("@yearly", "0 0 1 1 *", id="yearly"),
    pytest.param("@annually", "0 0 1 1 *", id="annually"),
    pytest.param("@monthly", "0 0 1 * *", id="monthly"),
    pytest.param("@weekly", "0 0 * * 0", id="weekly-on-sunday"),
    pytest.param("@daily", "0 0 * * *", id="daily"),
    pytest.param("@midnight", "0 0 * * *", id="midnight"),
    pytest.param("@hourly", "0 * * * *", id="hourly"),
])
def test_macro_means_its_five_field_expression(macro: str, equivalent: str) -> None:
    parsed = CronExpression.parse(macro)
    assert parsed.text == macro
    assert dataclasses.replace(parsed, text=equivalent) == CronExpression.parse(equivalent)


@pytest.mark.parametrize(("text", "message"), [
    pytest.param("61 * * * *", "minute field: 61 in '61' is above the maximum 59", id="minute-above-59"),
    pytest.param("x * * * *", "minute field: 'x' in 'x' is not a number", id="minute-not-a-number"),
    pytest.param("-1 * * * *", "minute field", id="negative-minute"),
    pytest.param("*/0 * * * *", "minute field: step in '*/0' must be a positive number", id="step-of-zero"),
    pytest.param("1/2/3 * * * *", "minute field: too many slashes", id="two-slashes"),
    pytest.param("0 24 * * *", "hour field: 24 in '24' is above the maximum 23", id="hour-24"),
    pytest.param("0 5-1 * * *", "hour field: range '5-1' starts after it ends", id="backwards-range"),
    pytest.param("0 1-2-3 * * *", "hour field: too many hyphens", id="two-hyphens"),
    pytest.param("0 0 0 * *", "day-of-month field: 0 in '0' is below the minimum 1", id="day-of-month-0"),
    pytest.param("0 0 32 * *", "day-of-month field: 32", id="day-of-month-32"),
    pytest.param("0 0 * 13 *", "month field: 13 in '13' is above the maximum 12", id="month-13"),
    pytest.param("0 0 * jab *", "month field: 'jab' in 'jab' is not a number or a name", id="misspelt-month"),
    pytest.param("0 0 * * 7", "day-of-week field: 7 in '7' is above the maximum 6", id="seven-for-sunday"),
    pytest.param("0 0 * * 1-7", "day-of-week field: 7 in '1-7' is above the maximum 6",
                 id="seven-for-sunday-in-a-range"),
    pytest.param("0 0 * * funday", "day-of-week field: 'funday'", id="unknown-weekday-name"),
    pytest.param("0 0 0 * * *", "expected exactly 5 fields", id="six-fields-with-seconds"),
    pytest.param("0 0 * *", "expected exactly 5 fields", id="four-fields"),
    pytest.param("", "the cron expression is empty", id="empty"),
    pytest.param("@every 5m", "'@every' is not supported", id="every-macro"),
    pytest.param("@reboot", "unknown macro '@reboot'", id="reboot-macro"),
    pytest.param("@hourly ", "unknown macro '@hourly '", id="macro-with-trailing-space"),
    pytest.param("TZ=Europe/Berlin 0 2 * * *", "a time zone inside the expression is not supported",
                 id="tz-prefix"),
    pytest.param("CRON_TZ=UTC 0 2 * * *", "a time zone inside the expression is not supported",
                 id="cron-tz-prefix"),
])
def test_parse_refuses_with_a_message_naming_the_problem(text: str, message: str) -> None:
    with pytest.raises(CronError, match=re.escape(message)):
        CronExpression.parse(text)


def test_unknown_time_zone_is_refused_by_name() -> None:
    with pytest.raises(CronError, match=re.escape("unknown time zone 'Mars/Base'")):
        CronSchedule.parse("0 0 * * *", "Mars/Base")


@pytest.mark.parametrize(("text", "fixed_time"), [
    pytest.param("30 1 * * *", True, id="daily-at-a-time"),
    pytest.param("0,30 2 * * *", True, id="a-list-of-times"),
    pytest.param("0 1-3 * * *", True, id="a-range-of-hours"),
    pytest.param("*/30 * * * *", False, id="a-minute-step"),
    pytest.param("30 * * * *", False, id="a-star-hour"),
    pytest.param("0 */2 * * *", False, id="an-hour-step"),
    pytest.param("0 1-5/1 * * *", False, id="a-step-of-one"),
])
def test_a_job_is_fixed_time_unless_minute_or_hour_has_a_star_or_step(text: str, fixed_time: bool) -> None:
    assert CronExpression.parse(text).fixed_time is fixed_time


# --- firing times in UTC ----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "after", "expected"), [
    pytest.param("* * * * *", at(), at(minutes=1), id="every-minute-is-strictly-after"),
    pytest.param("* * * * *", at(seconds=59, microseconds=5), at(minutes=1), id="seconds-are-dropped"),
    pytest.param("@hourly", at(minutes=1), at(hours=1), id="hourly-macro-at-the-next-full-hour"),
    pytest.param("0 2 * * *", at(), utc("2026-03-03T02:00"), id="daily-at-two-is-tomorrow"),
    pytest.param("0 2 * * *", utc("2026-03-03T01:59:59"), utc("2026-03-03T02:00"), id="daily-just-before"),
    pytest.param("*/15 * * * *", at(minutes=16), at(minutes=30), id="minute-step"),
    pytest.param("5/20 * * * *", at(minutes=46), at(hours=1, minutes=5), id="start-step-wraps-the-hour"),
    pytest.param("10-12 * * * *", at(minutes=12), at(hours=1, minutes=10), id="range-wraps-the-hour"),
    pytest.param("0 9,17 * * *", at(), utc("2026-03-02T17:00"), id="second-item-of-a-list"),
    pytest.param("0 0 1 */3 *", at(), utc("2026-04-01T00:00"), id="quarterly-month-step"),
    pytest.param("0 0 * * sat", at(), utc("2026-03-07T00:00"), id="weekday-name"),
    pytest.param("59 23 31 12 *", at(), utc("2026-12-31T23:59"), id="last-minute-of-the-year"),
    pytest.param("0 0 1 1 *", utc("2026-12-31T23:59"), utc("2027-01-01T00:00"), id="into-the-next-year"),
])
def test_next_after_in_utc(text: str, after: dt.datetime, expected: dt.datetime) -> None:
    assert CronSchedule.parse(text).next_after(after) == expected


def test_next_after_returns_utc_for_an_aware_start_in_another_zone() -> None:
    found = CronSchedule.parse("0 12 * * *").next_after(at().astimezone(ZoneInfo("Asia/Tokyo")))
    assert found == utc("2026-03-02T12:00")
    assert found is not None and found.tzinfo == UTC


@pytest.mark.parametrize(("text", "dates"), [
    pytest.param("0 0 13 * 5", ["03-06", "03-13", "03-20", "03-27", "04-03", "04-10", "04-13"],
                 id="both-restricted-fires-on-the-13th-or-a-friday"),
    pytest.param("0 0 13 * *", ["03-13", "04-13"], id="star-weekday-fires-on-the-13th-only"),
    pytest.param("0 0 13 * */1", ["03-13", "04-13"], id="weekday-step-of-one-counts-as-a-star"),
    pytest.param("0 0 13 * ?", ["03-13", "04-13"], id="weekday-question-mark-counts-as-a-star"),
    pytest.param("0 0 * * 5", ["03-06", "03-13", "03-20", "03-27", "04-03", "04-10"],
                 id="star-day-of-month-fires-on-fridays-only"),
    pytest.param("0 0 */1 * 5", ["03-06", "03-13", "03-20", "03-27", "04-03", "04-10"],
                 id="day-of-month-step-of-one-counts-as-a-star"),
    pytest.param("0 0 13 * */2", ["03-03", "03-05", "03-07", "03-08", "03-10", "03-12", "03-13", "03-14"],
                 id="weekday-step-of-two-is-restricted-so-either-matches"),
    pytest.param("0 0 1-31 * 5", ["03-03", "03-04", "03-05", "03-06", "03-07", "03-08", "03-09", "03-10"],
                 id="a-full-range-is-no-star-so-every-day-matches"),
])
def test_day_of_month_and_day_of_week_combine_like_cronjob(text: str, dates: list[str]) -> None:
    found = firings(CronSchedule.parse(text), ANCHOR, utc("2026-04-15T00:00"))
    assert [m.strftime("%m-%d") for m in found][: len(dates)] == dates


@pytest.mark.parametrize(("text", "after", "expected"), [
    pytest.param("0 0 29 2 *", at(), utc("2028-02-29T00:00"), id="leap-day-waits-for-the-leap-year"),
    pytest.param("0 0 29 2 *", utc("2028-02-29T00:00"), utc("2032-02-29T00:00"),
                 id="leap-day-every-four-years"),
    pytest.param("0 0 29 2 *", utc("2099-03-01T00:00"), utc("2104-02-29T00:00"),
                 id="2104-is-within-five-years-of-2099"),
    pytest.param("0 0 29 2 *", utc("2097-03-01T00:00"), None, id="2100-is-no-leap-year-and-2104-too-far"),
    pytest.param("0 0 30 2 *", at(), None, id="february-30th-never-comes"),
    pytest.param("0 0 31 4 *", at(), None, id="april-31st-never-comes"),
    pytest.param("0 0 31 4,6,9,11 *", at(), None, id="no-thirty-day-month-has-a-31st"),
    pytest.param(", * * * *", at(), None, id="an-empty-minute-list-never-matches"),
    pytest.param("0 0 31 2 fri", at(), utc("2027-02-05T00:00"),
                 id="an-impossible-date-or-a-weekday-fires-on-the-weekday"),
])
def test_rare_and_impossible_dates(text: str, after: dt.datetime, expected: dt.datetime | None) -> None:
    assert CronSchedule.parse(text).next_after(after) == expected


# --- daylight saving --------------------------------------------------------------------------------
# America/New_York 2026: spring forward 03-08 02:00 EST -> 03:00 EDT (07:00Z); fall back 11-01
# 02:00 EDT -> 01:00 EST (06:00Z). Europe/Berlin 2026: 03-29 and 10-25, both at 01:00Z.
# Australia/Lord_Howe (30-minute shift): back 04-05 02:00 -> 01:30 (2026-04-04T15:00Z); forward
# 10-04 02:00 -> 02:30 (2026-10-03T15:30Z).


@pytest.mark.parametrize(("text", "zone", "start", "end", "expected"), [
    pytest.param("30 1 * * *", "America/New_York", "2026-10-31T00:00", "2026-11-03T00:00",
                 ["2026-10-31T05:30", "2026-11-01T05:30", "2026-11-02T06:30"],
                 id="new-york-fixed-time-job-runs-once-at-the-first-0130-when-clocks-go-back"),
    pytest.param("30 2 * * *", "America/New_York", "2026-03-07T00:00", "2026-03-10T00:00",
                 ["2026-03-07T07:30", "2026-03-08T07:00", "2026-03-09T06:30"],
                 id="new-york-fixed-time-in-the-gap-runs-once-when-the-gap-ends"),
    pytest.param("0,30 2 * * *", "America/New_York", "2026-03-07T00:00", "2026-03-10T00:00",
                 ["2026-03-07T07:00", "2026-03-07T07:30", "2026-03-08T07:00", "2026-03-09T06:00",
                  "2026-03-09T06:30"],
                 id="new-york-two-fixed-times-in-the-gap-run-once-together"),
    pytest.param("*/30 * * * *", "America/New_York", "2026-11-01T04:00", "2026-11-01T07:00",
                 ["2026-11-01T04:30", "2026-11-01T05:00", "2026-11-01T05:30", "2026-11-01T06:00",
                  "2026-11-01T06:30", "2026-11-01T07:00"],
                 id="new-york-half-hourly-fires-in-both-passes-through-the-repeated-hour"),
    pytest.param("30 * * * *", "America/New_York", "2026-11-01T04:00", "2026-11-01T08:00",
                 ["2026-11-01T04:30", "2026-11-01T05:30", "2026-11-01T06:30", "2026-11-01T07:30"],
                 id="new-york-hourly-at-half-past-fires-at-0130-edt-and-0130-est"),
    pytest.param("*/30 * * * *", "America/New_York", "2026-03-08T05:00", "2026-03-08T08:00",
                 ["2026-03-08T05:30", "2026-03-08T06:00", "2026-03-08T06:30", "2026-03-08T07:00",
                  "2026-03-08T07:30", "2026-03-08T08:00"],
                 id="new-york-half-hourly-skips-the-wall-times-in-the-gap"),
    pytest.param("30 2 * * *", "Europe/Berlin", "2026-03-28T00:00", "2026-03-31T00:00",
                 ["2026-03-28T01:30", "2026-03-29T01:00", "2026-03-30T00:30"],
                 id="berlin-fixed-time-in-the-gap-runs-at-0300-cest"),
    pytest.param("30 2 * * *", "Europe/Berlin", "2026-10-24T00:00", "2026-10-27T00:00",
                 ["2026-10-24T00:30", "2026-10-25T00:30", "2026-10-26T01:30"],
                 id="berlin-fixed-time-in-the-repeated-hour-runs-once-in-summer-time"),
    pytest.param("*/30 2 * * *", "Europe/Berlin", "2026-10-24T23:00", "2026-10-25T03:00",
                 ["2026-10-25T00:00", "2026-10-25T00:30", "2026-10-25T01:00", "2026-10-25T01:30"],
                 id="berlin-stepped-minutes-in-the-repeated-hour-fire-in-both-passes"),
    pytest.param("45 1 * * *", "Australia/Lord_Howe", "2026-04-03T00:00", "2026-04-06T00:00",
                 ["2026-04-03T14:45", "2026-04-04T14:45", "2026-04-05T15:15"],
                 id="lord-howe-fixed-time-in-the-repeated-half-hour-runs-once"),
    pytest.param("*/15 1 * * *", "Australia/Lord_Howe", "2026-04-04T13:00", "2026-04-04T16:00",
                 ["2026-04-04T14:00", "2026-04-04T14:15", "2026-04-04T14:30", "2026-04-04T14:45",
                  "2026-04-04T15:00", "2026-04-04T15:15"],
                 id="lord-howe-quarter-hourly-fires-in-both-passes-through-the-repeated-half-hour"),
    pytest.param("15 2 * * *", "Australia/Lord_Howe", "2026-10-02T00:00", "2026-10-05T00:00",
                 ["2026-10-02T15:45", "2026-10-03T15:30", "2026-10-04T15:15"],
                 id="lord-howe-fixed-time-in-the-half-hour-gap-runs-when-it-ends"),
    pytest.param("*/15 2 * * *", "Australia/Lord_Howe", "2026-10-03T14:00", "2026-10-03T17:00",
                 ["2026-10-03T15:30", "2026-10-03T15:45"],
                 id="lord-howe-quarter-hourly-skips-the-half-hour-gap"),
])
def test_clock_changes_follow_classic_cron(text: str, zone: str, start: str, end: str,
                                           expected: list[str]) -> None:
    found = firings(CronSchedule.parse(text, zone), utc(start), utc(end))
    assert found == [utc(e) for e in expected]


@pytest.mark.parametrize(("text", "zone", "after", "expected"), [
    pytest.param("*/30 * * * *", "America/New_York", "2026-11-01T05:45", "2026-11-01T06:00",
                 id="from-0145-edt-the-next-is-0100-est"),
    pytest.param("*/30 1 * * *", "America/New_York", "2026-11-01T05:45", "2026-11-01T06:00",
                 id="daily-during-one-oclock-from-0145-edt-the-next-is-0100-est"),
    pytest.param("*/30 * * * *", "America/New_York", "2026-11-01T06:10", "2026-11-01T06:30",
                 id="from-inside-the-second-pass"),
    pytest.param("30 1 * * *", "America/New_York", "2026-11-01T06:10", "2026-11-02T06:30",
                 id="fixed-time-does-not-run-again-in-the-second-pass"),
    pytest.param("30 2 * * *", "America/New_York", "2026-03-08T06:59:59", "2026-03-08T07:00",
                 id="fixed-time-just-before-the-gap-ends"),
    pytest.param("30 2 * * *", "America/New_York", "2026-03-08T07:00", "2026-03-09T06:30",
                 id="fixed-time-after-the-gap-run-waits-a-day"),
    pytest.param("0 3 * * *", "America/New_York", "2026-03-08T06:00", "2026-03-08T07:00",
                 id="the-first-wall-time-after-the-gap-fires-normally"),
])
def test_next_after_from_a_start_near_a_clock_change(text: str, zone: str, after: str, expected: str) -> None:
    assert CronSchedule.parse(text, zone).next_after(utc(after)) == utc(expected)


@pytest.mark.parametrize(("text", "zone", "after", "expected"), [
    pytest.param("*/30 1 1 11 *", "America/New_York", "2026-11-01T05:45", "2026-11-01T06:00",
                 id="new-york-yearly-repeating-job-on-fall-back-day"),
    pytest.param("*/30 2 25 10 *", "Europe/Berlin", "2026-10-25T00:45", "2026-10-25T01:00",
                 id="berlin-yearly-repeating-job-on-fall-back-day"),
])
def test_repeating_job_on_one_date_fires_in_the_second_pass_of_the_repeated_hour(
        text: str, zone: str, after: str, expected: str) -> None:
    assert CronSchedule.parse(text, zone).next_after(utc(after)) == utc(expected)


_CHANGES = [
    pytest.param("America/New_York", "2026-03-08T07:00", id="new-york-spring-forward"),
    pytest.param("America/New_York", "2026-11-01T06:00", id="new-york-fall-back"),
    pytest.param("Europe/Berlin", "2026-03-29T01:00", id="berlin-spring-forward"),
    pytest.param("Europe/Berlin", "2026-10-25T01:00", id="berlin-fall-back"),
    pytest.param("Australia/Lord_Howe", "2026-04-04T15:00", id="lord-howe-fall-back"),
    pytest.param("Australia/Lord_Howe", "2026-10-03T15:30", id="lord-howe-spring-forward"),
]


@pytest.mark.parametrize(("zone", "change"), _CHANGES)
@pytest.mark.parametrize("text", ["30 1 * * *", "30 2 * * *", "0 2 * * *", "59 1 * * *", "0 1 * * *",
                                  "0 3 * * *"])
def test_fixed_time_job_runs_exactly_once_each_local_day_around_a_clock_change(
        zone: str, change: str, text: str) -> None:
    tz = ZoneInfo(zone)
    change_day = utc(change).astimezone(tz).date()
    days = [change_day + dt.timedelta(days=i) for i in range(-2, 3)]
    start = dt.datetime.combine(days[0], dt.time(), tz)
    end = dt.datetime.combine(days[-1] + dt.timedelta(days=1), dt.time(), tz)
    found = firings(CronSchedule.parse(text, zone), start, end)
    assert [m.astimezone(tz).date() for m in found] == days
    assert all(earlier < later for earlier, later in itertools.pairwise(found))


@pytest.mark.parametrize(("zone", "change"), _CHANGES)
@pytest.mark.parametrize("text", ["* * * * *", "*/30 * * * *", "30 * * * *", "*/15 1,2 * * *", "0 */2 * * *"])
def test_repeating_job_never_returns_an_instant_twice_around_a_clock_change(
        zone: str, change: str, text: str) -> None:
    found = firings(CronSchedule.parse(text, zone), utc(change) - dt.timedelta(days=2),
                    utc(change) + dt.timedelta(days=2))
    assert found
    assert all(earlier < later for earlier, later in itertools.pairwise(found))


# --- a minute-by-minute reading of the module docstring's rules -------------------------------------


def _wall_matches(expression: CronExpression, wall: dt.datetime) -> bool:
    dom = wall.day in expression.days
    dow = wall.isoweekday() % 7 in expression.weekdays
    day = (dom and dow) if expression.day_and else (dom or dow)
    return (wall.minute in expression.minutes and wall.hour in expression.hours
            and wall.month in expression.months and day)


def _fires_by_the_rules(expression: CronExpression, tz: ZoneInfo, instant: dt.datetime) -> bool:
    """Whether the docstring's rules fire at this whole UTC minute (clock changes fall on minutes)."""
    local = instant.astimezone(tz)
    wall = local.replace(tzinfo=None)
    if not expression.fixed_time:
        return _wall_matches(expression, wall)  # each existing wall time, once per occurrence
    second_pass = wall.replace(tzinfo=tz, fold=0).astimezone(UTC) != instant
    if _wall_matches(expression, wall) and not second_pass:
        return True
    offset_before = (instant - dt.timedelta(minutes=1)).astimezone(tz).utcoffset()
    offset_now = local.utcoffset()
    assert offset_before is not None and offset_now is not None
    if offset_now <= offset_before:
        return False
    gap_start = (instant + offset_before).replace(tzinfo=None)  # the gap's wall times end here
    return any(_wall_matches(expression, gap_start + dt.timedelta(minutes=i))
               for i in range((wall - gap_start) // dt.timedelta(minutes=1)))


@pytest.mark.parametrize(("zone", "change"), _CHANGES)
@pytest.mark.parametrize("text", ["*/20 * * * *", "45 * * * *", "15,45 1,2 * * *", "30 1 * * *",
                                  "0-59/7 2 * * *", "0 3 * * *", "10 1-3 * * sun", "*/30 0-4 * * *"])
def test_next_after_agrees_with_a_minute_by_minute_reading_of_the_rules(zone: str, change: str,
                                                                        text: str) -> None:
    schedule = CronSchedule.parse(text, zone)
    tz = ZoneInfo(zone)
    start, end = utc(change) - dt.timedelta(hours=28), utc(change) + dt.timedelta(hours=28)
    minutes = [start + dt.timedelta(minutes=i) for i in range(1, (end - start) // dt.timedelta(minutes=1))]
    expected = [m for m in minutes if _fires_by_the_rules(schedule.expression, tz, m)]
    assert firings(schedule, start, expected[-1]) == expected
    for after in (m for m in minutes[::23] if m < expected[-1]):
        following = next(m for m in expected if m > after)
        assert schedule.next_after(after + dt.timedelta(seconds=17)) == following, after


# --- properties in UTC ------------------------------------------------------------------------------

_BOUNDS = {"minute": (0, 59), "hour": (0, 23), "day-of-month": (1, 31), "month": (1, 12),
           "day-of-week": (0, 6)}
_MONTH_DAYS = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30, 12: 31}


@dataclasses.dataclass(frozen=True)
class _Field:
    text: str
    values: frozenset[int]
    star: bool  # robfig's star bit: "*" or a step of one over the whole range


@st.composite
def _field_items(draw: st.DrawFn, low: int, high: int) -> _Field:
    kind = draw(st.sampled_from(["star", "star-step", "value", "range", "range-step"]))
    if kind == "star":
        return _Field("*", frozenset(range(low, high + 1)), True)
    if kind == "star-step":
        step = draw(st.integers(1, high - low + 1))
        return _Field(f"*/{step}", frozenset(range(low, high + 1, step)), step == 1)
    first = draw(st.integers(low, high))
    if kind == "value":
        return _Field(str(first), frozenset({first}), False)
    last = draw(st.integers(first, high))
    step = draw(st.integers(1, 9)) if kind == "range-step" else 1
    text = f"{first}-{last}" + (f"/{step}" if kind == "range-step" else "")
    return _Field(text, frozenset(range(first, last + 1, step)), False)


@st.composite
def _fields(draw: st.DrawFn, low: int, high: int) -> _Field:
    items = draw(st.lists(_field_items(low, high), min_size=1, max_size=3))
    return _Field(",".join(i.text for i in items), frozenset(v for i in items for v in i.values),
                  any(i.star for i in items))


@dataclasses.dataclass(frozen=True)
class _Expression:
    minute: _Field
    hour: _Field
    dom: _Field
    month: _Field
    dow: _Field

    @property
    def text(self) -> str:
        return " ".join(f.text for f in (self.minute, self.hour, self.dom, self.month, self.dow))

    def matches(self, t: dt.datetime) -> bool:
        dom, dow = t.day in self.dom.values, t.isoweekday() % 7 in self.dow.values
        day = (dom and dow) if self.dom.star or self.dow.star else (dom or dow)
        return (t.minute in self.minute.values and t.hour in self.hour.values
                and t.month in self.month.values and day)

    def can_fire(self) -> bool:
        if not (self.dom.star or self.dow.star) or self.dom.star:
            return True  # every month has every weekday
        return any(d <= _MONTH_DAYS[m] for m in self.month.values for d in self.dom.values)


_EXPRESSIONS = st.builds(_Expression, *(_fields(*_BOUNDS[f]) for f in _BOUNDS))
# Starts within twenty years of the anchor: far from 2100, so a leap day is always within five years.
_STARTS = st.integers(-20 * 365 * 86400, 20 * 365 * 86400).map(lambda s: at(seconds=s))


@settings(max_examples=300, deadline=None)
@given(expression=_EXPRESSIONS, start=_STARTS)
def test_next_after_in_utc_is_later_and_matches_every_field(expression: _Expression,
                                                            start: dt.datetime) -> None:
    found = CronSchedule.parse(expression.text).next_after(start)
    assert (found is not None) == expression.can_fire()
    if found is None:
        return
    assert found > start
    assert found.second == 0 and found.microsecond == 0
    assert expression.matches(found)
    if found - start <= dt.timedelta(days=2):  # nothing skipped in between
        first_minute = start.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        between = (first_minute + dt.timedelta(minutes=i)
                   for i in range(int((found - first_minute) / dt.timedelta(minutes=1))))
        assert not any(expression.matches(m) for m in between)


@settings(max_examples=200, deadline=None)
@given(expression=_EXPRESSIONS, start=_STARTS, gap=st.integers(0, 400 * 86400))
def test_next_after_in_utc_is_monotonic(expression: _Expression, start: dt.datetime, gap: int) -> None:
    schedule = CronSchedule.parse(expression.text)
    earlier, later = schedule.next_after(start), schedule.next_after(start + dt.timedelta(seconds=gap))
    if earlier is not None and later is not None:
        assert earlier <= later
        assert later > start + dt.timedelta(seconds=gap)
