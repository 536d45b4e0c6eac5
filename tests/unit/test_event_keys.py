"""Per-key counting (scheduleConfig.groupBy, issue 23 part 1): the spec's rules, counting each key on
its own within maxKeys, and a run per key told its key. Pure (events/keys.py, events/counting.py,
core/firing/events.py)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.conftest import TRIGGER_NAME, at, job_template, job_view, trigger_view
from trigger_operator.core.plan import Plan
from trigger_operator.core.reconcile import reconcile
from trigger_operator.events.cloudevents import Occurrence
from trigger_operator.events.counting import count_events
from trigger_operator.events.keys import (
    COUNT_MAX,
    KEY_MAX_CHARS,
    KEY_WINDOW_BUCKETS,
    ROW_BUCKETS_MAX,
    TOP_KEYS,
    KeyState,
    add,
    drop_before,
    key_bucket_width,
    read_keys,
)
from trigger_operator.jobs.observe import JobPhase
from trigger_operator.model.spec import MAX_KEYS_LIMIT, SpecError, parse_spec
from trigger_operator.model.status import (
    RECENT_EVENT_IDS,
    RECENT_EXECUTIONS,
    STATUS_MAX_BYTES,
    ActiveRun,
    Outcome,
    Phase,
    RunKind,
    TriggerStatus,
)
from trigger_operator.model.trigger import TriggerView

CREATED = at(minutes=-20)
_CRD = yaml.safe_load((Path(__file__).parents[2] / "crds" / "triggers.trigger-operator.io.yaml").read_text())
CRD_SPEC = _CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
CRD_STATUS = _CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]


def raw(**config: Any) -> dict[str, Any]:
    return {"actionType": "collection_trigger", "triggerType": "event", "jobTemplate": job_template(),
            "scheduleConfig": {"eventType": "document_added", "eventThreshold": 5, "groupBy": "collectionid",
                               **config}}


def spec(**config: Any) -> Any:
    return parse_spec(raw(**config))


def event(key: str | None, event_id: str | None = None, count: int = 1, **more: str) -> Occurrence:
    attrs = {"type": "document_added", "source": "s", **({"collectionid": key} if key is not None else {}), **more}
    return Occurrence(type="document_added", source="s", id=event_id, count=count, attributes=attrs)


def keyed(status: TriggerStatus) -> dict[str, int]:
    return {k: s.counter for k, s in read_keys(status.event_key_state).items()}


def active(**status: Any) -> TriggerStatus:
    return TriggerStatus(phase=Phase.ACTIVE, active_since=CREATED, observed_schedule=None, **status)


def trigger(config: dict[str, Any] | None = None, **status: Any) -> TriggerView:
    return dataclasses.replace(trigger_view(spec=raw(**(config or {})), created_at=CREATED),
                               status=active(**status))


def counted_trigger(config: dict[str, Any] | None = None, **counts: int) -> TriggerView:
    """A Trigger whose status holds ``counts`` per key, counted just now (as the intake would)."""
    view = trigger(config)
    s, _ = count_events(view.status, spec(**(config or {})),
                        [event(k, count=n) for k, n in counts.items()], at())
    return dataclasses.replace(view, status=s)


def env(plan: Plan, index: int) -> dict[str, str]:
    container = plan.create[index].manifest["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container["env"]}


# --- the spec ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["CollectionId", "collection_id", "a-b", "", "x" * 21, "col.id"])
def test_a_group_by_that_is_no_attribute_name_is_refused_naming_the_field_and_the_rule(name: str) -> None:
    with pytest.raises(SpecError) as error:
        spec(groupBy=name)
    assert error.value.field == "spec.scheduleConfig.groupBy"
    assert "lower-case letters a-z and digits 0-9, 1 to 20 characters" in error.value.reason


@pytest.mark.parametrize(("config", "field", "reason"), [
    pytest.param({"groupBy": None, "maxKeys": 10}, "spec.scheduleConfig.maxKeys", "applies only with groupBy",
                 id="maxKeys-without-groupBy"),
    pytest.param({"maxKeys": MAX_KEYS_LIMIT + 1}, "spec.scheduleConfig.maxKeys", "less than or equal to 1000",
                 id="maxKeys-over-1000"),
    pytest.param({"maxKeys": 0}, "spec.scheduleConfig.maxKeys", "greater than or equal to 1", id="maxKeys-0"),
])
def test_max_keys_is_bounded_and_needs_group_by(config: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(SpecError) as error:
        parse_spec(raw(**config) | {"scheduleConfig": {k: v for k, v in (raw()["scheduleConfig"] | config).items()
                                                        if v is not None}})
    assert (error.value.field, reason in error.value.reason) == (field, True)


def test_group_by_applies_only_to_event_triggers() -> None:
    with pytest.raises(SpecError, match=r"spec\.scheduleConfig\.groupBy: applies only to event Triggers"):
        parse_spec({"actionType": "cluster", "triggerType": "interval",
                    "scheduleConfig": {"intervalSeconds": 60, "groupBy": "subject"}})


def test_the_schedule_says_the_grouping() -> None:
    assert trigger_view(spec=raw()).spec["scheduleConfig"]["groupBy"] == "collectionid"
    from trigger_operator.model.spec import schedule_fingerprint
    assert schedule_fingerprint(spec()) == "event document_added by collectionid x5"


# --- counting ---------------------------------------------------------------------------------------

def test_each_key_counts_on_its_own_and_the_counter_is_their_sum() -> None:
    s, tally = count_events(active(), spec(), [event("a", count=3), event("b"), event("a", count=2)], at())
    assert keyed(s) == {"a": 5, "b": 1} and s.event_counter == 6
    assert (tally.counted, tally.duplicates, tally.ungrouped, tally.refused) == (6, 0, 0, 0)
    assert s.event_keys == {"total": 2, "top": [{"key": "a", "counter": 5}, {"key": "b", "counter": 1}],
                            "refused": 0, "refusedNoticed": 0}


def test_an_event_without_the_attribute_or_with_a_too_long_value_counts_for_no_key() -> None:
    s, tally = count_events(active(), spec(), [event(None, "e1", count=4), event("k" * (KEY_MAX_CHARS + 1), "e2"),
                                               event("k" * KEY_MAX_CHARS, "e3")], at())
    assert keyed(s) == {"k" * KEY_MAX_CHARS: 1}
    assert (tally.counted, tally.ungrouped) == (1, 5)
    assert len(s.recent_event_ids) == 1  # an event counted for no key is not remembered


def test_another_attribute_can_be_the_key() -> None:
    s, _ = count_events(active(), spec(groupBy="subject"), [event("ignored", subject="doc-1"),
                                                           event("ignored", subject="doc-2")], at())
    assert keyed(s) == {"doc-1": 1, "doc-2": 1}


def test_a_duplicate_is_counted_once_even_when_it_names_another_key() -> None:
    """De-duplication by (source, id) stays the Trigger's: a retry is the same event whatever it says."""
    s, tally = count_events(active(), spec(), [event("a", "e1"), event("a", "e1"), event("b", "e1")], at())
    assert keyed(s) == {"a": 1} and (tally.counted, tally.duplicates) == (1, 2)
    again, tally = count_events(s, spec(), [event("a", "e1")], at(seconds=5))
    assert keyed(again) == {"a": 1} and tally.duplicates == 1


