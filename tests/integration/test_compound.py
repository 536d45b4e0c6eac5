"""Compound Triggers on the real control plane (issue 23 part 3): a compound of two event Triggers
fires only once both parts fired within its window, exactly once, its Job told both parts; more
firings of one part alone fire nothing more."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.harness import Kube, Operator, grant, service_account_token, wait_for
from tests.integration.test_events import SEND, cloudevent, post
from tests.integration.triggers import trigger


def event_trigger(name: str, event_type: str, threshold: int) -> dict[str, Any]:
    manifest = trigger(name, triggerType="event")
    manifest["spec"]["scheduleConfig"] = {"eventType": event_type, "eventThreshold": threshold}
    return manifest


def compound(name: str, *parts: str, within: int) -> dict[str, Any]:
    manifest = trigger(name, triggerType="compound")
    manifest["spec"]["scheduleConfig"] = {"parts": [{"trigger": p} for p in parts], "withinSeconds": within}
    return manifest


@pytest.fixture
def sender(kube: Kube, namespace: str) -> str:
    token = service_account_token(kube, namespace, "ingest")
    grant(kube, namespace, "ingest", SEND)
    return token


def send(operator: Operator, namespace: str, token: str, event_type: str, *ids: str) -> None:
    for event_id in ids:
        answer = post(operator, namespace, token, cloudevent(event_id, type=event_type),
                      "application/cloudevents+json")
        assert answer.status_code == 202, answer.text


def fired_parts(kube: Kube, namespace: str, name: str) -> dict[str, str | None]:
    return {p["trigger"]: p.get("firedRun") for p in kube.status(namespace, name).get("compoundParts") or []}


def names(kube: Kube, namespace: str, trigger_name: str) -> list[str]:
    return [j.metadata.name for j in kube.jobs(namespace, trigger_name)]


def test_a_compound_fires_once_when_both_parts_fired_within_its_window(
        kube: Kube, namespace: str, operator: Operator, sender: str) -> None:
    kube.apply(event_trigger("docs", "documents_added", 3), namespace)
    kube.apply(event_trigger("drift", "drift_detected", 1), namespace)
    kube.apply(compound("both", "docs", "drift", within=60), namespace)
    for name in ("docs", "drift", "both"):
        wait_for(f"{name} Active", lambda n=name: kube.status(namespace, n).get("phase") == "Active")  # type: ignore[misc]
    ready = wait_for("the compound's Ready", lambda: next(
        (c for c in kube.status(namespace, "both").get("conditions") or [] if c["type"] == "Ready"), None))
    assert (ready["status"], ready["reason"]) == ("True", "Scheduled")

    # Only the first part fires: no compound run.
    send(operator, namespace, sender, "documents_added", "d1", "d2", "d3")
    wait_for("docs' run", lambda: names(kube, namespace, "docs") == ["docs-e1"], timeout=30)
    wait_for("the compound to see docs fire", lambda: fired_parts(kube, namespace, "both").get("docs") == "docs-e1",
             timeout=30)
    time.sleep(3)
    assert names(kube, namespace, "both") == []

    # The second part fires within the window: exactly one compound run, told both parts.
    send(operator, namespace, sender, "drift_detected", "x1")
    job = wait_for("the compound's Job", lambda: kube.jobs(namespace, "both"), timeout=30)[0]
    assert job.metadata.name == "both-x1"
    assert job.metadata.labels["trigger-operator.io/run-kind"] == "compound"
    assert job.metadata.annotations["trigger-operator.io/parts"] == "docs,drift"
    env = {e.name: e.value for e in job.spec.template.spec.containers[0].env}
    assert env["TRIGGER_PARTS"] == "docs,drift"
    status = kube.status(namespace, "both")
    assert status["compoundFirings"] == 1
    assert {p["trigger"]: p["consumedRun"] for p in status["compoundParts"]} == {"docs": "docs-e1",
                                                                                "drift": "drift-e1"}

    # More firings of one part alone: no second compound run.
    wait_for("docs' first run counted", lambda: kube.status(namespace, "docs").get("executionCount") == 1,
             timeout=60)
    send(operator, namespace, sender, "documents_added", "d4", "d5", "d6")
    wait_for("docs' second run", lambda: "docs-e2" in names(kube, namespace, "docs"), timeout=30)
    wait_for("the compound to see it", lambda: fired_parts(kube, namespace, "both").get("docs") == "docs-e2",
             timeout=30)
    time.sleep(3)
    assert names(kube, namespace, "both") == ["both-x1"]
    assert kube.status(namespace, "both")["compoundFirings"] == 1


def test_a_missing_part_says_so_and_is_found_once_created(kube: Kube, namespace: str, operator: Operator) -> None:
    kube.apply(event_trigger("docs", "documents_added", 3), namespace)
    kube.apply(compound("waits", "docs", "later", within=60), namespace)

    def ready() -> tuple[str, str, str]:
        found = [c for c in kube.status(namespace, "waits").get("conditions") or [] if c["type"] == "Ready"]
        return (found[0]["status"], found[0]["reason"], found[0]["message"]) if found else ("", "", "")

    def missing() -> str | None:
        state, reason, message = ready()
        return message if reason == "PartMissing" and state == "False" else None

    assert wait_for("PartMissing", missing).startswith("spec.scheduleConfig.parts[1].trigger: no Trigger named 'later'")
    kube.apply(event_trigger("later", "drift_detected", 1), namespace)
    wait_for("Ready once the part exists", lambda: ready()[:2] == ("True", "Scheduled"), timeout=30)
