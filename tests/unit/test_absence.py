"""Absence (scheduleConfig.absence, issue 23 part 2): a run once per silent tumbling window, with
the count seen. Pure (events/absence.py, events/counting.py, core/firing/events.py)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tests.unit.conftest import TRIGGER_NAME, at, job_template, job_view, trigger_view
from trigger_operator.core.plan import Plan
from trigger_operator.core.reconcile import reconcile
from trigger_operator.events.cloudevents import Occurrence
from trigger_operator.events.counting import count_events
from trigger_operator.events.keys import read_keys
from trigger_operator.jobs.observe import JobPhase
from trigger_operator.model.spec import SpecError, parse_spec, schedule_fingerprint
from trigger_operator.model.status import ActiveRun, Phase, RunKind, TriggerStatus
from trigger_operator.model.trigger import TriggerView

START = at(minutes=-20)  # activeSince: windows of 60 s are [10:-20, 10:-19), ... [10:00, 10:01)
W, K = 60, 3


def raw(**config: Any) -> dict[str, Any]:
    return {"actionType": "collection_trigger", "triggerType": "event", "jobTemplate": job_template(),
            "scheduleConfig": {"eventType": "document_added", "absence": {"withinSeconds": W, "fewerThan": K},
                               **config}}


def spec(**config: Any) -> Any:
    return parse_spec(raw(**config))


def event(event_id: str | None = None, count: int = 1, key: str | None = None) -> Occurrence:
    attrs = {"type": "document_added", "source": "s", **({"collectionid": key} if key else {})}
    return Occurrence(type="document_added", source="s", id=event_id, count=count, attributes=attrs)


def view(config: dict[str, Any] | None = None, **status: Any) -> TriggerView:
    base = TriggerStatus(phase=Phase.ACTIVE, active_since=START,
                         observed_schedule=schedule_fingerprint(spec(**(config or {}))))
    return dataclasses.replace(trigger_view(spec=raw(**(config or {})), created_at=START),
                               status=dataclasses.replace(base, **status))


def counted(v: TriggerView, n: int, when: Any, config: dict[str, Any] | None = None, **kw: Any) -> TriggerView:
    s, _ = count_events(v.status, spec(**(config or {})), [event(count=1, **kw) for _ in range(n)], when)
    return dataclasses.replace(v, status=s)


def names(plan: Plan) -> list[str]:
    return [new.run.name for new in plan.create]


def env(plan: Plan) -> dict[str, str]:
    container = plan.create[0].manifest["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container["env"]}


# --- the spec ---------------------------------------------------------------------------------------

BOTH = "exactly one of eventThreshold and absence"


@pytest.mark.parametrize(("config", "field", "reason"), [
    pytest.param({"absence": {"withinSeconds": 59, "fewerThan": 1}}, "spec.scheduleConfig.absence.withinSeconds",
                 "shorter than 60 s", id="window-under-60s"),
    pytest.param({"absence": {"withinSeconds": 3600, "fewerThan": 0}}, "spec.scheduleConfig.absence.fewerThan",
                 "greater than or equal to 1", id="fewerThan-0"),
    pytest.param({"eventThreshold": 5}, "spec.scheduleConfig.eventThreshold", BOTH,
                 id="both-threshold-and-absence"),
    pytest.param({"absence": None}, "spec.scheduleConfig.eventThreshold", BOTH,
                 id="neither"),
    pytest.param({"windowSeconds": 600}, "spec.scheduleConfig.windowSeconds", "its own window", id="windowSeconds"),
    pytest.param({"cooldownSeconds": 60}, "spec.scheduleConfig.cooldownSeconds", "once per window",
                 id="cooldownSeconds"),
])
def test_bad_absence_settings_are_refused_naming_the_field_and_the_reason(config: dict[str, Any], field: str,
                                                                         reason: str) -> None:
    schedule = {k: v for k, v in (raw()["scheduleConfig"] | config).items() if v is not None}
    with pytest.raises(SpecError) as error:
        parse_spec(raw() | {"scheduleConfig": schedule})
    assert error.value.field == field and reason in error.value.reason


def test_absence_applies_only_to_event_triggers() -> None:
    with pytest.raises(SpecError, match=r"spec\.scheduleConfig\.absence: applies only to event Triggers"):
        parse_spec({"actionType": "cluster", "triggerType": "interval",
                    "scheduleConfig": {"intervalSeconds": 60, "absence": {"withinSeconds": 60, "fewerThan": 1}}})


def test_the_schedule_says_the_absence() -> None:
    assert schedule_fingerprint(spec()) == "event document_added fewer than 3 in 60s"


# --- counting ---------------------------------------------------------------------------------------

def test_events_count_in_the_tumbling_window_of_their_arrival() -> None:
    v = counted(view(), 2, at(seconds=10))
    v = counted(v, 1, at(seconds=59))
    v = counted(v, 4, at(minutes=1))
    start = int(at().timestamp())
    assert v.status.event_window == ((start, 3), (start + W, 4)) and v.status.event_counter == 4


def test_before_the_trigger_is_active_no_event_counts() -> None:
    v = view(active_since=None)
    s, tally = count_events(v.status, spec(), [event("e1")], at())
    assert (s.event_window, tally.counted, s.recent_event_ids) == ((), 0, ())


# --- judging ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("n", "fires"), [pytest.param(0, True, id="silent"), pytest.param(K - 1, True, id="K-1"),
                                          pytest.param(K, False, id="K"), pytest.param(K + 5, False, id="busy")])
def test_a_window_with_fewer_than_k_events_fires_once_told_the_count(n: int, fires: bool) -> None:
    v = counted(view(), n, at(seconds=30)) if n else view()
    plan = reconcile(v, {}, {}, at(minutes=1))
    assert names(plan) == ([f"{TRIGGER_NAME}-e1"] if fires else [])
    assert plan.status.last_absence == {"windowStart": "2026-03-02T10:00:00Z", "windowEnd": "2026-03-02T10:01:00Z",
                                        "count": n, "fired": fires}
    if fires:
        assert env(plan)["TRIGGER_EVENT_COUNT"] == str(n) and plan.status.active[0].event_count == n
    # Judged in the same write as the run: the next pass fires nothing more for that window.
    again = reconcile(dataclasses.replace(v, status=plan.status), {}, {}, at(minutes=1, seconds=5))
    assert plan.status.event_firings == again.status.event_firings == int(fires)


def test_an_open_window_is_not_judged_and_the_trigger_wakes_at_its_end() -> None:
    v = counted(view(), 1, at(seconds=10))
    v = dataclasses.replace(v, status=dataclasses.replace(
        v.status, last_absence={"windowEnd": "2026-03-02T10:00:00Z", "windowStart": "2026-03-02T09:59:00Z",
                                "count": 9, "fired": False}))
    plan = reconcile(v, {}, {}, at(seconds=59))
    assert names(plan) == [] and plan.wake_at == at(minutes=1)
    assert plan.status.event_counter == 1


def test_an_event_at_the_windows_end_counts_for_the_next_window() -> None:
    v = counted(view(), K - 1, at(seconds=59))
    v = counted(v, 1, at(minutes=1))  # 10:01:00 is the next window's first second
    plan = reconcile(v, {}, {}, at(minutes=1))
    assert names(plan) == [f"{TRIGGER_NAME}-e1"] and plan.status.last_absence is not None
    assert plan.status.last_absence["count"] == K - 1
    assert plan.status.event_window == ((int(at(minutes=1).timestamp()), 1),)


def test_after_a_restart_mid_window_the_count_so_far_is_kept() -> None:
    """Status holds the window's count: an operator that restarts mid-window judges it whole."""
    v = counted(view(), 2, at(seconds=10))
    restarted = dataclasses.replace(v, status=TriggerStatus.from_dict(v.status.to_dict()))
    v = counted(restarted, 1, at(seconds=40))
    plan = reconcile(v, {}, {}, at(minutes=1, seconds=2))
    assert names(plan) == [] and plan.status.last_absence is not None and plan.status.last_absence["count"] == K