def test_beyond_max_keys_a_new_keys_events_are_refused_and_not_remembered() -> None:
    bounded = spec(maxKeys=2)
    s, tally = count_events(active(), bounded, [event("a", "1"), event("b", "2"), event("c", "3", count=4),
                                                event("a", "4")], at())
    assert keyed(s) == {"a": 2, "b": 1} and (tally.counted, tally.refused) == (3, 4)
    assert s.event_keys is not None and s.event_keys["refused"] == 4
    # Once a key left (nothing counted, nothing running), the refused event is counted on its retry.
    freed = dataclasses.replace(s, event_key_state=tuple(r for r in s.event_key_state if r[0] != "b"))
    retried, tally = count_events(freed, bounded, [event("c", "3", count=4)], at(seconds=1))
    assert keyed(retried) == {"a": 2, "c": 4} and tally.refused == 0


def test_the_default_bound_is_100_keys() -> None:
    s, tally = count_events(active(), spec(), [event(f"col-{i}") for i in range(101)], at())
    assert (len(s.event_key_state), tally.refused) == (100, 1)


def test_a_keys_window_drops_its_own_old_events() -> None:
    windowed = spec(windowSeconds=600)  # 12 buckets of 50 s per key
    s, _ = count_events(active(), windowed, [event("a", count=3)], at(minutes=-9))
    s, _ = count_events(s, windowed, [event("a", count=2), event("b", count=1)], at())
    assert keyed(s) == {"a": 5, "b": 1}
    later, _ = count_events(s, windowed, [event("b")], at(minutes=1, seconds=40))
    assert keyed(later) == {"a": 2, "b": 2}


