"""The event intake's index of which Triggers count which events (intake/candidates.py): every
change the store tells it (a spec edit, a delete, a status that stops or starts reading, disabled
and enabled, a namesake created again) changes the answer at once, and a status write parses no
spec again."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from tests.unit.conftest import NAMESPACE, at
from tests.unit.fake_cluster import FakeCluster
from tests.unit.test_controller import Clock
from tests.unit.test_intake import EVENT_SPEC, committer_of, docs
from trigger_operator.config import OperatorConfig
from trigger_operator.controller.loop import Scheduler
from trigger_operator.controller.store import TriggerIndex
from trigger_operator.events import counting
from trigger_operator.events.cloudevents import Occurrence
from trigger_operator.intake import candidates
from trigger_operator.intake.candidates import Body, EventCandidates
from trigger_operator.model.spec import SpecError, TriggerSpec, TriggerType, parse_spec

SPEC: dict[str, Any] = {**EVENT_SPEC, "scheduleConfig": {**EVENT_SPEC["scheduleConfig"]}}  # type: ignore[dict-item]
OTHER_TYPE = {**SPEC, "scheduleConfig": {**SPEC["scheduleConfig"], "eventType": "documents_removed"}}
DISABLED = {**SPEC, "state": "disabled"}
CRON = {"actionType": "cluster", "triggerType": "cron", "scheduleConfig": {"cronExpression": "0 2 * * *"}}
UNREADABLE = {"lastScheduleTime": "yesterday"}


def body(name: str = "on-docs", *, uid: str = "u1", generation: int = 1, spec: dict[str, Any] = SPEC,
         status: dict[str, Any] | None = None, rv: str = "1", namespace: str = NAMESPACE) -> Body:
    return {"metadata": {"namespace": namespace, "name": name, "uid": uid, "generation": generation,
                         "resourceVersion": rv}, "spec": spec, **({"status": status} if status is not None else {})}


class Parses:
    """An event spec parser that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, b: Body) -> TriggerSpec | None:
        self.calls += 1
        try:
            spec = parse_spec(dict(b["spec"]))
        except SpecError:
            return None
        return spec if spec.trigger_type is TriggerType.EVENT else None


def matched(index: EventCandidates, event: Occurrence, namespace: str = NAMESPACE) -> list[str]:
    return sorted(key[1] for key, _ in index.matching(namespace, [event])[0])


# (case, the bodies the store tells in order (None: deleted), the names docs("x") counts for)
CASES: list[tuple[str, list[tuple[str, Body | None]], list[str]]] = [
    ("an event Trigger counts", [("on-docs", body())], ["on-docs"]),
    ("another trigger type counts nothing", [("nightly", body("nightly", spec=CRON))], []),
    ("a spec edit to another eventType", [("on-docs", body()), ("on-docs", body(generation=2, spec=OTHER_TYPE))], []),
    ("a spec edit back to the eventType",
     [("on-docs", body(spec=OTHER_TYPE)), ("on-docs", body(generation=2, spec=SPEC))], ["on-docs"]),
    ("deleted", [("on-docs", body()), ("on-docs", None)], []),
    ("deleted, one other stays", [("on-docs", body()), ("also", body("also", uid="u2")), ("on-docs", None)], ["also"]),
    ("its status becomes unreadable", [("on-docs", body()), ("on-docs", body(status=UNREADABLE, rv="2"))], []),
    ("its status reads again",
     [("on-docs", body(status=UNREADABLE)), ("on-docs", body(status={"eventCounter": 3}, rv="2"))], ["on-docs"]),
    ("disabled", [("on-docs", body()), ("on-docs", body(generation=2, spec=DISABLED))], []),
    ("enabled again", [("on-docs", body(spec=DISABLED)), ("on-docs", body(generation=2, spec=SPEC))], ["on-docs"]),
    ("a namesake created again with another spec (same generation, new uid)",
     [("on-docs", body()), ("on-docs", None), ("on-docs", body(uid="u9", spec=OTHER_TYPE))], []),
    ("a namesake created again, its DELETED never seen",
     [("on-docs", body(spec=OTHER_TYPE)), ("on-docs", body(uid="u9", spec=SPEC))], ["on-docs"]),
    ("an invalid spec counts nothing", [("on-docs", body(spec={**SPEC, "scheduleConfig": {}}))], []),
]


@pytest.mark.parametrize(("steps", "expected"), [(s, e) for _, s, e in CASES], ids=[c for c, _, _ in CASES])
@pytest.mark.parametrize("asked_between", [False, True], ids=["asked-after", "asked-between"])
def test_the_index_follows_every_change(steps: list[tuple[str, Body | None]], expected: list[str],
                                        asked_between: bool) -> None:
    index = EventCandidates(Parses())
    for name, b in steps:
        index.changed((NAMESPACE, name), b)
        if asked_between:  # taken in after each change, or all at once at the end: the same answer
            matched(index, docs("x"))
    assert matched(index, docs("x")) == expected
    assert sorted(k[1] for k, s in index.of(NAMESPACE) if s.schedule_config.event_type == "documents_added") \
        == expected


