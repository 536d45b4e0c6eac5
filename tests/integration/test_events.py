"""Event Triggers and the event intake on the real control plane, with real ServiceAccount tokens:
who may send (401, 403, 202), every CloudEvents mode and the seed's plain JSON, a retried delivery
counted once, one run at the threshold with the surplus kept, the cooldown, and no acknowledged
event lost when the operator is killed right after acknowledging it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness import Kube, Operator, grant, service_account_token, wait_for
from tests.integration.conftest import charted_operator
from tests.integration.triggers import trigger
from trigger_operator.events import inbox
from trigger_operator.model.status import TriggerStatus

SEND = [{"apiGroups": ["trigger-operator.io"], "resources": ["triggers/events"], "verbs": ["create"]}]


def event_trigger(name: str, threshold: int, **config: Any) -> dict[str, Any]:
    manifest = trigger(name, triggerType="event")
    manifest["spec"]["scheduleConfig"] = {"eventType": "documents_added", "eventThreshold": threshold,
                                          "collectionId": "col_abc", **config}
    return manifest


@pytest.fixture
def sender(kube: Kube, namespace: str) -> str:
    token = service_account_token(kube, namespace, "ingest")
    # Also get: the 202 names the Triggers and their counters only to a sender who may get them.
    grant(kube, namespace, "ingest", [*SEND, {"apiGroups": ["trigger-operator.io"], "resources": ["triggers"],
                                              "verbs": ["get"]}])
    return token


def cloudevent(event_id: str, count: int = 1, **more: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "id": event_id, "source": "//ingest/test", "type": "documents_added",
            "collectionid": "col_abc", "count": count, **more}


def post(operator: Operator, namespace: str, token: str | None, body: Any, content_type: str,
         headers: dict[str, str] | None = None) -> httpx.Response:
    h = {"content-type": content_type, "x-namespace": namespace, **(headers or {})}
    if token is not None:
        h["authorization"] = f"Bearer {token}"
    return httpx.post(f"{operator.url}/v1/events", content=body if isinstance(body, bytes) else json.dumps(body),
                      headers=h, timeout=30)


def counter(kube: Kube, namespace: str, name: str) -> int:
    return int(kube.status(namespace, name).get("eventCounter", 0))


def test_only_senders_that_rbac_allows_are_counted(kube: Kube, namespace: str, operator: Operator,
                                                  sender: str) -> None:
    kube.apply(event_trigger("on-docs", 100), namespace)
    wait_for("the Trigger to be Ready", lambda: kube.status(namespace, "on-docs").get("phase") == "Active")
    outsider = service_account_token(kube, namespace, "outsider")
    event = cloudevent("e1", 5)
    assert post(operator, namespace, None, event, "application/cloudevents+json").status_code == 401
    assert post(operator, namespace, "not-a-token", event, "application/cloudevents+json").status_code == 401
    refused = post(operator, namespace, outsider, event, "application/cloudevents+json")
    assert refused.status_code == 403
    assert f"system:serviceaccount:{namespace}:outsider may not create triggers/events" in refused.json()["detail"]
    assert counter(kube, namespace, "on-docs") == 0
    accepted = post(operator, namespace, sender, event, "application/cloudevents+json")
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["triggers"] == [{"name": "on-docs", "counted": 5, "duplicates": 0, "event_counter": 5}]
    assert counter(kube, namespace, "on-docs") == 5  # stored before the 202, not after


def test_every_mode_counts_a_retry_counts_once_and_the_threshold_fires_once_keeping_the_surplus(
        kube: Kube, namespace: str, operator: Operator, sender: str) -> None:
    kube.apply(event_trigger("on-docs", 10), namespace)
    wait_for("the Trigger to be Ready", lambda: kube.status(namespace, "on-docs").get("phase") == "Active")
    binary = {"ce-specversion": "1.0", "ce-id": "b1", "ce-source": "//ingest/test", "ce-type": "documents_added",
              "ce-collectionid": "col_abc", "ce-count": "4"}
    assert post(operator, namespace, sender, b"<pdf bytes>", "application/pdf", binary).status_code == 202
    assert post(operator, namespace, sender, cloudevent("s1", 3), "application/cloudevents+json").status_code == 202
    assert counter(kube, namespace, "on-docs") == 7
    retried = post(operator, namespace, sender, cloudevent("s1", 3), "application/cloudevents+json")
    assert retried.status_code == 202 and retried.json()["triggers"][0]["duplicates"] == 1
    assert counter(kube, namespace, "on-docs") == 7
    other = cloudevent("x1", 50, collectionid="col_other")  # another collection: counts for nothing
    assert post(operator, namespace, sender, [other], "application/cloudevents-batch+json").json()["triggers"] == []
    batch = [cloudevent("k1", 2), cloudevent("k2", 2)]
    assert post(operator, namespace, sender, batch, "application/cloudevents-batch+json").status_code == 202
    seed = {"event_type": "documents_added", "collection_id": "col_abc", "count": 1, "id": "seed-1"}
    assert post(operator, namespace, sender, seed, "application/json").status_code == 202
    # 4 + 3 + 2 + 2 + 1 = 12 >= 10: one run, 2 kept.
    job = wait_for("the event run's Job", lambda: kube.jobs(namespace, "on-docs"), timeout=30)[0]
    assert job.metadata.name == "on-docs-e1"
    assert job.metadata.labels["trigger-operator.io/run-kind"] == "event"
    status = wait_for("the run counted", lambda: (s := kube.status(namespace, "on-docs"))
                      .get("executionCount") == 1 and s, timeout=30)
    assert (status["eventCounter"], status["eventFirings"]) == (2, 1)
    assert status["lastCooldownAt"]
    time.sleep(2)
    assert [j.metadata.name for j in kube.jobs(namespace, "on-docs")] == ["on-docs-e1"]


def test_the_cooldown_holds_the_next_run_back(kube: Kube, namespace: str, operator: Operator, sender: str) -> None:
    kube.apply(event_trigger("calm", 1, cooldownSeconds=15), namespace)
    wait_for("the Trigger to be Ready", lambda: kube.status(namespace, "calm").get("phase") == "Active")
    assert post(operator, namespace, sender, cloudevent("c1"), "application/cloudevents+json").status_code == 202
    wait_for("the first run", lambda: kube.status(namespace, "calm").get("executionCount") == 1, timeout=30)
    fired_at = time.monotonic()
    assert post(operator, namespace, sender, cloudevent("c2"), "application/cloudevents+json").status_code == 202
    time.sleep(5)
    assert [j.metadata.name for j in kube.jobs(namespace, "calm")] == ["calm-e1"]  # still cooling down
    assert kube.status(namespace, "calm")["nextScheduledAt"]  # when it may run again
    wait_for("the second run after the cooldown", lambda: len(kube.jobs(namespace, "calm")) == 2, timeout=40)
    assert time.monotonic() - fired_at >= 10


def test_a_sigkill_right_after_acknowledging_loses_no_event(kube: Kube, namespace: str, operator: Operator,
                                                             sender: str) -> None:
    kube.apply(event_trigger("durable", 1_000_000), namespace)
    wait_for("the Trigger to be Ready", lambda: kube.status(namespace, "durable").get("phase") == "Active")

    def send(i: int) -> int:
        return post(operator, namespace, sender, cloudevent(f"d{i}", 1 + i % 3), "application/cloudevents+json"
                    ).status_code

    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(send, range(120)))
    operator.kill()  # the moment the last 202 arrived
    acknowledged = sum(1 + i % 3 for i, code in enumerate(codes) if code == 202)
    assert codes.count(202) == 120
    assert counter(kube, namespace, "durable") == acknowledged
    operator.start()
    # Sent again after the restart (a sender that never saw its 202 would): nothing counted twice.
    with ThreadPoolExecutor(16) as pool:
        assert set(pool.map(send, range(120))) == {202}
    assert counter(kube, namespace, "durable") == acknowledged
    assert operator.errors() == []


def test_a_window_counts_only_recent_events(kube: Kube, namespace: str, operator: Operator, sender: str) -> None:
    kube.apply(event_trigger("recent", 5, windowSeconds=6), namespace)  # buckets of 1 s
    wait_for("the Trigger to be Ready", lambda: kube.status(namespace, "recent").get("phase") == "Active")
    assert post(operator, namespace, sender, cloudevent("w1", 3), "application/cloudevents+json").status_code == 202
    time.sleep(8)  # the first 3 leave the window
    wait_for("the counter to drop", lambda: counter(kube, namespace, "recent") == 0, timeout=20)
    assert post(operator, namespace, sender, cloudevent("w2", 3), "application/cloudevents+json").status_code == 202
    time.sleep(2)
    assert kube.jobs(namespace, "recent") == []  # 3 + 3 events, but never 5 within 6 s
    assert post(operator, namespace, sender, cloudevent("w3", 2), "application/cloudevents+json").status_code == 202
    wait_for("the run once 5 fall within the window", lambda: kube.jobs(namespace, "recent"), timeout=30)


INBOX = {"TRIGGER_OPERATOR_EVENTS_INBOX": "true", "TRIGGER_OPERATOR_EVENTS_INBOX_SWEEP_SECONDS": "1"}


@pytest.fixture
def inbox_operator(kube: Kube, namespace: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Operator]:
    """The operator with the shared inbox on (its objects in the actions ConfigMap's namespace: the
    test's), with the chart's RBAC for it (events.inbox: the ConfigMap rule exists only then)."""
    yield from charted_operator(kube, namespace, tmp_path, request, env=INBOX, sets=("events.inbox=true",))


def inbox_holds(kube: Kube, namespace: str, name: str) -> tuple[int, int]:
    """The Trigger's counter and the count its inbox entries hold that are not folded into it yet."""
    status = TriggerStatus.from_dict(kube.status(namespace, name))
    held = 0
    for item in kube.core.list_namespaced_config_map(namespace, label_selector=inbox.LABEL).items:
        obj = inbox.read_object({"metadata": {"name": item.metadata.name}, "data": item.data})
        if inbox.unfolded(status, obj.incarnation, obj.seq):
            held += sum(e.count for entry in obj.entries if entry.trigger == name for e in entry.events)
    return status.event_counter, held


def test_with_the_inbox_a_sigkill_right_after_acknowledging_loses_and_doubles_no_event(
        kube: Kube, namespace: str, inbox_operator: Operator, sender: str) -> None:
    """The 202 means stored in the inbox: right after it (and right after a SIGKILL) the counter and
    the unfolded inbox entries hold every acknowledged event; after the restart the fold brings the
    counter to exactly that, and senders retrying count nothing twice."""
    operator = inbox_operator
    kube.apply(event_trigger("durable", 1_000_000), namespace)
    wait_for("the Trigger to be Ready", lambda: kube.status(namespace, "durable").get("phase") == "Active")
    first = post(operator, namespace, sender, cloudevent("d-first", 4), "application/cloudevents+json")
    assert first.status_code == 202 and first.json()["triggers"][0]["event_counter"] == 4
    assert sum(inbox_holds(kube, namespace, "durable")) == 4  # durable at the 202: in status or in the inbox

    def send(i: int) -> int:
        return post(operator, namespace, sender, cloudevent(f"d{i}", 1 + i % 3), "application/cloudevents+json"
                    ).status_code

    def send_without_id(i: int) -> int:
        seed = {"event_type": "documents_added", "collection_id": "col_abc", "count": 10}
        return post(operator, namespace, sender, seed, "application/json").status_code

    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(send, range(120)))
        plain = list(pool.map(send_without_id, range(20)))
    operator.kill()  # the moment the last 202 arrived
    assert codes.count(202) == 120 and plain.count(202) == 20
    acknowledged = 4 + sum(1 + i % 3 for i in range(120)) + 10 * 20
    assert sum(inbox_holds(kube, namespace, "durable")) == acknowledged
    operator.start()
    wait_for("the inbox folded", lambda: inbox_holds(kube, namespace, "durable") == (acknowledged, 0), timeout=60)
    # The objects go after the counter's write that folded them, so a moment later than it.
    wait_for("the folded inbox objects deleted", lambda: not kube.core.list_namespaced_config_map(
        namespace, label_selector=inbox.LABEL).items, timeout=30)
    with ThreadPoolExecutor(16) as pool:  # sent again (a sender that never saw its 202 would)
        assert set(pool.map(send, range(120))) == {202}
    wait_for("the retries folded", lambda: not kube.core.list_namespaced_config_map(
        namespace, label_selector=inbox.LABEL).items, timeout=60)
    assert counter(kube, namespace, "durable") == acknowledged
    assert kube.status(namespace, "durable")["inboxFolded"]  # counted through the inbox
    assert operator.errors() == []