def test_the_summary_names_the_top_keys_by_counter() -> None:
    s, _ = count_events(active(), spec(maxKeys=50), [event(f"k{i:02}", count=i + 1) for i in range(30)], at())
    assert s.event_keys is not None and s.event_keys["total"] == 30
    assert [t["key"] for t in s.event_keys["top"]] == [f"k{i:02}" for i in range(29, 29 - TOP_KEYS, -1)]


def test_a_keys_counts_saturate() -> None:
    s, _ = count_events(active(), spec(), [event("a", count=1_000_000)] * 11, at())
    assert keyed(s) == {"a": COUNT_MAX}


# --- firing ---------------------------------------------------------------------------------------

def test_each_key_at_its_threshold_fires_one_run_told_its_key_and_keeps_its_surplus() -> None:
    view = counted_trigger(a=7, b=5, c=4)
    plan = reconcile(view, {}, {}, at())
    assert [new.run.name for new in plan.create] == [f"{TRIGGER_NAME}-e1", f"{TRIGGER_NAME}-e2"]
    assert [(new.run.event_key, new.run.kind) for new in plan.create] == [("a", RunKind.EVENT), ("b", RunKind.EVENT)]
    assert env(plan, 0)["TRIGGER_EVENT_KEY"] == "a" and env(plan, 1)["TRIGGER_EVENT_KEY"] == "b"
    assert plan.create[0].manifest["metadata"]["annotations"]["trigger-operator.io/event-key"] == "a"
    assert keyed(plan.status) == {"a": 2, "b": 0, "c": 4}  # b spent: it stays while its run goes
    assert plan.status.event_firings == 2 and plan.status.event_counter == 6
    assert [r.event_key for r in plan.status.active] == ["a", "b"]
    # The spending and the runs are one write: the next pass creates the same Jobs again, no more.
    again = reconcile(dataclasses.replace(view, status=plan.status), {}, {}, at(seconds=1))
    assert sorted(new.run.name for new in again.create) == [f"{TRIGGER_NAME}-e1", f"{TRIGGER_NAME}-e2"]
    assert again.status.event_firings == 2 and keyed(again.status) == {"a": 2, "b": 0, "c": 4}


def test_a_fired_run_of_a_key_is_a_trigger_fired_notification() -> None:
    from trigger_operator.core.outbox import derive
    from trigger_operator.core.plan import Observed
    view = counted_trigger(a=5)
    plan = reconcile(view, {}, {}, at())
    events = derive(Observed(view, {}, at()), plan.status, [], spec())
    assert [e.data.get("job_name") for e in events if e.type.value == "trigger.fired"] == [f"{TRIGGER_NAME}-e1"]


