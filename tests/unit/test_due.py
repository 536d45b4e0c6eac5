"""Which moments are due, which were missed, and where the cursor moves; and interval lattices."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.unit.conftest import at, utc
from trigger_operator.timemath import Schedule
from trigger_operator.timemath.cron import CronSchedule
from trigger_operator.timemath.due import MAX_RUNS_PER_PASS, CatchUpPolicy, Due, due, latest_at_or_before
from trigger_operator.timemath.interval import IntervalSchedule

MINUTE = dt.timedelta(minutes=1)
EVERY_TEN_MINUTES = IntervalSchedule(origin=at(), period=10 * MINUTE)  # at(minutes=10), 20, 30, ...
EVERY_MINUTE = IntervalSchedule(origin=at(), period=MINUTE)
HOURLY = CronSchedule.parse("0 * * * *")


def minutes(*offsets: int) -> tuple[dt.datetime, ...]:
    return tuple(at(minutes=m) for m in offsets)


# --- interval lattices ------------------------------------------------------------------------------


@pytest.mark.parametrize(("include_origin", "after", "expected"), [
    pytest.param(False, at(minutes=-5), at(minutes=10),
                 id="before-the-origin-the-first-moment-is-one-period-on"),
    pytest.param(True, at(minutes=-5), at(), id="start-immediately-makes-the-origin-the-first-moment"),
    pytest.param(True, at(), at(minutes=10), id="the-origin-itself-is-not-after-the-origin"),
    pytest.param(False, at(minutes=10), at(minutes=20), id="on-a-moment-the-next-is-one-period-on"),
    pytest.param(False, at(minutes=10, microseconds=1), at(minutes=20), id="just-after-a-moment"),
    pytest.param(False, at(minutes=19, seconds=59), at(minutes=20), id="just-before-a-moment"),
    pytest.param(False, at(days=365, minutes=3), at(days=365, minutes=10),
                 id="a-year-on-still-on-the-lattice"),
])
def test_interval_moments_stay_on_the_lattice_from_the_origin(include_origin: bool, after: dt.datetime,
                                                              expected: dt.datetime) -> None:
    schedule = IntervalSchedule(origin=at(), period=10 * MINUTE, include_origin=include_origin)
    assert schedule.next_after(after) == expected


# --- the latest moment ------------------------------------------------------------------------------


@pytest.mark.parametrize(("schedule", "t", "floor", "expected"), [
    pytest.param(HOURLY, at(minutes=30), at(days=-30), at(), id="the-last-full-hour"),
    pytest.param(HOURLY, at(), at(days=-30), at(), id="a-moment-at-t-counts"),
    pytest.param(HOURLY, at(minutes=30), at(), None, id="a-moment-at-the-floor-does-not-count"),
    pytest.param(HOURLY, at(minutes=30), at(minutes=-1), at(), id="just-above-the-floor-counts"),
    pytest.param(CronSchedule.parse("0 0 1 1 *"), at(), at(days=-3000), utc("2026-01-01T00:00"),
                 id="a-yearly-moment-two-months-back"),
    pytest.param(CronSchedule.parse("0 0 29 2 *"), at(), at(days=-3000), utc("2024-02-29T00:00"),
                 id="a-leap-day-two-years-back"),
    pytest.param(CronSchedule.parse("0 0 29 2 *"), at(), utc("2024-03-01T00:00"), None,
                 id="no-leap-day-since-the-floor"),
    pytest.param(EVERY_TEN_MINUTES, at(minutes=35), at(days=-1), at(minutes=30), id="an-interval-moment"),
])
def test_latest_at_or_before_finds_the_latest_moment_above_the_floor(
        schedule: Schedule, t: dt.datetime, floor: dt.datetime, expected: dt.datetime | None) -> None:
    assert latest_at_or_before(schedule, t, floor) == expected


def test_latest_at_or_before_finds_a_moment_older_than_its_largest_window() -> None:
    rare = IntervalSchedule(origin=at(days=-2500), period=dt.timedelta(days=3000), include_origin=True)
    assert latest_at_or_before(rare, at(), at(days=-5000)) == at(days=-2500)


# --- due --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("now", "policy", "deadline", "expected"), [
    pytest.param(at(minutes=5), CatchUpPolicy.LATEST, None, Due(run=(), missed=0, cursor=None, more=False),
                 id="nothing-due-leaves-the-cursor-unset"),
    pytest.param(at(minutes=10), CatchUpPolicy.LATEST, None,
                 Due(run=minutes(10), missed=0, cursor=at(minutes=10), more=False),
                 id="a-moment-at-now-is-due"),
    pytest.param(at(minutes=35), CatchUpPolicy.LATEST, None,
                 Due(run=minutes(30), missed=2, cursor=at(minutes=30), more=False),
                 id="latest-runs-the-most-recent-and-counts-the-older-as-missed"),
    pytest.param(at(minutes=35), CatchUpPolicy.ALL, None,
                 Due(run=minutes(10, 20, 30), missed=0, cursor=at(minutes=30), more=False),
                 id="all-runs-each-moment-oldest-first"),
    pytest.param(at(minutes=35), CatchUpPolicy.LATEST, 5 * MINUTE,
                 Due(run=minutes(30), missed=2, cursor=at(minutes=30), more=False),
                 id="latest-a-moment-exactly-deadline-old-still-runs"),
    pytest.param(at(minutes=35, microseconds=1), CatchUpPolicy.LATEST, 5 * MINUTE,
                 Due(run=(), missed=3, cursor=at(minutes=30), more=False),
                 id="latest-a-moment-just-past-the-deadline-is-missed-and-passed-over"),
    pytest.param(at(minutes=35), CatchUpPolicy.ALL, 15 * MINUTE,
                 Due(run=minutes(20, 30), missed=1, cursor=at(minutes=30), more=False),
                 id="all-runs-the-moments-within-the-deadline-and-misses-the-older"),
    pytest.param(at(minutes=35), CatchUpPolicy.ALL, 4 * MINUTE,
                 Due(run=(), missed=3, cursor=at(minutes=30), more=False),
                 id="all-past-the-deadline-runs-nothing-and-passes-over-all"),
    pytest.param(at(minutes=35), CatchUpPolicy.ALL, dt.timedelta(hours=1),
                 Due(run=minutes(10, 20, 30), missed=0, cursor=at(minutes=30), more=False),
                 id="a-deadline-longer-than-the-backlog-misses-nothing"),
])
def test_due_applies_the_catch_up_policy_and_the_starting_deadline(
        now: dt.datetime, policy: CatchUpPolicy, deadline: dt.timedelta | None, expected: Due) -> None:
    assert due(EVERY_TEN_MINUTES, earliest=at(), now=now, deadline=deadline, policy=policy) == expected


def test_due_excludes_the_moment_at_earliest_which_was_already_handled() -> None:
    assert due(EVERY_TEN_MINUTES, earliest=at(minutes=10), now=at(minutes=15), deadline=None,
               policy=CatchUpPolicy.ALL) == Due(run=(), missed=0, cursor=None, more=False)


def test_due_includes_a_start_immediately_origin_when_looking_from_just_before_it() -> None:
    schedule = IntervalSchedule(origin=at(), period=10 * MINUTE, include_origin=True)
    assert due(schedule, earliest=at(microseconds=-1), now=at(), deadline=None,
               policy=CatchUpPolicy.LATEST) == Due(run=(at(),), missed=0, cursor=at(), more=False)


def test_all_starts_at_most_max_runs_per_pass_and_asks_to_come_back() -> None:
    d = due(EVERY_MINUTE, earliest=at(), now=at(minutes=250), deadline=None, policy=CatchUpPolicy.ALL)
    assert d.run == minutes(*range(1, MAX_RUNS_PER_PASS + 1))
    assert (d.missed, d.cursor, d.more) == (0, at(minutes=MAX_RUNS_PER_PASS), True)


def test_all_with_exactly_max_runs_per_pass_due_has_no_more() -> None:
    d = due(EVERY_MINUTE, earliest=at(), now=at(minutes=MAX_RUNS_PER_PASS), deadline=None,
            policy=CatchUpPolicy.ALL)
    assert (len(d.run), d.cursor, d.more) == (MAX_RUNS_PER_PASS, at(minutes=MAX_RUNS_PER_PASS), False)


def test_all_resumes_after_the_cursor_on_the_next_pass() -> None:
    first = due(EVERY_MINUTE, earliest=at(), now=at(minutes=250), deadline=None, policy=CatchUpPolicy.ALL)
    assert first.cursor is not None
    second = due(EVERY_MINUTE, earliest=first.cursor, now=at(minutes=250), deadline=None,
                 policy=CatchUpPolicy.ALL)
    assert second.run[0] == at(minutes=MAX_RUNS_PER_PASS + 1)


@pytest.mark.parametrize(("now", "deadline", "expected_missed"), [
    pytest.param(at(minutes=60), None, 59, id="below-the-cap-older-moments-are-counted-exactly"),
    pytest.param(at(minutes=60), 30 * MINUTE, 59, id="below-the-cap-expired-and-older-moments-add-up"),
    pytest.param(at(minutes=250), None, MAX_RUNS_PER_PASS, id="older-moments-beyond-the-cap"),
    pytest.param(at(minutes=250), 30 * MINUTE, MAX_RUNS_PER_PASS, id="expired-moments-beyond-the-cap"),
])
def test_latest_counts_missed_moments_exactly_up_to_the_cap(now: dt.datetime, deadline: dt.timedelta | None,
                                                           expected_missed: int) -> None:
    d = due(EVERY_MINUTE, earliest=at(), now=now, deadline=deadline, policy=CatchUpPolicy.LATEST)
    assert d == Due(run=(now,), missed=expected_missed, cursor=now, more=False)


def test_all_past_a_deadline_counts_expired_moments_up_to_the_cap_and_runs_the_rest() -> None:
    d = due(EVERY_MINUTE, earliest=at(), now=at(minutes=250), deadline=30 * MINUTE, policy=CatchUpPolicy.ALL)
    assert d.run == minutes(*range(220, 251))
    assert (d.missed, d.more) == (MAX_RUNS_PER_PASS, False)


def test_cron_latest_after_a_night_of_downtime_runs_the_last_hour_only() -> None:
    d = due(HOURLY, earliest=at(hours=-10, minutes=30), now=at(minutes=5), deadline=None,
            policy=CatchUpPolicy.LATEST)
    assert d == Due(run=(at(),), missed=9, cursor=at(), more=False)