def test_after_an_outage_only_the_last_closed_window_is_judged() -> None:
    v = counted(view(), 5, at(seconds=10))  # busy 10:00 window, then the operator stopped for 3 minutes
    plan = reconcile(v, {}, {}, at(minutes=3, seconds=30))
    assert names(plan) == [f"{TRIGGER_NAME}-e1"]
    assert plan.status.last_absence == {"windowStart": "2026-03-02T10:02:00Z", "windowEnd": "2026-03-02T10:03:00Z",
                                        "count": 0, "fired": True}
    assert plan.status.event_window == ()


def test_a_paused_trigger_judges_nothing() -> None:
    paused = reconcile(dataclasses.replace(view(), spec=raw() | {"state": "paused"}), {}, {}, at(minutes=1))
    assert names(paused) == [] and paused.status.last_absence is None


def test_under_forbid_a_silent_window_waits_for_the_running_run() -> None:
    going = ActiveRun(name=f"{TRIGGER_NAME}-e1", kind=RunKind.EVENT, scheduled_time=at(), fired_at=at(), event_count=0)
    v = view(active=(going,), event_firings=1)
    held = reconcile(v, {going.name: job_view(going.name)}, {}, at(minutes=1))
    assert names(held) == [] and held.status.last_absence is None
    done = job_view(going.name, JobPhase.SUCCEEDED, finished_at=at(minutes=1, seconds=5))
    after = reconcile(v, {going.name: done}, {}, at(minutes=1, seconds=6))
    assert names(after) == [f"{TRIGGER_NAME}-e2"]