def test_the_cooldown_is_each_keys_own() -> None:
    view = counted_trigger({"cooldownSeconds": 300}, a=5, b=5)
    first = reconcile(view, {}, {}, at())
    assert {new.run.event_key for new in first.create} == {"a", "b"}
    s, _ = count_events(first.status, spec(cooldownSeconds=300), [event("a", count=5), event("c", count=5)],
                        at(minutes=1))
    done = {n: job_view(n, JobPhase.SUCCEEDED, finished_at=at(seconds=30)) for n in ("nightly-e1", "nightly-e2")}
    second = reconcile(dataclasses.replace(view, status=s), done, {}, at(minutes=1))
    assert [new.run.event_key for new in second.create] == ["c"]  # a cools down until 10:05
    assert second.wake_at is not None and second.wake_at <= at(minutes=5)
    assert keyed(second.status)["a"] == 5
    third = reconcile(dataclasses.replace(view, status=second.status), {}, {}, at(minutes=5))
    assert "a" in [new.run.event_key for new in third.create]


def test_under_forbid_only_the_keys_own_running_run_holds_it_back() -> None:
    running = ActiveRun(name=f"{TRIGGER_NAME}-e1", kind=RunKind.EVENT, scheduled_time=at(), fired_at=at(),
                        event_key="a")
    view = counted_trigger(a=5, b=5)
    view = dataclasses.replace(view, status=dataclasses.replace(view.status, active=(running,), event_firings=1))
    plan = reconcile(view, {running.name: job_view(running.name)}, {}, at(seconds=5))
    assert [(new.run.name, new.run.event_key) for new in plan.create] == [(f"{TRIGGER_NAME}-e2", "b")]
    assert keyed(plan.status) == {"a": 5, "b": 0}


def test_under_replace_a_keys_new_run_replaces_that_keys_run_alone() -> None:
    runs = tuple(ActiveRun(name=f"{TRIGGER_NAME}-e{i}", kind=RunKind.EVENT, scheduled_time=at(), fired_at=at(),
                           event_key=k) for i, k in ((1, "a"), (2, "b")))
    view = counted_trigger({}, a=5)
    view = dataclasses.replace(view, spec={**view.spec, "concurrencyPolicy": "Replace"},
                               status=dataclasses.replace(view.status, active=runs, event_firings=2))
    plan = reconcile(view, {r.name: job_view(r.name) for r in runs}, {}, at(seconds=5))
    assert plan.delete == (f"{TRIGGER_NAME}-e1",)
    assert [r.name for r in plan.status.active] == [f"{TRIGGER_NAME}-e2", f"{TRIGGER_NAME}-e3"]
    assert [(e.name, e.outcome) for e in plan.status.recent_executions] == [(f"{TRIGGER_NAME}-e1", Outcome.REPLACED)]


def test_a_paused_trigger_counts_per_key_and_fires_nothing() -> None:
    view = counted_trigger(a=9)
    paused = reconcile(dataclasses.replace(view, spec={**view.spec, "state": "paused"}), {}, {}, at())
    assert paused.create == () and keyed(paused.status) == {"a": 9}


def test_the_key_bound_says_so_in_ready_and_once_in_a_warning_event() -> None:
    bounded = {"maxKeys": 1}
    view = trigger(bounded)
    s, _ = count_events(view.status, spec(**bounded), [event("a"), event("b", count=3)], at())
    plan = reconcile(dataclasses.replace(view, status=s), {}, {}, at())
    [ready] = [c for c in plan.status.conditions if c.type == "Ready"]
    assert (ready.status, ready.reason) == ("True", "Scheduled")  # still healthy: the other keys count
    assert "maxKeys (1) reached: 3 event(s) of new keys refused" in ready.message
    assert [(n.type, n.reason) for n in plan.notices if n.reason == "KeyBoundReached"] == [
        ("Warning", "KeyBoundReached")]
    again = reconcile(dataclasses.replace(view, status=plan.status), {}, {}, at(seconds=1))
    assert [n for n in again.notices if n.reason == "KeyBoundReached"] == []


def test_ready_says_how_many_keys_are_followed() -> None:
    plan = reconcile(counted_trigger(a=1, b=2), {}, {}, at())
    [ready] = [c for c in plan.status.conditions if c.type == "Ready"]
    assert ready.message == "3 document_added events counted over 2 collectionid key(s); each key runs at 5"


# --- status stays small -----------------------------------------------------------------------------

