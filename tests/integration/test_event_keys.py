"""Per-key counting and absence (issue 23 parts 1 and 2) on the real control plane: one groupBy
Trigger makes exactly one Job per collection per threshold, each told its collection, with
duplicates and retries counted once; an absence Trigger fires once for a silent window and not
for a busy one."""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.harness import Kube, Operator, wait_for
from tests.integration.test_events import post, sender  # noqa: F401 - the sender fixture
from tests.integration.triggers import trigger

BATCH = "application/cloudevents-batch+json"
COLLECTIONS = [f"col_{i:02}" for i in range(20)]
PER_COLLECTION = 10  # two runs' worth each at threshold 5


def keyed_trigger(name: str, **config: Any) -> dict[str, Any]:
    manifest = trigger(name, triggerType="event", concurrencyPolicy="Allow", successfulJobsHistoryLimit=100,
                       failedJobsHistoryLimit=100)
    manifest["spec"]["scheduleConfig"] = config
    return manifest


def event(event_id: str, event_type: str = "documents_added", **more: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "id": event_id, "source": "//ingest/test", "type": event_type, **more}


def env(job: Any) -> dict[str, str]:
    return {e.name: e.value for e in job.spec.template.spec.containers[0].env}


def test_group_by_makes_one_job_per_collection_per_threshold_told_its_collection(
        kube: Kube, namespace: str, operator: Operator, sender: str) -> None:  # noqa: F811
    kube.apply(keyed_trigger("per-col", eventType="documents_added", eventThreshold=5, groupBy="collectionid"),
               namespace)
    wait_for("the Trigger to be Active", lambda: kube.status(namespace, "per-col").get("phase") == "Active")
    events = [event(f"{c}-{i}", collectionid=c) for c in COLLECTIONS for i in range(PER_COLLECTION)]
    retries = random.Random(7).sample(events, 60)  # a sender's retries: the same source and id again
    unkeyed = [event(f"nokey-{i}") for i in range(5)]  # no collectionid: counted for no key
    deliveries = events + retries + unkeyed
    random.Random(23).shuffle(deliveries)
    batches = [deliveries[i:i + 25] for i in range(0, len(deliveries), 25)]
    with ThreadPoolExecutor(8) as pool:  # concurrent senders share the Trigger's group commit
        answers = list(pool.map(lambda b: post(operator, namespace, sender, b, BATCH), batches))
    assert all(a.status_code == 202 for a in answers), [a.text for a in answers if a.status_code != 202]
    tallies = [t for a in answers for t in a.json()["triggers"]]
    assert sum(t["counted"] for t in tallies) == len(events)
    assert sum(t["duplicates"] for t in tallies) == len(retries)
    expected = len(COLLECTIONS) * PER_COLLECTION // 5
    jobs = wait_for(f"{expected} Jobs", lambda: (j := kube.jobs(namespace, "per-col")) and len(j) >= expected and j,
                    timeout=90)
    time.sleep(3)  # nothing more comes
    jobs = kube.jobs(namespace, "per-col")
    assert len(jobs) == expected
    by_key: dict[str, int] = {}
    for job in jobs:
        key = env(job)["TRIGGER_EVENT_KEY"]
        assert job.metadata.annotations["trigger-operator.io/event-key"] == key
        by_key[key] = by_key.get(key, 0) + 1
    assert by_key == {c: PER_COLLECTION // 5 for c in COLLECTIONS}
    status = kube.status(namespace, "per-col")
    assert status["eventFirings"] == expected and status["eventCounter"] == 0
    assert status.get("eventKeys", {}).get("total") == 0  # every key spent: none is left in status


def test_absence_fires_once_for_a_silent_window_and_not_for_a_busy_one(
        kube: Kube, namespace: str, operator: Operator, sender: str) -> None:  # noqa: F811
    rule = {"absence": {"withinSeconds": 60, "fewerThan": 3}}
    kube.apply(keyed_trigger("quiet", eventType="quiet_signal", **rule), namespace)
    kube.apply(keyed_trigger("busy", eventType="busy_signal", **rule), namespace)
    for name in ("quiet", "busy"):
        wait_for(f"{name} to be Active", lambda n=name: kube.status(namespace, n).get("activeSince"))  # type: ignore[misc]
    ends = {n: time.time() + 60 for n in ("quiet", "busy")}  # at the latest: windows start at activeSince
    assert post(operator, namespace, sender, [event("q1", "quiet_signal")], BATCH).status_code == 202
    sent = 0
    while time.time() < max(ends.values()) + 3:  # a steady stream for busy, one event every 4 s
        assert post(operator, namespace, sender, [event(f"b{sent}", "busy_signal")], BATCH).status_code == 202
        sent += 1
        time.sleep(4)
    judged = wait_for("quiet's first window judged", lambda: kube.status(namespace, "quiet").get("lastAbsence"),
                      timeout=30)
    assert (judged["count"], judged["fired"]) == (1, True)
    [job] = wait_for("quiet's run", lambda: kube.jobs(namespace, "quiet"), timeout=30)
    assert (job.metadata.name, env(job)["TRIGGER_EVENT_COUNT"]) == ("quiet-e1", "1")
    busy = wait_for("busy's first window judged", lambda: kube.status(namespace, "busy").get("lastAbsence"),
                    timeout=30)
    assert busy["fired"] is False and busy["count"] >= 3
    assert kube.jobs(namespace, "busy") == []
    time.sleep(2)
    assert len(kube.jobs(namespace, "quiet")) == 1  # once for its window