def test_ready_says_the_rule_and_the_last_window() -> None:
    plan = reconcile(view(), {}, {}, at(minutes=1))
    [ready] = [c for c in plan.status.conditions if c.type == "Ready"]
    assert (ready.status, ready.reason) == ("True", "Scheduled")
    assert ready.message == ("runs when fewer than 3 document_added events arrive in a window of 60 s; 0 in the "
                             "current one; last window (2026-03-02T10:01:00Z): 0, fired")


# --- with groupBy -----------------------------------------------------------------------------------

def test_with_group_by_each_key_seen_is_judged_on_its_own() -> None:
    config = {"groupBy": "collectionid"}
    v = view(config)
    v = counted(v, 5, at(minutes=-1, seconds=10), config, key="busy")  # seen in the 09:59 window
    v = counted(v, 1, at(minutes=-1, seconds=20), config, key="quiet")
    v = counted(v, 4, at(seconds=10), config, key="busy")
    v = counted(v, 1, at(seconds=20), config, key="new")  # first seen in the 10:00 window
    v = counted(v, 3, at(seconds=30), config, key="late")
    plan = reconcile(v, {}, {}, at(minutes=1))
    fired = {new.run.event_key: new.run.event_count for new in plan.create}
    # busy had 4 >= 3; quiet had none; new had 1; late had 3. A key never seen cannot be absent.
    assert fired == {"new": 1, "quiet": 0}
    assert plan.status.last_absence is not None and plan.status.last_absence["absentKeys"] == 2
    assert set(read_keys(plan.status.event_key_state)) == {"busy", "quiet", "new", "late"}
    again = reconcile(dataclasses.replace(v, status=plan.status), {}, {}, at(minutes=1, seconds=1))
    assert again.status.event_firings == plan.status.event_firings == 2


# --- bounded whatever the phase (issue 23 review, F2) ------------------------------------------------

GROUPED = {"groupBy": "collectionid"}
CONFIGS = [pytest.param({}, id="plain"), pytest.param(GROUPED, id="groupBy")]


def with_state(v: TriggerView, config: dict[str, Any], state: str, when: Any) -> TriggerView:
    """``v`` after its spec says ``state`` and one pass settled its phase at ``when``."""
    edited = dataclasses.replace(v, spec=raw(**config) | {"state": state})
    return dataclasses.replace(edited, status=reconcile(edited, {}, {}, when).status)


def no_counts(status: TriggerStatus) -> bool:
    return status.event_window == () and status.event_counter == 0 and all(
        not state.counts for state in read_keys(status.event_key_state).values())


@pytest.mark.parametrize("config", CONFIGS)
def test_a_paused_absence_trigger_counts_nothing_and_keeps_no_window(config: dict[str, Any]) -> None:
    v = view(config)
    for k in range(10):
        v = counted(v, 1, at(seconds=10), config, key=f"k{k}")
    v = with_state(v, config, "paused", at(seconds=30))
    assert no_counts(v.status)
    for k in range(10):  # 30 days later, still paused: counted for no window
        v = counted(v, 1, at(days=30), config, key=f"k{k}")
    assert no_counts(v.status)
    assert set(read_keys(v.status.event_key_state)) == ({f"k{k}" for k in range(10)} if config else set())


def test_a_resume_starts_a_new_grid_whose_first_window_begins_empty_for_every_key() -> None:
    config = GROUPED
    v = counted(view(config), 2, at(seconds=10), config, key="k")
    v = with_state(v, config, "paused", at(seconds=30))
    v = with_state(v, config, "active", at(seconds=40))  # new grid: windows from 10:00:40
    v = counted(v, 1, at(seconds=50), config, key="k")
    plan = reconcile(v, {}, {}, at(minutes=1, seconds=40))
    assert [new.run.event_count for new in plan.create] == [1]  # not 3: the 2 before the pause are gone
    assert plan.status.last_absence is not None and plan.status.last_absence["count"] == 1


@pytest.mark.parametrize("config", CONFIGS)
def test_while_the_reconciler_is_away_only_the_windows_it_can_judge_are_kept(config: dict[str, Any]) -> None:
    v = view(config)
    for hour in range(24):  # one event an hour, for a day, no pass in between
        v = counted(v, 1, at(hours=hour, seconds=10), config, key="k")
    assert len(v.status.event_window) <= 2
    assert all(len(state.counts) <= 2 for state in read_keys(v.status.event_key_state).values())
    plan = reconcile(v, {}, {}, at(hours=23, minutes=1))
    assert [new.run.event_count for new in plan.create] == [1]
    assert plan.status.last_absence is not None and plan.status.last_absence["windowEnd"] == "2026-03-03T09:01:00Z"