def test_status_holds_a_thousand_keys_with_full_windows_within_its_bound() -> None:
    """The worst case the bounds allow: 1,000 keys of the longest value kept, each window's every
    bucket at the saturated count, every key fired a million times and cooling down; beside the
    rest of an event Trigger's status at its own bounds (1,000 event ids, 10 executions with the
    longest errors)."""
    now = int(at().timestamp())
    window = 3600
    width = window // KEY_WINDOW_BUCKETS
    rows = tuple(KeyState(f"{i:04}" + "k" * (KEY_MAX_CHARS - 4), COUNT_MAX, 999_999, now, now - window + width,
                          (COUNT_MAX,) * KEY_WINDOW_BUCKETS).row() for i in range(MAX_KEYS_LIMIT))
    keys = read_keys(rows)
    from trigger_operator.events.keys import summary
    from trigger_operator.model.status import Execution
    runs = tuple(ActiveRun(name=f"{'t' * 52}-e{999_000 + i}", kind=RunKind.EVENT, scheduled_time=at(),
                           fired_at=at(), event_key=f"{i:04}" + "k" * (KEY_MAX_CHARS - 4)) for i in range(1000))
    status = active(event_key_state=rows, event_keys=summary(keys, 10**9, 10**9), event_counter=COUNT_MAX * 1000,
                    event_firings=10**9, recent_event_ids=tuple(f"{i:016x}" for i in range(RECENT_EVENT_IDS)),
                    recent_executions=tuple(Execution(name=f"{'t' * 52}-e{i}", kind=RunKind.EVENT,
                                                      scheduled_time=at(), outcome=Outcome.FAILED, finished_at=at(),
                                                      started_at=at(), error="x" * 1024)
                                            for i in range(RECENT_EXECUTIONS)), active=runs[:0])
    without_runs = len(json.dumps(status.to_dict(), separators=(",", ":")))
    assert without_runs <= STATUS_MAX_BYTES, without_runs
    # Runs going cost about 240 bytes each, as for any Trigger (status.active): the default bound's
    # 100 keys, each with its run going, fit beside the 1,000 keys' rows (docs/events.md says so).
    with_runs = len(json.dumps(dataclasses.replace(status, active=runs[:100]).to_dict(), separators=(",", ":")))
    assert with_runs <= STATUS_MAX_BYTES, with_runs


# --- bounds (issue 23 review: F2, F5, maxKeys and runs) ---------------------------------------------

@pytest.mark.parametrize(("config", "field", "seed_loc"), [
    pytest.param({"eventThreshold": COUNT_MAX + 1}, "spec.scheduleConfig.eventThreshold",
                 ["body", "schedule_config", "event_threshold"], id="eventThreshold"),
    pytest.param({"eventThreshold": None, "absence": {"withinSeconds": 60, "fewerThan": COUNT_MAX + 1}},
                 "spec.scheduleConfig.absence.fewerThan", ["body", "schedule_config", "absence", "fewer_than"],
                 id="absence.fewerThan"),
])
def test_with_group_by_a_count_a_key_cannot_reach_is_refused_naming_the_field(
        config: dict[str, Any], field: str, seed_loc: list[str]) -> None:
    """A key's count saturates at COUNT_MAX: such a key would never fire, or be judged absent however
    busy. Refused by the model (so the webhook and the REST API) and by the CRD's CEL rule."""
    from trigger_operator.seed.mapping import BodyError, checked_spec
    schedule = {k: v for k, v in (raw()["scheduleConfig"] | config).items() if v is not None}
    with pytest.raises(SpecError) as error:
        parse_spec(raw() | {"scheduleConfig": schedule})
    assert error.value.field == field and f"at most {COUNT_MAX} with groupBy" in error.value.reason
    with pytest.raises(BodyError) as refused:
        checked_spec(raw() | {"scheduleConfig": schedule})
    assert refused.value.detail[0]["loc"] == seed_loc
    at_bound = json.loads(json.dumps(schedule).replace(str(COUNT_MAX + 1), str(COUNT_MAX)))
    parse_spec(raw() | {"scheduleConfig": at_bound})
    parse_spec(raw() | {"scheduleConfig": {k: v for k, v in schedule.items() if k != "groupBy"}})  # ungrouped
    rules = CRD_SPEC["x-kubernetes-validations"]
    [rule] = [r for r in rules if r.get("fieldPath") == "." + field.removeprefix("spec.")]
    assert rule["rule"].startswith("!has(self.scheduleConfig.groupBy) || ")
    assert rule["rule"].endswith(f"self.{field.removeprefix('spec.')} <= {COUNT_MAX}")


