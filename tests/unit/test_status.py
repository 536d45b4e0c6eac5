"""The Trigger's status: conversion to and from the API's dict, and its transitions."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from tests.unit.conftest import at
from trigger_operator.model.status import (
    CUT_MARKER,
    EMPTY,
    MESSAGE_MAX_CHARS,
    RECENT_EXECUTIONS,
    RECORDED_NUMBERS_MAX,
    RUN_NOW_TOKENS_KEPT,
    ActiveRun,
    Backfill,
    BackfillState,
    Condition,
    Execution,
    Outcome,
    PartRecord,
    Phase,
    RunKind,
    TriggerStatus,
    cut,
    format_time,
    parse_time,
    read_status,
    status_field_names,
)

RUN = ActiveRun(name="nightly-1772445600", kind=RunKind.SCHEDULED, scheduled_time=at(),
                fired_at=at(seconds=1))

EVERY_FIELD_SET = TriggerStatus(
    phase=Phase.FAILED,
    observed_generation=4,
    message="stopped after 5 consecutive failures",
    active_since=at(days=-2),
    observed_schedule="cron 0 * * * * UTC",
    last_schedule_time=at(),
    last_triggered_at=at(seconds=1),
    last_execution_task_id="nightly-1772445600",
    next_scheduled_at=at(hours=1),
    execution_count=12,
    failed_execution_count=5,
    consecutive_failures=5,
    last_execution_status="Failed",
    last_execution_error="BackoffLimitExceeded: Job has reached the specified backoff limit",
    last_successful_time=at(days=-1, microseconds=250),
    missed_runs=3,
    skipped_runs=2,
    scheduled_runs=12,
    active=(RUN, ActiveRun(name="nightly-mab12cd34e", kind=RunKind.MANUAL, scheduled_time=at(minutes=2),
                           fired_at=at(minutes=2)),
            ActiveRun(name="nightly-e3", kind=RunKind.EVENT, scheduled_time=at(minutes=3), fired_at=at(minutes=3),
                      event_key="col-a", event_count=2)),
    recent_executions=(
        Execution(name="nightly-1772442000", kind=RunKind.SCHEDULED, scheduled_time=at(hours=-1),
                  outcome=Outcome.FAILED, finished_at=at(minutes=-50), started_at=at(minutes=-59),
                  error="exit code 1"),
        Execution(name="nightly-1772438400", kind=RunKind.MANUAL, scheduled_time=at(hours=-2),
                  outcome=Outcome.LOST, finished_at=at(hours=-1, minutes=-50)),
    ),
    run_now_tokens=("3b7c0c4a7e9d2f10", "9a1e5d2c6b7f8e03"),
    last_resume_token="resume-1",
    failed_at_generation=4,
    conditions=(Condition(type="Ready", status="False", reason="FailureLimitReached", message="stopped",
                          last_transition_time=at(), observed_generation=4),),
    event_counter=7,
    event_firings=2,
    recent_event_ids=("a1b2c3d4e5f60718",),
    event_window=((1772445600, 3), (1772445660, 4)),
    event_key_state=(("col-a", 3, 1, 1772445000, 1772445600, 1, 2), ("col-b", 0, 2, 1772445500)),
    event_keys={"total": 2, "top": [{"key": "col-a", "counter": 3}, {"key": "col-b", "counter": 0}],
                "refused": 5, "refusedNoticed": 5},
    last_absence={"windowStart": "2026-03-02T09:00:00Z", "windowEnd": "2026-03-02T10:00:00Z", "count": 2,
                  "fired": True},
    inbox_folded={"0123456789ab": [42, 1772442000]},
    condition_armed=False,
    condition_firings=3,
    condition_fired_value=[0.1, 0.9],
    source_errors=1,
    backfill=Backfill(id="b1", state=BackfillState.RUNNING, start=at(hours=-2), end=at(hours=-1), parallelism=3,
                      total=61, started=5, skipped=1, succeeded=2, failed=1, cursor=at(hours=-2, minutes=5),
                      accepted_at=at(minutes=-1), message="2 running"),
    backfilled_moments=((at(hours=-2), at(hours=-2, minutes=5)),),
    missed_moments=((at(hours=-5), at(hours=-4)),),
    handled_moments=((at(hours=-6), at(hours=-1)),),
    notifications={"pending": [{"id": "u1.fired.nightly-1", "type": "trigger.fired", "time": "2026-03-02T10:00:00Z",
                                "sinks": ["0123456789ab"], "data": {"trigger_id": "nightly"}}], "deadLetters": []},
    last_cooldown_at=at(hours=-3),
    baseline_snapshot={"documents": 120, "clusters": [1, 2]},
    last_drift_measurement={"drift": 0.25},
    last_volume_measurement={"value": 1200.0, "threshold": 1000.0, "comparison": ">", "exceeded": True},
    last_condition_check_at=at(minutes=-5),
    condition_check_started_at=at(minutes=-30),
    compound_firings=4,
    compound_parts=(PartRecord(trigger="docs-added", fired_run="docs-added-e3", fired_at=at(minutes=-1),
                               consumed_run="docs-added-e2", consumed_at=at(hours=-1)), PartRecord(trigger="drift")),
)


def test_the_round_trip_example_sets_every_field() -> None:
    defaults = TriggerStatus()
    unset = [f.name for f in dataclasses.fields(TriggerStatus)
             if getattr(EVERY_FIELD_SET, f.name) == getattr(defaults, f.name)]
    assert unset == []


def test_status_survives_a_round_trip_through_the_api_dict() -> None:
    assert TriggerStatus.from_dict(EVERY_FIELD_SET.to_dict()) == EVERY_FIELD_SET


def test_to_dict_spells_keys_in_camel_case_and_times_as_utc_with_z() -> None:
    raw = EVERY_FIELD_SET.to_dict()
    assert list(raw) == status_field_names()
    assert raw["lastScheduleTime"] == "2026-03-02T10:00:00Z"
    assert raw["lastSuccessfulTime"] == "2026-03-01T10:00:00.000250Z"
    assert raw["phase"] == "Failed"
    assert raw["active"][0] == {"name": "nightly-1772445600", "kind": "scheduled",
                                "scheduledTime": "2026-03-02T10:00:00Z", "firedAt": "2026-03-02T10:00:01Z"}
    assert raw["recentExecutions"][0]["durationMs"] == 9 * 60 * 1000
    assert "durationMs" not in raw["recentExecutions"][1]  # unset: left out, as the API server would prune it


@pytest.mark.parametrize("raw", [
    pytest.param(None, id="no-status-at-all"),
    pytest.param({}, id="an-empty-status"),
    pytest.param({"phase": None, "lastScheduleTime": None, "executionCount": None}, id="keys-set-to-null"),
    pytest.param({"lastScheduleTime": ""}, id="an-empty-time"),
])
def test_from_dict_reads_missing_or_null_keys_as_defaults(raw: dict[str, object] | None) -> None:
    assert TriggerStatus.from_dict(raw) == EMPTY


def test_from_dict_reads_times_with_offsets_as_utc_and_fills_optional_run_keys() -> None:
    status = TriggerStatus.from_dict({
        "lastScheduleTime": "2026-03-02T11:00:00+01:00",
        "active": [{"name": "nightly-1772445600", "scheduledTime": "2026-03-02T10:00:00Z"}],
    })
    assert status.last_schedule_time == at()
    assert status.active == (ActiveRun(name="nightly-1772445600", kind=RunKind.SCHEDULED,
                                       scheduled_time=at(), fired_at=at()),)


@pytest.mark.parametrize(("value", "text"), [
    pytest.param(at(), "2026-03-02T10:00:00Z", id="whole-seconds"),
    pytest.param(at(microseconds=5), "2026-03-02T10:00:00.000005Z", id="microseconds-kept"),
    pytest.param(at().astimezone(dt.timezone(dt.timedelta(hours=-5))), "2026-03-02T10:00:00Z",
                 id="other-offsets-shown-in-utc"),
    pytest.param(None, None, id="none"),
])
def test_format_time_writes_rfc3339_in_utc(value: dt.datetime | None, text: str | None) -> None:
    assert format_time(value) == text
    assert parse_time(text) == value


# --- finished runs ----------------------------------------------------------------------------------

BEFORE = TriggerStatus(active=(RUN,), execution_count=4, failed_execution_count=3, consecutive_failures=2,
                       last_execution_error="earlier failure", last_execution_task_id=RUN.name,
                       last_execution_status="Running")


def finished(outcome: Outcome, error: str | None = None) -> Execution:
    return Execution(name=RUN.name, kind=RUN.kind, scheduled_time=RUN.scheduled_time, outcome=outcome,
                     finished_at=at(minutes=3), started_at=at(seconds=5), error=error)


@pytest.mark.parametrize(("outcome", "error", "counts"), [
    pytest.param(Outcome.SUCCEEDED, None, (5, 3, 0), id="success-counts-and-resets-consecutive-failures"),
    pytest.param(Outcome.FAILED, "exit code 1", (4, 4, 3),
                 id="failure-counts-and-adds-a-consecutive-failure"),
    pytest.param(Outcome.REPLACED, None, (4, 3, 2), id="replaced-changes-no-counter"),
    pytest.param(Outcome.LOST, "Job vanished", (4, 3, 2), id="lost-changes-no-counter"),
])
def test_finished_run_leaves_active_and_updates_the_counters(outcome: Outcome, error: str | None,
                                                             counts: tuple[int, int, int]) -> None:
    after = BEFORE.with_run_finished(finished(outcome, error))
    assert (after.execution_count, after.failed_execution_count, after.consecutive_failures) == counts
    assert after.active == ()
    assert after.last_execution_status == outcome.value
    assert after.recent_executions == (finished(outcome, error),)


def test_success_clears_the_error_and_records_the_success_time() -> None:
    after = BEFORE.with_run_finished(finished(Outcome.SUCCEEDED))
    assert (after.last_execution_error, after.last_successful_time) == (None, at(minutes=3))


def test_failure_records_its_error() -> None:
    after = BEFORE.with_run_finished(finished(Outcome.FAILED, "exit code 1"))
    assert after.last_execution_error == "exit code 1"


def test_a_replaced_run_keeps_the_last_error_while_failures_stay_counted() -> None:
    after = BEFORE.with_run_finished(finished(Outcome.REPLACED))
    assert (after.last_execution_status, after.last_execution_error) == ("Replaced", "earlier failure")


def test_an_older_run_finishing_later_changes_counters_but_not_the_last_runs_status() -> None:
    newer = dataclasses.replace(RUN, name="nightly-1772449200", scheduled_time=at(hours=1))
    status = BEFORE.with_run_started(newer)
    after = status.with_run_finished(finished(Outcome.FAILED, "exit code 1"))
    assert (after.last_execution_task_id, after.last_execution_status) == (newer.name, "Running")
    assert (after.last_execution_error, after.consecutive_failures) == ("earlier failure", 3)


def test_run_now_tokens_are_kept_newest_last_up_to_the_limit() -> None:
    status = BEFORE
    for n in range(RUN_NOW_TOKENS_KEPT + 5):
        status = status.with_run_now_token(f"h{n}")
    assert len(status.run_now_tokens) == RUN_NOW_TOKENS_KEPT
    assert status.run_now_tokens[-1] == f"h{RUN_NOW_TOKENS_KEPT + 4}"
    assert status.run_now_tokens[0] == "h5"
    again = status.with_run_now_token("h10")
    assert again.run_now_tokens[-1] == "h10" and again.run_now_tokens.count("h10") == 1


@pytest.mark.parametrize(("raw", "key"), [
    pytest.param({"executionCount": 3, "active": [{"name": "x"}]}, "active", id="active-run-without-times"),
    pytest.param({"lastScheduleTime": "yesterday"}, "lastScheduleTime", id="unparsable-time"),
    pytest.param({"phase": "Sleeping"}, "phase", id="unknown-phase"),
    pytest.param({"conditions": [{"status": "True"}]}, "conditions", id="condition-without-type"),
])
def test_an_unreadable_status_is_reported_with_its_key(raw: dict[str, Any], key: str) -> None:
    status, error = read_status(raw)
    assert status == TriggerStatus()
    assert error is not None and error.startswith(f"status.{key}: ")


def test_a_readable_status_reads_with_no_error() -> None:
    assert read_status(EVERY_FIELD_SET.to_dict()) == (EVERY_FIELD_SET, None)


@pytest.mark.parametrize("outcome", list(Outcome))
def test_a_run_is_counted_once_however_often_it_is_reported(outcome: Outcome) -> None:
    once = BEFORE.with_run_finished(finished(outcome, "x"))
    assert once.with_run_finished(finished(outcome, "x")) is once


def test_a_run_never_recorded_as_active_is_not_counted() -> None:
    stranger = dataclasses.replace(finished(Outcome.FAILED, "x"), name="someone-else")
    assert BEFORE.with_run_finished(stranger) is BEFORE


def test_history_keeps_the_newest_executions_first_up_to_the_limit() -> None:
    older = tuple(dataclasses.replace(finished(Outcome.SUCCEEDED), name=f"old-{i}")
                  for i in range(RECENT_EXECUTIONS))
    full = dataclasses.replace(BEFORE, recent_executions=older)
    after = full.with_run_finished(finished(Outcome.SUCCEEDED))
    assert [e.name for e in after.recent_executions] == [RUN.name, *(e.name for e in older[:-1])]
    assert len(after.recent_executions) == RECENT_EXECUTIONS


def test_a_started_run_is_listed_as_active_and_as_the_last_task() -> None:
    started = EMPTY.with_run_started(RUN)
    assert started.active == (RUN,)
    assert (started.last_triggered_at, started.last_execution_task_id, started.last_execution_status) == (
        RUN.fired_at, RUN.name, "Running")


# --- conditions -------------------------------------------------------------------------------------


def ready(status: str, when: dt.datetime, reason: str = "Scheduled") -> Condition:
    return Condition(type="Ready", status=status, reason=reason, message=reason, last_transition_time=when)


STALLED = Condition(type="Stalled", status="False", reason="No", message="no",
                    last_transition_time=at(days=-1))


@pytest.mark.parametrize(("new", "expected_time"), [
    pytest.param(ready("True", at(hours=1), reason="StillScheduled"), at(), id="same-status-keeps-the-time"),
    pytest.param(ready("False", at(hours=1), reason="Paused"), at(hours=1),
                 id="changed-status-takes-the-new-time"),
])
def test_with_condition_moves_the_transition_time_only_on_a_status_change(new: Condition,
                                                                         expected_time: dt.datetime) -> None:
    status = TriggerStatus(conditions=(STALLED, ready("True", at())))
    after = status.with_condition(new)
    assert after.conditions == (STALLED, dataclasses.replace(new, last_transition_time=expected_time))


def test_with_condition_adds_a_new_condition_type_with_its_own_time() -> None:
    assert TriggerStatus(conditions=(STALLED,)).with_condition(ready("True", at())).conditions == (
        STALLED, ready("True", at()))


def test_every_recorded_text_is_cut_with_a_marker_and_cutting_twice_changes_nothing() -> None:
    long = "x" * 5000
    status = dataclasses.replace(
        EVERY_FIELD_SET, message=long, last_execution_error=long,
        recent_executions=(dataclasses.replace(EVERY_FIELD_SET.recent_executions[0], error=long),),
        conditions=(dataclasses.replace(EVERY_FIELD_SET.conditions[0], message=long),),
        last_drift_measurement={"error": long, "value": list(range(40)), "baseline": [1.0, 2.0]},
        baseline_snapshot={"value": list(range(40))}, condition_fired_value=list(range(40)))
    raw = status.to_dict()
    texts = [raw["message"], raw["lastExecutionError"], raw["recentExecutions"][0]["error"],
             raw["conditions"][0]["message"], raw["lastDriftMeasurement"]["error"]]
    assert all(len(t) == MESSAGE_MAX_CHARS and t.endswith(CUT_MARKER) for t in texts)
    assert raw["lastDriftMeasurement"]["value"] == list(range(RECORDED_NUMBERS_MAX))
    assert raw["lastDriftMeasurement"]["valueLength"] == 40
    assert raw["lastDriftMeasurement"]["baseline"] == [1.0, 2.0] and "baselineLength" not in raw["lastDriftMeasurement"]
    assert raw["baselineSnapshot"]["value"] == list(range(40)) and raw["conditionFiredValue"] == list(range(40))
    assert TriggerStatus.from_dict(raw).to_dict() == raw  # what status keeps compares equal: no write per pass
    assert cut("short") == "short" and cut(cut(long)) == cut(long)
