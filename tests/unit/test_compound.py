"""Compound Triggers (issue 23 part 3): the spec's refusals, the pure firing rule of
core/firing/compound.py as tables (all / any / n, the window's edges, a part firing twice, firings
used once across passes and restarts, a missing part, a cycle, cooldown, Forbid), the Job told its
parts, and the store's part -> compounds index that brings a compound its pass."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from tests.unit.conftest import at, job_template, job_view, trigger_view
from tests.unit.test_argocd_health import health
from tests.unit.test_argocd_health import ready as condition
from tests.unit.test_argocd_health import trigger as argo_trigger
from trigger_operator.admission.review import validate
from trigger_operator.api import ANNOTATION_PARTS
from trigger_operator.controller.store import Store
from trigger_operator.core.firing.compound import MAX_COMPOUNDS_PER_PART, MAX_REACHABLE_PARTS
from trigger_operator.core.plan import PartView, Plan
from trigger_operator.core.reconcile import reconcile
from trigger_operator.jobs.observe import JobPhase
from trigger_operator.kube.interface import Identity
from trigger_operator.model.spec import SpecError, parse_spec
from trigger_operator.model.status import ActiveRun, Phase, RunKind, TriggerStatus
from trigger_operator.model.trigger import TriggerView
from trigger_operator.plugin.views import describe
from trigger_operator.seed.mapping import BodyError, trigger_manifest
from trigger_operator.seed.models import CreateTriggerRequest

NAME = "nightly"  # the conftest's Trigger name: the compound under test
CREATED = at(hours=-1)
NOW = at()


def compound_spec(*parts: str, require: Any = None, within: int | None = 60, **config: Any) -> dict[str, Any]:
    schedule: dict[str, Any] = {"parts": [{"trigger": p} for p in parts or ("a", "b")], **config}
    if require is not None:
        schedule["require"] = require
    if within is not None:
        schedule["withinSeconds"] = within
    return {"actionType": "cluster", "actionConfig": {"cluster_id": "c1"}, "triggerType": "compound",
            "scheduleConfig": schedule, "jobTemplate": job_template()}


def compound(*parts: str, status: TriggerStatus | None = None, created_at: dt.datetime = CREATED,
             **spec: Any) -> TriggerView:
    return trigger_view(spec=compound_spec(*parts, **spec), status=status or TriggerStatus(), created_at=created_at)


def fired(**offsets: float | None) -> dict[str, PartView]:
    """Each part with its last firing ``seconds`` before NOW (None: exists, never fired)."""
    return {name: PartView(name, f"{name}-e1" if s is not None else None, at(seconds=-s) if s is not None else None)
            for name, s in offsets.items()}


def decide(trigger: TriggerView, parts: dict[str, PartView], now: dt.datetime = NOW, **jobs: Any) -> Plan:
    return reconcile(trigger, jobs, {}, now, parts=parts)


def again(trigger: TriggerView, plan: Plan) -> TriggerView:
    return dataclasses.replace(trigger, status=plan.status)


def runs(plan: Plan) -> list[tuple[str, tuple[str, ...]]]:
    return [(new.run.name, new.run.parts) for new in plan.create]


def ready(plan: Plan) -> tuple[str, str, str]:
    condition = next(c for c in plan.status.conditions if c.type == "Ready")
    return condition.status, condition.reason, condition.message


# --- the spec -------------------------------------------------------------------------------------


def test_a_compound_spec_parses_with_require_all_by_default() -> None:
    spec = parse_spec(compound_spec("docs-added", "drift"))
    assert [p.trigger for p in spec.schedule_config.parts or ()] == ["docs-added", "drift"]
    assert spec.schedule_config.require is None and spec.schedule_config.within_seconds == 60


@pytest.mark.parametrize(("spec", "field", "reason"), [
    pytest.param(compound_spec("a", "b", "a"), "spec.scheduleConfig.parts[2].trigger", "names 'a' again",
                 id="duplicate"),
    pytest.param(compound_spec("a", "b", require=3), "spec.scheduleConfig.require", "between 1 and the number",
                 id="require-above-parts"),
    pytest.param(compound_spec("a", "b", require=0), "spec.scheduleConfig.require", "between 1", id="require-0"),
    pytest.param(compound_spec("a", "b", require="most"), "spec.scheduleConfig.require", "'all', 'any'",
                 id="require-word"),
    pytest.param(compound_spec("a", "b", within=None), "spec.scheduleConfig.withinSeconds", "is required",
                 id="within-missing"),
    pytest.param(compound_spec("a"), "spec.scheduleConfig.parts", "at least 2", id="one-part"),
    pytest.param(compound_spec(*"abcdefghi"), "spec.scheduleConfig.parts", "at most 8", id="nine-parts"),
    pytest.param(compound_spec("a", "B_c"), "spec.scheduleConfig.parts.1.trigger", "pattern", id="not-a-name"),
    pytest.param({"actionType": "cluster", "triggerType": "event", "jobTemplate": job_template(),
                  "scheduleConfig": {"eventType": "x", "eventThreshold": 1, "withinSeconds": 5}},
                 "spec.scheduleConfig.withinSeconds", "applies only to compound Triggers", id="not-compound"),
])
def test_bad_compound_specs_are_refused_naming_the_field(spec: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(SpecError) as error:
        parse_spec(spec)
    assert error.value.field == field
    assert reason in error.value.reason


def test_a_part_naming_the_trigger_itself_is_refused_by_the_webhook_and_invalid_in_the_controller() -> None:
    request = {"uid": "r", "operation": "CREATE", "namespace": "team-a", "userInfo": {"username": "alice"},
               "object": {"metadata": {"name": NAME}, "spec": compound_spec("a", NAME)}}
    decision = validate(request, Identity("alice"), action_types=["cluster"], now=NOW)
    assert not decision.allowed
    assert decision.message == "spec.scheduleConfig.parts[1].trigger: a compound Trigger cannot be its own part"
    plan = decide(compound("a", NAME), fired(a=1))
    assert plan.status.phase is Phase.INVALID and plan.create == ()
    assert ready(plan)[1:] == ("InvalidSpec",
                               "spec.scheduleConfig.parts[1].trigger: a compound Trigger cannot be its own part")


# --- the firing rule, one pass ------------------------------------------------------------------------


@pytest.mark.parametrize(("parts", "require", "firings", "told"), [
    pytest.param(("a", "b"), None, {"a": 10, "b": None}, None, id="all-one-of-two"),
    pytest.param(("a", "b"), None, {"a": 10, "b": 5}, ("a", "b"), id="all-both"),
    pytest.param(("a", "b"), "all", {"a": 60, "b": 0}, ("a", "b"), id="window-edge-inclusive"),
    pytest.param(("a", "b"), "all", {"a": 60.000001, "b": 0}, None, id="just-outside-the-window"),
    pytest.param(("a", "b"), "any", {"a": 10, "b": None}, ("a",), id="any-one"),
    pytest.param(("a", "b"), "any", {"a": 10, "b": 70}, ("a",), id="any-the-other-too-old"),
    pytest.param(("a", "b"), "any", {"a": 10, "b": 20}, ("a", "b"), id="any-both-used-by-one-run"),
    pytest.param(("a", "b", "c"), 2, {"a": 10, "b": None, "c": 30}, ("a", "c"), id="two-of-three"),
    pytest.param(("a", "b", "c"), 2, {"a": 10, "b": None, "c": None}, None, id="one-of-three-needs-two"),
    pytest.param(("a", "b"), None, {"a": 3601, "b": 5}, None, id="before-the-compound-was-active"),
])
def test_the_compound_fires_when_enough_parts_fired_within_the_window(
        parts: tuple[str, ...], require: Any, firings: dict[str, float | None],
        told: tuple[str, ...] | None) -> None:
    trigger = compound(*parts, require=require, within=60 if "a" in firings and firings["a"] != 3601 else 7200)
    plan = decide(trigger, fired(**firings))
    assert runs(plan) == ([(f"{NAME}-x1", told)] if told else [])
    assert plan.status.compound_firings == (1 if told else 0)
    if told:
        [new] = plan.create
        assert new.run.kind is RunKind.COMPOUND
        env = {e["name"]: e["value"] for e in new.manifest["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["TRIGGER_PARTS"] == ",".join(told)
        assert new.manifest["metadata"]["annotations"][ANNOTATION_PARTS] == ",".join(told)


def test_ready_says_which_parts_count_now() -> None:
    plan = decide(compound(), fired(a=10, b=None))
    assert ready(plan) == ("True", "Scheduled", "1 of 2 parts fired within the last 60 s (all required): a")
    assert plan.wake_at == at(seconds=50, microseconds=1)  # a leaves the window


# --- across passes ---------------------------------------------------------------------------------------


def test_firings_are_used_once_and_a_new_run_needs_new_firings_of_every_required_part() -> None:
    trigger = compound()
    first = decide(trigger, fired(a=10, b=5))
    assert runs(first) == [(f"{NAME}-x1", ("a", "b"))]
    record = {r.trigger: (r.consumed_run, r.consumed_at) for r in first.status.compound_parts}
    assert record == {"a": ("a-e1", at(seconds=-10)), "b": ("b-e1", at(seconds=-5))}
    trigger = again(trigger, first)
    running = {f"{NAME}-x1": job_view(f"{NAME}-x1", JobPhase.SUCCEEDED, finished_at=at(seconds=2))}
    assert decide(trigger, fired(a=10, b=5), at(seconds=3), **running).create == ()
    a_again = {**fired(b=5), "a": PartView("a", "a-e2", at(seconds=4))}
    second = decide(trigger, a_again, at(seconds=5), **running)
    assert second.create == ()  # b's firing was used by x1
    b_again = {**a_again, "b": PartView("b", "b-e2", at(seconds=6))}
    third = decide(again(trigger, second), b_again, at(seconds=7), **running)
    assert runs(third) == [(f"{NAME}-x2", ("a", "b"))]


def test_a_part_firing_twice_within_the_window_counts_once() -> None:
    trigger = compound("a", "b", "c", require=2)
    first = decide(trigger, fired(a=30, b=None, c=None))
    twice = {**fired(b=None, c=None), "a": PartView("a", "a-e2", at(seconds=-5))}
    assert first.create == () and decide(again(trigger, first), twice).create == ()


def test_a_restart_reading_the_written_status_never_reuses_a_firing() -> None:
    """A new process (or a second replica) knows only what status says: read back from the API's dict."""
    trigger = compound()
    first = decide(trigger, fired(a=10, b=5))
    stored = TriggerStatus.from_dict(first.status.to_dict())
    assert stored.compound_parts == first.status.compound_parts
    assert stored.active == (ActiveRun(f"{NAME}-x1", RunKind.COMPOUND, NOW, NOW, parts=("a", "b")),)
    restarted = dataclasses.replace(trigger, status=stored, raw_status=None)
    done = {f"{NAME}-x1": job_view(f"{NAME}-x1", JobPhase.SUCCEEDED, finished_at=at(seconds=20))}
    assert decide(restarted, fired(a=10, b=5), at(seconds=30), **done).create == ()
    # A pass from a copy of before the firing decides the same Job name: its create meets AlreadyExists.
    assert runs(decide(trigger, fired(a=10, b=5), at(seconds=1))) == [(f"{NAME}-x1", ("a", "b"))]


