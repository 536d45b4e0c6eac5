"""The event candidates index (intake/candidates.py) under churn and failure: deleted Triggers of a
namespace asked once leave nothing behind; one Trigger failing to be taken in loses no other."""

from __future__ import annotations

from tests.unit.conftest import NAMESPACE
from tests.unit.test_candidates import Parses, body, matched
from tests.unit.test_intake import docs
from trigger_operator.intake.candidates import Body, EventCandidates
from trigger_operator.model.spec import TriggerSpec


def test_deleted_triggers_of_a_namespace_asked_once_leave_nothing_behind() -> None:
    """A namespace asked about once (taken in), then never again, while its Triggers churn under
    fresh names (generateName, CI): a deletion of a Trigger never taken in leaves no note behind
    (the notes wait for the next ask, which may never come)."""
    index = EventCandidates(Parses())
    index.changed((NAMESPACE, "keep"), body("keep"))
    assert matched(index, docs("x")) == ["keep"]  # the namespace is taken in
    for i in range(10_000):
        index.changed((NAMESPACE, f"t-{i}"), body(f"t-{i}", uid=f"u-{i}"))
        index.changed((NAMESPACE, f"t-{i}"), None)
    left = len(index._noted.get(NAMESPACE, {}))
    assert left <= 1, f"{left} notes of deleted Triggers kept"


def test_a_spec_parser_failing_once_loses_no_other_trigger() -> None:
    """One Trigger whose spec reading raises (a bug, not a SpecError) is left for the next ask; the
    others are taken in, and the request is answered."""
    real = Parses()
    broken = {"once": True}

    def spec_of(b: Body) -> TriggerSpec | None:
        if b["metadata"]["name"] == "a-bad" and broken.pop("once", False):
            raise TypeError("a validator's surprise")
        return real(b)

    index = EventCandidates(spec_of)
    index.changed((NAMESPACE, "a-bad"), body("a-bad", uid="u0"))
    index.changed((NAMESPACE, "b-good"), body("b-good", uid="u1"))
    assert matched(index, docs("x")) == ["b-good"]
    assert matched(index, docs("x")) == ["a-bad", "b-good"]
