"""Issue 22's calendar fields in the spec: validation naming the field, `time_schedule` composing
them, the fingerprint that starts a schedule afresh when one changes, and the never-fires wording."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.unit.conftest import ANCHOR, at, utc
from trigger_operator.model.spec import (
    SpecError,
    admission_refusal,
    never_fires,
    parse_spec,
    same_schedule,
    schedule_fingerprint,
    time_schedule,
)
from trigger_operator.timemath import moments
from trigger_operator.timemath.calendar import jitter_offset


def spec(trigger_type: str = "cron", **config: Any) -> dict[str, Any]:
    return {"actionType": "cluster", "triggerType": trigger_type, "scheduleConfig": config}


CRON = {"cronExpression": "0 9 * * 1-5"}


@pytest.mark.parametrize(("raw", "field", "words"), [
    pytest.param(spec(**CRON, excludeCron=["* * 25 12 *", "* 25 * * *"]), "spec.scheduleConfig.excludeCron[1]",
                 "hour field", id="exclude-cron-index"),
    pytest.param(spec(cronExpressions=["0 9 * * *", "@every 5m"]), "spec.scheduleConfig.cronExpressions[1]",
                 "@every", id="cron-expressions-index"),
    pytest.param(spec(**CRON, excludeDates=["2026-12-25", "2026-13-01"]), "spec.scheduleConfig.excludeDates[1]",
                 "is not a date", id="not-a-date"),
    pytest.param(spec(**CRON, excludeDates=["25.12.2026"]), "spec.scheduleConfig.excludeDates.0",
                 "pattern", id="not-shaped-like-a-date"),
    pytest.param(spec(**CRON, startAt="2026-05-01T00:00:00Z", endAt="2026-04-01T00:00:00Z"),
                 "spec.scheduleConfig.endAt", "must be after startAt", id="end-before-start"),
    pytest.param(spec(**CRON, startAt="2026-05-01T00:00:00Z", endAt="2026-05-01T02:00:00+02:00"),
                 "spec.scheduleConfig.endAt", "must be after startAt", id="end-equal-to-start-in-another-offset"),
    pytest.param(spec(**CRON, endAt="2026-05-01T00:00:00"), "spec.scheduleConfig.endAt", "timezone",
                 id="no-offset"),
    pytest.param(spec(**CRON, jitterSeconds=-1), "spec.scheduleConfig.jitterSeconds", "greater than or equal",
                 id="negative-jitter"),
    pytest.param(spec(**CRON, maxRuns=0), "spec.scheduleConfig.maxRuns", "greater than or equal", id="no-budget"),
    pytest.param(spec(**CRON, cronExpressions=[]), "spec.scheduleConfig.cronExpressions", "at least 1",
                 id="empty-lines"),
    pytest.param(spec(cronExpressions=None), "spec.scheduleConfig.cronExpression", "or cronExpressions",
                 id="no-line-at-all"),
    pytest.param(spec("event", eventType="x", eventThreshold=1, excludeCron=["* * * * 0"]),
                 "spec.scheduleConfig.excludeCron", "only to cron and interval", id="event-refuses-exclusions"),
    pytest.param(spec("event", eventType="x", eventThreshold=1, jitterSeconds=5),
                 "spec.scheduleConfig.jitterSeconds", "only to cron and interval", id="event-refuses-jitter"),
    pytest.param(spec("conditional", conditionType="threshold", metric="m", threshold=1, checkIntervalSeconds=60,
                      startAt="2026-01-01T00:00:00Z"), "spec.scheduleConfig.startAt", "only to cron and interval",
                 id="conditional-refuses-a-window"),
])
def test_a_bad_calendar_is_refused_naming_the_field(raw: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(SpecError) as refused:
        parse_spec(raw)
    assert refused.value.field == field and words in refused.value.reason


def test_cron_expressions_alone_make_a_cron_trigger_and_every_field_parses() -> None:
    parsed = parse_spec(spec(cronExpressions=["0 9 * * 1-5", "0 12 * * 6"], timezone="Europe/Berlin",
                             excludeCron=["* * 25 12 *"], excludeDates=["2026-04-03"],
                             startAt="2026-03-01T00:00:00+01:00", endAt="2027-01-01T00:00:00+01:00",
                             jitterSeconds=30, maxRuns=100))
    assert parsed.schedule_config.max_runs == 100
    schedule = time_schedule(parsed, origin=ANCHOR, first_run=True, trigger=("team-a", "x"))
    assert schedule is not None
    offset = jitter_offset("team-a", "x", 30)
    # Good Friday (3 April) is excluded; Saturday is the second line's noon.
    assert moments(schedule, utc("2026-04-02T12:00"), 2) == [utc("2026-04-04T10:00") + offset,
                                                            utc("2026-04-06T07:00") + offset]


def test_interval_jitter_shifts_each_moment_once_and_the_lattice_never_drifts() -> None:
    """The cursor (lastScheduleTime) is a shifted moment; anchoring the next lattice at it less the
    offset keeps every later moment on since + k * period + offset."""
    parsed = parse_spec(spec("interval", intervalSeconds=600, jitterSeconds=300))
    key = ("team-a", "every-ten")
    offset = jitter_offset(*key, 300)
    assert offset > dt.timedelta(0)
    first = time_schedule(parsed, origin=ANCHOR, first_run=True, trigger=key)
    assert first is not None and first.next_after(ANCHOR) == at(minutes=10) + offset
    cursor = at(minutes=10) + offset
    for k in range(2, 6):  # each pass anchors at the moment it ran
        following = time_schedule(parsed, origin=cursor, first_run=False, trigger=key)
        assert following is not None
        cursor = following.next_after(cursor)  # type: ignore[assignment]
        assert cursor == at(minutes=10 * k) + offset


def test_start_immediately_runs_the_shifted_origin() -> None:
    parsed = parse_spec(spec("interval", intervalSeconds=600, startImmediately=True, jitterSeconds=300))
    schedule = time_schedule(parsed, origin=ANCHOR, first_run=True, trigger=("team-a", "every-ten"))
    assert schedule is not None
    assert schedule.next_after(ANCHOR - dt.timedelta(microseconds=1)) == ANCHOR + jitter_offset(
        "team-a", "every-ten", 300)


@pytest.mark.parametrize("change", [
    pytest.param({"cronExpressions": ["0 12 * * 6"]}, id="a-line"),
    pytest.param({"excludeCron": ["* * 25 12 *"]}, id="an-exclusion"),
    pytest.param({"excludeDates": ["2026-12-24"]}, id="a-date"),
    pytest.param({"excludeDates": [f"2026-01-{d:02d}" for d in range(1, 20)]}, id="many-dates"),
    pytest.param({"startAt": "2026-04-01T00:00:00Z"}, id="start"),
    pytest.param({"endAt": "2026-04-01T00:00:00Z"}, id="end"),
    pytest.param({"jitterSeconds": 30}, id="jitter"),
])
def test_every_calendar_field_is_part_of_the_schedule(change: dict[str, Any]) -> None:
    before = parse_spec(spec(**CRON))
    after = parse_spec(spec(**CRON, **change))
    assert not same_schedule(schedule_fingerprint(before), after)
    assert same_schedule(schedule_fingerprint(after), after)
    interval = parse_spec(spec("interval", intervalSeconds=60, **change)) if "cronExpressions" not in change else None
    if interval is not None:
        assert not same_schedule(schedule_fingerprint(parse_spec(spec("interval", intervalSeconds=60))), interval)


def test_a_trigger_without_a_calendar_keeps_the_fingerprint_it_had() -> None:
    assert schedule_fingerprint(parse_spec(spec(**CRON, timezone="Europe/Berlin"))) == "cron 0 9 * * 1-5 Europe/Berlin"
    assert schedule_fingerprint(parse_spec(spec("interval", intervalSeconds=60))) == "interval 60s"
    budget = parse_spec(spec(**CRON, maxRuns=5))  # a budget says how many, not when
    assert same_schedule("cron 0 9 * * 1-5 UTC", budget)


def test_the_same_calendar_written_otherwise_is_the_same_schedule() -> None:
    old = parse_spec(spec(cronExpression="0 9 * * 1-5", cronExpressions=["0 12 * * 6"],
                          excludeCron=["* * 25 12 *", "* * * * 0"], excludeDates=["2026-12-26", "2026-12-24"]))
    new = parse_spec(spec(cronExpression="0 12 * * sat", cronExpressions=["0  9 * * mon-fri"],
                          excludeCron=["* * * * sun", "* * 25 dec *"], excludeDates=["2026-12-24", "2026-12-26"],
                          timezone="Etc/UTC"))
    assert same_schedule(schedule_fingerprint(old), new)
    assert schedule_fingerprint(old) == ("cron 0 9 * * 1-5 | 0 12 * * 6 UTC; except * * 25 12 * | * * * * 0; "
                                         "except dates 2026-12-24,2026-12-26")


@pytest.mark.parametrize(("raw", "now", "message", "refused"), [
    pytest.param(spec(cronExpression="0 0 30 2 *"), ANCHOR,
                 "spec.scheduleConfig.cronExpression: '0 0 30 2 *' has no moment within five years in UTC, "
                 "so it never fires", True, id="the-line-itself"),
    pytest.param(spec(cronExpressions=["0 0 30 2 *", "0 0 31 4 *"]), ANCHOR,
                 "spec.scheduleConfig.cronExpressions: none of the 2 cron lines has a moment within five years "
                 "in UTC, so the Trigger never fires", True, id="every-line"),
    pytest.param(spec(**CRON, excludeCron=["* * * * 1-5"]), ANCHOR,
                 "spec.scheduleConfig.excludeCron: the exclusions (excludeCron, excludeDates) remove every moment "
                 "within five years in UTC, so the Trigger never fires", True, id="exclusions"),
    pytest.param(spec("interval", intervalSeconds=60, excludeCron=["* * * * *"]), ANCHOR,
                 "spec.scheduleConfig.excludeCron: the exclusions (excludeCron, excludeDates) remove every moment "
                 "within five years in UTC, so the Trigger never fires", True, id="interval-exclusions"),
    pytest.param(spec(**CRON, endAt="2026-03-01T00:00:00Z"), ANCHOR,
                 "spec.scheduleConfig.endAt: the active window ended at 2026-03-01T00:00:00+00:00: no moment remains",
                 False, id="an-ended-window-is-applied"),
    pytest.param(spec(**CRON, startAt="2026-03-02T10:00:00Z", endAt="2026-03-02T11:00:00Z"), ANCHOR,
                 "spec.scheduleConfig.endAt: no moment falls in the active window [2026-03-02T10:00:00+00:00, "
                 "2026-03-02T11:00:00+00:00) within five years", True, id="an-empty-window"),
])
def test_never_fires_names_the_cause_and_admission_lets_an_ended_window_through(
        raw: dict[str, Any], now: dt.datetime, message: str, refused: bool) -> None:
    parsed = parse_spec(raw)
    assert never_fires(parsed, now) == message
    assert admission_refusal(parsed, now) == (message if refused else None)


def test_admission_accepts_a_schedule_with_a_moment() -> None:
    assert admission_refusal(parse_spec(spec(**CRON, excludeCron=["* * * * 1"])), ANCHOR) is None
    assert admission_refusal(parse_spec(spec("event", eventType="x", eventThreshold=1)), ANCHOR) is None


# --- review of issue 22: the cost of exclusions ----------------------------------------------------

EVEN_MINUTES_BUT_Q1 = spec(cronExpression="*/2 * * * *", excludeCron=["*/2 * * 1-3 *"])
# A lattice every 12 h and 1 s whose moments stay off minute 59 for 4.8 years: too costly to search.
COSTLY = spec("interval", intervalSeconds=43201, excludeCron=["0-58 * * * *"])


def test_a_real_schedule_whose_moments_are_all_excluded_for_months_fires_after_them() -> None:
    parsed = parse_spec(EVEN_MINUTES_BUT_Q1)
    january = utc("2027-01-01T00:00")
    schedule = time_schedule(parsed, origin=january, first_run=True)
    assert schedule is not None and schedule.next_after(january) == utc("2027-04-01T00:00")
    assert admission_refusal(parsed, january) is None  # not "never fires"


def test_a_schedule_too_costly_to_search_is_refused_naming_the_exclusions() -> None:
    parsed = parse_spec(COSTLY)
    refusal = admission_refusal(parsed, ANCHOR)
    assert refusal is not None and refusal.startswith("spec.scheduleConfig.excludeCron: ")
    assert "too costly to evaluate" in refusal
    schedule = time_schedule(parsed, origin=ANCHOR, first_run=True)
    assert schedule is not None
    with pytest.raises(SpecError) as raised:
        schedule.next_after(ANCHOR)
    assert raised.value.field == "spec.scheduleConfig.excludeCron"
    assert never_fires(parsed, ANCHOR) == refusal


def test_start_immediately_with_a_later_start_at_runs_at_start_at() -> None:
    parsed = parse_spec(spec("interval", intervalSeconds=3600, startImmediately=True,
                             startAt=at(minutes=30).isoformat()))
    schedule = time_schedule(parsed, origin=ANCHOR, first_run=True)
    assert schedule is not None
    assert moments(schedule, ANCHOR - dt.timedelta(microseconds=1), 2) == [at(minutes=30), at(minutes=90)]