def test_the_crd_bounds_the_key_rows_as_the_model() -> None:
    rows = CRD_STATUS["eventKeyState"]
    assert rows["maxItems"] == MAX_KEYS_LIMIT
    assert rows["items"]["maxItems"] == 5 + ROW_BUCKETS_MAX  # key, counter, firings, cooldown, base, buckets


def test_a_row_far_behind_moves_in_one_step_and_keeps_its_newest_buckets() -> None:
    width = 60
    long_row = KeyState("a", base=0, counts=(1,) * ROW_BUCKETS_MAX)
    assert drop_before(long_row, width * 10**9, width) == KeyState("a")
    assert drop_before(long_row, 2 * width, width) == KeyState("a", base=2 * width,
                                                                  counts=(1,) * (ROW_BUCKETS_MAX - 2))
    far = 10**7 // width * width  # 166,666 buckets later
    slid = add(KeyState("a", base=0, counts=(3, 4)), far, width, 5)
    assert slid == KeyState("a", base=far - (ROW_BUCKETS_MAX - 1) * width, counts=(0,) * (ROW_BUCKETS_MAX - 1) + (5,))
    near = add(KeyState("a", base=0, counts=(3, 4)), ROW_BUCKETS_MAX * width, width, 5)
    assert near.base == width and near.counts == (4,) + (0,) * (ROW_BUCKETS_MAX - 2) + (5,)
    # The bound never drops a bucket still in a threshold window: it spans ceil(W / width) + 1.
    assert max(-(-w // key_bucket_width(w)) + 1 for w in range(1, 100_000)) <= ROW_BUCKETS_MAX


def test_a_key_with_a_run_going_keeps_its_place_under_max_keys() -> None:
    bounded = {"maxKeys": 1}
    view = counted_trigger(bounded, a=5)
    fired = reconcile(view, {}, {}, at())
    assert [new.run.event_key for new in fired.create] == ["a"] and keyed(fired.status) == {"a": 0}
    s, tally = count_events(fired.status, spec(**bounded), [event("b", count=5)], at(seconds=1))
    assert tally.refused == 5 and keyed(s) == {"a": 0}  # a's run goes on: no room for b
    name = fired.create[0].run.name
    done = reconcile(dataclasses.replace(view, status=s), {name: job_view(name, JobPhase.SUCCEEDED,
                                                                         finished_at=at(seconds=2))}, {}, at(seconds=3))
    assert keyed(done.status) == {}  # its run ended: the place is free
    s, tally = count_events(done.status, spec(**bounded), [event("b", count=5)], at(seconds=4))
    assert tally.refused == 0 and keyed(s) == {"b": 5}


def test_the_keys_each_group_by_trigger_holds_are_a_gauge() -> None:
    """The metrics summarize the store's Triggers at scrape time: how many keys each groupBy
    Trigger holds (only Triggers holding any: the labels stay bounded like the failing gauges')."""
    from prometheus_client import generate_latest

    from trigger_operator.metrics import Metrics, event_keys

    triggers = [{"metadata": {"namespace": "team-a", "name": name}, "status": {"eventKeyState": rows}}
                for name, rows in (("grouped", [["a", 1], ["b", 2], ["c", 0]]), ("plain", []))]
    assert event_keys(triggers) == [("team-a", "grouped", 3)]
    metrics = Metrics()
    metrics.watch(triggers=lambda: triggers, queue_depth=lambda: 0, next_due=lambda: None, leading=lambda: True)
    text = generate_latest(metrics.registry).decode()
    assert 'trigger_operator_event_keys{namespace="team-a",trigger="grouped"} 3.0' in text
    assert 'trigger="plain"' not in text