def test_a_run_whose_job_was_not_created_is_created_again_still_told_its_parts() -> None:
    trigger = compound()
    first = decide(trigger, fired(a=10, b=5))
    retry = decide(again(trigger, first), fired(a=10, b=5), at(seconds=30))  # crashed before the create
    [new] = retry.create
    assert new.run.name == f"{NAME}-x1"
    env = {e["name"]: e["value"] for e in new.manifest["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["TRIGGER_PARTS"] == "a,b"


def test_a_part_deleted_and_created_again_reusing_a_run_name_fires_anew() -> None:
    trigger = compound(require="any")
    first = decide(trigger, fired(a=10))
    done = {f"{NAME}-x1": job_view(f"{NAME}-x1", JobPhase.SUCCEEDED, finished_at=at(seconds=1))}
    recreated = {"a": PartView("a", "a-e1", at(seconds=2))}  # its firings number from 1 again
    assert runs(decide(again(trigger, first), recreated, at(seconds=3), **done)) == [(f"{NAME}-x2", ("a",))]


def test_cooldown_holds_firings_until_it_ends_if_they_are_still_in_the_window() -> None:
    trigger = compound(require="any", cooldownSeconds=30)
    first = decide(trigger, fired(a=10))
    done = {f"{NAME}-x1": job_view(f"{NAME}-x1", JobPhase.SUCCEEDED, finished_at=at(seconds=1))}
    b = {**fired(a=10), "b": PartView("b", "b-e1", at(seconds=5))}
    cooling = decide(again(trigger, first), b, at(seconds=10), **done)
    assert cooling.create == () and cooling.status.next_scheduled_at == at(seconds=30)
    assert cooling.wake_at == at(seconds=30)
    assert runs(decide(again(trigger, cooling), b, at(seconds=30), **done)) == [(f"{NAME}-x2", ("b",))]
    # A firing that left the window while the compound cooled down is gone.
    late = decide(again(trigger, cooling), b, at(seconds=66), **done)
    assert late.create == ()


def test_under_forbid_a_firing_waits_for_the_running_job() -> None:
    trigger = compound(require="any")
    first = decide(trigger, fired(a=10))
    b = {**fired(a=10), "b": PartView("b", "b-e1", at(seconds=5))}
    running = {f"{NAME}-x1": job_view(f"{NAME}-x1")}
    assert decide(again(trigger, first), b, at(seconds=6), **running).create == ()
    done = {f"{NAME}-x1": job_view(f"{NAME}-x1", JobPhase.SUCCEEDED, finished_at=at(seconds=7))}
    assert runs(decide(again(trigger, first), b, at(seconds=8), **done)) == [(f"{NAME}-x2", ("b",))]


def test_a_paused_compound_records_firings_but_runs_nothing_and_not_later_either() -> None:
    trigger = compound()
    paused = dataclasses.replace(trigger, spec={**trigger.spec, "state": "paused"})
    plan = decide(paused, fired(a=10, b=5))
    assert plan.create == () and [r.fired_run for r in plan.status.compound_parts] == ["a-e1", "b-e1"]
    resumed = dataclasses.replace(trigger, status=plan.status, generation=2)
    assert decide(resumed, fired(a=10, b=5), at(seconds=1)).create == ()  # firings of before the resume


# --- missing parts and cycles --------------------------------------------------------------------------


def test_a_missing_part_is_ready_false_naming_it_and_the_others_still_fire_if_enough() -> None:
    plan = decide(compound("a", "b", "gone", require=2), fired(a=10, b=5))
    assert ready(plan)[:2] == ("False", "PartMissing")
    assert ready(plan)[2].startswith("spec.scheduleConfig.parts[2].trigger: no Trigger named 'gone' in namespace "
                                     "team-a (yet)")
    assert runs(plan) == [(f"{NAME}-x1", ("a", "b"))]
    assert [n.reason for n in plan.notices].count("PartMissing") == 1
    assert decide(compound("a", "gone"), fired(a=10)).create == ()  # all: the missing part never fired


def test_a_cycle_through_other_compounds_never_fires() -> None:
    parts = {**fired(a=10, c=5), "other": PartView("other", "other-x1", at(seconds=-3), parts=("c", NAME))}
    plan = decide(compound("a", "other", require="any"), parts)
    assert plan.create == ()
    assert ready(plan) == ("False", "PartCycle", f"spec.scheduleConfig.parts: {NAME} -> other -> {NAME} leads "
                           "back to this Trigger: compound Triggers in a cycle never fire")
    deeper = {**parts, "other": PartView("other", None, None, parts=("mid",)), "mid": PartView("mid", parts=(NAME,))}
    assert ready(decide(compound("a", "other"), deeper))[1:] == ("PartCycle", f"spec.scheduleConfig.parts: {NAME} -> "
                                                                 f"other -> mid -> {NAME} leads back to this Trigger: "
                                                                 "compound Triggers in a cycle never fire")
    # A compound part that is no cycle is an ordinary part.
    chain = {**fired(a=10), "other": PartView("other", "other-x1", at(seconds=-3), parts=("c", "d"))}
    assert runs(decide(compound("a", "other"), chain)) == [(f"{NAME}-x1", ("a", "other"))]


def test_a_compound_reaching_more_triggers_than_a_pass_follows_never_fires() -> None:
    """Issue 23 review F3: a pass reads at most MAX_REACHABLE_PARTS Triggers; one more (the store
    hands at most that) means a cycle beyond cannot be ruled out: Ready False TooManyParts."""
    chain = {f"c{i}": PartView(f"c{i}", parts=(f"c{i + 1}",)) for i in range(MAX_REACHABLE_PARTS - 1)}
    within = {**fired(a=10), **chain}
    assert len(within) == MAX_REACHABLE_PARTS
    assert runs(decide(compound("a", "c0", require="any"), within)) == [(f"{NAME}-x1", ("a",))]
    beyond = {**within, "last": PartView("last")}
    plan = decide(compound("a", "c0", require="any"), beyond)
    assert plan.create == ()
    assert ready(plan) == ("False", "TooManyParts", f"spec.scheduleConfig.parts: more than {MAX_REACHABLE_PARTS} "
                           "Triggers are reached through the parts (via the compound part(s) c0), more than a pass "
                           "follows to rule out a cycle: this compound never fires; name fewer compound Triggers "
                           "as parts")
    assert [n.reason for n in plan.notices] == ["TooManyParts"]


def test_a_compound_past_the_bound_of_compounds_per_part_never_fires_naming_the_part() -> None:
    last_in = {**fired(a=10), "b": PartView("b", "b-e1", at(seconds=-5), compounds_before=MAX_COMPOUNDS_PER_PART - 1)}
    assert runs(decide(compound(), last_in)) == [(f"{NAME}-x1", ("a", "b"))]
    first_out = {**last_in, "b": dataclasses.replace(last_in["b"], compounds_before=MAX_COMPOUNDS_PER_PART)}
    plan = decide(compound(), first_out)
    assert plan.create == ()
    assert ready(plan) == ("False", "TooManyCompounds", "spec.scheduleConfig.parts[1].trigger: 'b' is already a part "
                           f"of {MAX_COMPOUNDS_PER_PART} compound Triggers created before this one (the most one "
                           "Trigger feeds): this one never fires while they name it")


# --- the store's index ------------------------------------------------------------------------------------


def body(name: str, spec: dict[str, Any], status: dict[str, Any] | None = None, rv: int = 1) -> dict[str, Any]:
    return {"metadata": {"namespace": "team-a", "name": name, "uid": f"uid-{name}", "resourceVersion": str(rv)},
            "spec": spec, "status": status or {}}


EVENT = {"actionType": "cluster", "triggerType": "event", "scheduleConfig": {"eventType": "x", "eventThreshold": 3}}


def test_a_parts_firing_requeues_the_compounds_naming_it_and_nothing_else_does() -> None:
    seen: list[tuple[str, str]] = []
    store = Store(None, seen.append)  # type: ignore[arg-type]  # no API call on these paths
    store.on_trigger("ADDED", body("a", EVENT))
    store.on_trigger("ADDED", body(NAME, compound_spec("a", "b")))
    seen.clear()
    store.on_trigger("MODIFIED", body("a", EVENT, {"eventCounter": 2}, rv=2))  # counted, not fired
    assert seen == [("team-a", "a")]
    seen.clear()
    fired_status = {"lastExecutionTaskId": "a-e1", "lastTriggeredAt": "2026-03-02T10:00:00Z"}
    store.wrote(("team-a", "a"), body("a", EVENT, fired_status, rv=3))  # our own write's answer
    assert seen == [("team-a", NAME)]
    seen.clear()
    store.on_trigger("ADDED", body("b", EVENT))  # a missing part appears
    assert ("team-a", NAME) in seen
    assert set(store.part_views("team-a", NAME, ("a", "b", "gone"))) == {"a", "b"}
    seen.clear()
    store.on_trigger("DELETED", body("b", EVENT))
    assert ("team-a", NAME) in seen
    seen.clear()
    store.on_trigger("MODIFIED", body(NAME, compound_spec("c", "d"), rv=5))  # a names its parts no more
    seen.clear()
    store.wrote(("team-a", "a"), body("a", EVENT, {**fired_status, "lastExecutionTaskId": "a-e2"}, rv=6))
    assert seen == []


def chain_of_compounds(count: int) -> tuple[Store, list[tuple[str, str]]]:
    """The review's bench (issue 23, F3): ``count`` compounds each naming the event Trigger "base"
    and the next 7 compounds (no cycle), created in order."""
    seen: list[tuple[str, str]] = []
    store = Store(None, seen.append)  # type: ignore[arg-type]  # no API call on these paths
    store.on_trigger("ADDED", body("base", EVENT))
    for i in range(count):
        compound_body = body(f"c{i:04}", compound_spec("base", *(f"c{j:04}" for j in range(i + 1, min(count, i + 8)))))
        compound_body["metadata"]["creationTimestamp"] = f"2026-03-02T09:{i // 60:02}:{i % 60:02}Z"
        store.on_trigger("ADDED", compound_body)
    seen.clear()
    return store, seen


def test_one_parts_firing_costs_a_bounded_number_of_bounded_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 23 review F3: 1,000 compounds naming one part made its firing cost 1,000 passes, each
    building views of every Trigger reachable (O(compounds²) CPU on the event loop)."""
    store, seen = chain_of_compounds(1000)
    fired_status = {"lastExecutionTaskId": "base-e1", "lastTriggeredAt": "2026-03-02T10:00:00Z"}
    store.on_trigger("MODIFIED", body("base", EVENT, fired_status, rv=2))
    assert seen == [("team-a", f"c{i:04}") for i in range(MAX_COMPOUNDS_PER_PART)] + [("team-a", "base")]
    made: list[Any] = []
    monkeypatch.setattr("trigger_operator.controller.parts.part_view", made.append)
    views = store.part_views("team-a", "c0000", ("base", *(f"c{j:04}" for j in range(1, 8))))
    assert made == []  # made when the bodies came in, never per pass
    assert len(views) == MAX_REACHABLE_PARTS + 1 and list(views)[:8] == ["base", *(f"c{j:04}" for j in range(1, 8))]
    assert (views["base"].fired_run, views["base"].compounds_before) == ("base-e1", 0)
    assert store.part_views("team-a", "c0099", ("base",))["base"].compounds_before == MAX_COMPOUNDS_PER_PART - 1
    assert store.part_views("team-a", "c0100", ("base",))["base"].compounds_before == MAX_COMPOUNDS_PER_PART


def test_a_compound_past_the_bound_gets_its_pass_when_one_ahead_lets_go_or_a_newer_one_is_pushed_out() -> None:
    store, seen = chain_of_compounds(MAX_COMPOUNDS_PER_PART + 2)
    first = body("c0000", compound_spec("base", "c0001"))
    store.on_trigger("DELETED", first)
    assert ("team-a", f"c{MAX_COMPOUNDS_PER_PART:04}") in seen  # it may fire now
    assert store.part_views("team-a", f"c{MAX_COMPOUNDS_PER_PART:04}", ("base",))["base"].compounds_before \
        == MAX_COMPOUNDS_PER_PART - 1
    seen.clear()
    older = body("a-old", compound_spec("base", "c0001"))
    older["metadata"]["creationTimestamp"] = "2026-03-02T08:00:00Z"  # e.g. the watch's listing, out of order
    store.on_trigger("ADDED", older)
    assert seen == [("team-a", f"c{MAX_COMPOUNDS_PER_PART:04}"), ("team-a", "a-old")]  # pushed out again
    seen.clear()
    store.on_trigger("MODIFIED", {**older, "metadata": {**older["metadata"], "resourceVersion": "2"}})
    assert seen == [("team-a", "a-old")]  # the same parts and place: nobody else moves


# --- what people see: kubectl trigger describe, Argo CD ---------------------------------------------------


def test_describe_shows_each_part_and_whether_its_firing_counts() -> None:
    trigger = compound("a", "b", "c", require=2)
    first = decide(trigger, fired(a=10, b=5, c=None))
    later = {**fired(a=10), "b": PartView("b", "b-e2", at(seconds=-1)), "c": PartView("c", "c-e1", at(seconds=-89))}
    second = decide(again(trigger, first), later, at(seconds=1), **{f"{NAME}-x1": job_view(f"{NAME}-x1")})
    assert second.create == ()  # b counts again, a was used, c is too old: 1 of 2
    body = {"metadata": {"name": NAME, "namespace": "team-a", "creationTimestamp": "2026-03-02T09:00:00Z"},
            "spec": compound_spec("a", "b", "c", require=2), "status": second.status.to_dict()}
    text = " ".join(describe(body, [], [], at(seconds=1)).split())
    assert "Ready: True Scheduled: 1 of 3 parts fired within the last 60 s (2 required): b" in text
    assert "Require: 2 of 3 within 60 s" in text
    assert "Part a: fired 11s ago (run a-e1): used by a run" in text
    assert "Part b: fired 2s ago (run b-e2): counts" in text
    assert "Part c: fired 90s ago (run c-e1): outside the window" in text
    assert "Compound firings: 1" in text


@pytest.mark.parametrize(("reason", "expected"), [("PartMissing", "Progressing"), ("PartCycle", "Degraded")])
def test_argocd_health_is_progressing_while_a_part_is_missing_and_degraded_for_a_cycle(reason: str,
                                                                                       expected: str) -> None:
    status = {"phase": "Active", "observedGeneration": 2, "conditions": condition("False", reason, "spec...")}
    assert health(argo_trigger(status)) == (expected, f"{reason}: spec...")


def test_the_rest_api_maps_a_compound_trigger_and_names_a_bad_field_in_its_own_spelling() -> None:
    request = CreateTriggerRequest.model_validate({
        "action_type": "cluster", "action_config": {"cluster_id": "c1"}, "trigger_type": "compound",
        "schedule_config": {"parts": [{"trigger": "docs"}, {"trigger": "drift"}], "require": "any",
                            "within_seconds": 3600}})
    manifest = trigger_manifest(request, created_by="alice")
    assert manifest["spec"]["triggerType"] == "compound"
    assert manifest["spec"]["scheduleConfig"] == {"parts": [{"trigger": "docs"}, {"trigger": "drift"}],
                                                  "require": "any", "withinSeconds": 3600}
    bad = request.model_copy(update={"schedule_config": {"parts": [{"trigger": "docs"}, {"trigger": "drift"}],
                                                         "require": 3, "within_seconds": 60}})
    with pytest.raises(BodyError) as error:
        trigger_manifest(bad, created_by="alice")
    assert error.value.detail[0]["loc"] == ["body", "schedule_config", "require"]