def test_a_status_write_parses_no_spec_and_a_namespace_never_asked_about_parses_none() -> None:
    parses = Parses()
    index = EventCandidates(parses)
    index.changed(("quiet", "nightly"), body("nightly", spec=CRON, namespace="quiet"))
    index.changed((NAMESPACE, "on-docs"), body())
    assert parses.calls == 0  # noted, not parsed, until its namespace is asked about
    assert matched(index, docs("x")) == ["on-docs"] and parses.calls == 1
    for rv in range(2, 50):
        index.changed((NAMESPACE, "on-docs"), body(status={"eventCounter": rv}, rv=str(rv)))
        assert matched(index, docs("x")) == ["on-docs"]
    assert parses.calls == 1
    index.changed((NAMESPACE, "on-docs"), body(generation=2, spec=OTHER_TYPE))
    assert matched(index, docs("x")) == [] and parses.calls == 2


def test_only_triggers_of_the_events_type_are_asked_whether_they_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def applies_to(spec: TriggerSpec, event: Occurrence) -> bool:
        asked.append(str(spec.schedule_config.event_type))
        return counting.applies_to(spec, event)

    monkeypatch.setattr(candidates, "applies_to", applies_to)
    index = EventCandidates(Parses())
    index.changed((NAMESPACE, "on-docs"), body())
    index.changed((NAMESPACE, "gone-docs"), body("gone-docs", uid="u2", spec=OTHER_TYPE))
    index.changed((NAMESPACE, "other-col"), body("other-col", uid="u3", spec={
        **SPEC, "scheduleConfig": {**SPEC["scheduleConfig"], "collectionId": "col_xyz"}}))
    gone = Occurrence("documents_removed", "//ingest", "r", 1, {"type": "documents_removed", "collectionid": "col_abc"})
    found = index.matching(NAMESPACE, [docs("a"), gone, docs("b", collection="x")])
    assert [sorted(k[1] for k, _ in m) for m in found] == [["on-docs"], ["gone-docs"], []]
    assert sorted(asked) == ["documents_added"] * 4 + ["documents_removed"]  # never across types
    assert matched(index, docs("c", collection="col_xyz")) == ["other-col"]  # applies_to still decides
    assert index.matching("elsewhere", [docs("a")]) == [[]]


def test_a_namespace_whose_triggers_are_all_gone_keeps_nothing() -> None:
    index = EventCandidates(Parses())
    index.changed((NAMESPACE, "on-docs"), body())
    assert matched(index, docs("x")) == ["on-docs"]
    index.changed((NAMESPACE, "on-docs"), None)
    assert matched(index, docs("x")) == [] and index.of(NAMESPACE) == []
    for i in range(100):  # deletions in namespaces never asked about leave nothing behind either
        index.changed((f"ns-{i}", "t"), body("t", namespace=f"ns-{i}"))
        index.changed((f"ns-{i}", "t"), None)
    assert index._noted == {} and index._namespaces == {}


def test_the_store_index_tells_its_followers_what_it_holds_and_every_change() -> None:
    told: list[tuple[tuple[str, str], Body | None]] = []
    triggers = TriggerIndex()
    triggers[NAMESPACE, "a"] = dict(body("a"))
    triggers.follow(lambda key, b: told.append((key, b)))
    triggers[NAMESPACE, "b"] = dict(body("b"))
    triggers.forget((NAMESPACE, "a"))
    triggers.forget((NAMESPACE, "zz"))  # not held: nothing to tell
    assert [(k[1], None if b is None else b["metadata"]["name"]) for k, b in told] == \
        [("a", "a"), ("b", "b"), ("a", None)]


def test_the_committer_counts_by_what_the_scheduler_s_store_holds_after_each_change() -> None:
    """Wired as the operator wires it: the watch's edit, disable and delete reach the count."""
    async def scenario() -> None:
        clock = Clock(at())
        cluster = FakeCluster(clock)
        cluster.apply_trigger(NAMESPACE, "on-docs", EVENT_SPEC)
        scheduler = Scheduler(cluster, OperatorConfig(), clock=clock)
        committer = committer_of(scheduler)

        def watch() -> None:
            scheduler.store.on_trigger(None, copy.deepcopy(cluster.triggers[NAMESPACE, "on-docs"]))

        assert [t.name for t in await committer.count(NAMESPACE, [docs("a")])] == ["on-docs"]
        cluster.edit_spec(NAMESPACE, "on-docs", state="disabled")
        watch()
        assert await committer.count(NAMESPACE, [docs("b")]) == []
        cluster.edit_spec(NAMESPACE, "on-docs", state="active")
        watch()
        assert [t.counted for t in await committer.count(NAMESPACE, [docs("c")])] == [1]
        scheduler.store.on_trigger("DELETED", cluster.triggers[NAMESPACE, "on-docs"])
        assert await committer.count(NAMESPACE, [docs("d")]) == []
        assert cluster.status(NAMESPACE, "on-docs")["eventCounter"] == 2
    asyncio.run(scenario())
