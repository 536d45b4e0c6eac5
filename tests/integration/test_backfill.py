"""Backfill on the real control plane (issue 22, "Done when"): a past hour of a ``* * * * *``
Trigger backfilled at parallelism 3 with ``kubectl trigger backfill`` runs each minute once, never
more than 3 backfill Jobs at once; the same request again (same id, and a new id through the REST
API) runs nothing, even with the Jobs pruned by the history limit; a backfill overlapping the live
schedule runs none of its moments twice."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest

from tests.harness import SUCCEEDS, Kube, Operator, grant, service_account_token, wait_for
from tests.integration.test_plugin import ok, plugin
from tests.integration.test_seed_api import Client
from tests.integration.triggers import SEED_EDITOR, parse, trigger
from trigger_operator.api import ANNOTATION_BACKFILL, LABEL_RUN_KIND
from trigger_operator.jobs.render import scheduled_job_name

NAME = "minutely"


class JobWatch:
    """Every backfill Job the API server reports, and the most that were unfinished at once."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube, self.namespace = kube, namespace
        self.created: list[str] = []
        self.unfinished: set[str] = set()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        watch = kubernetes.watch.Watch()
        while not self._stop.is_set():
            for event in watch.stream(self.kube.batch.list_namespaced_job, self.namespace,
                                      label_selector=f"{LABEL_RUN_KIND}=backfill", timeout_seconds=5):
                job, kind = event["object"], event["type"]
                name = job.metadata.name
                if kind == "ADDED" and name not in self.created:
                    self.created.append(name)
                done = any(c.type in ("Complete", "Failed") and c.status == "True"
                           for c in (job.status.conditions or []))
                if kind == "DELETED" or done:
                    self.unfinished.discard(name)
                else:
                    self.unfinished.add(name)
                self.peak = max(self.peak, len(self.unfinished))
                if self._stop.is_set():
                    break

    def __enter__(self) -> JobWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@pytest.fixture
def watch(kube: Kube, namespace: str) -> Iterator[JobWatch]:
    with JobWatch(kube, namespace) as w:
        yield w


def minute_floor(t: dt.datetime) -> dt.datetime:
    return t.replace(second=0, microsecond=0)


def backfill_of(kube: Kube, namespace: str) -> dict[str, Any]:
    return dict(kube.status(namespace, NAME).get("backfill") or {})


def settled(kube: Kube, namespace: str, request_id: str | None = None) -> dict[str, Any] | None:
    block = backfill_of(kube, namespace)
    if request_id is not None and block.get("id") != request_id:
        return None
    return block if block.get("state") in ("Complete", "Cancelled", "Refused") else None


def stamp(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_past_hour_then_again_then_overlapping_the_live_schedule(
        kube: Kube, namespace: str, operator: Operator, watch: JobWatch) -> None:
    created = dt.datetime.now(dt.UTC)
    kube.apply(trigger(NAME, cron="* * * * *", pod=SUCCEEDS, successfulJobsHistoryLimit=1,
                       failedJobsHistoryLimit=1), namespace)
    base = minute_floor(created)
    hour = [base - dt.timedelta(minutes=n) for n in range(65, 5, -1)]  # 60 moments, before the live ones

    # 1. The past hour at parallelism 3, with the plugin, as the caller.
    ok(plugin(kube, "backfill", NAME, "-n", namespace, "--from", stamp(hour[0]), "--to", stamp(hour[-1]),
              "--parallel", "3"))
    block = wait_for("the backfill to complete", lambda: settled(kube, namespace), timeout=150, interval=1)
    assert block["state"] == "Complete", block
    assert (block["total"], block["started"], block["succeeded"], block["failed"]) == (60, 60, 60, 0), block
    assert sorted(watch.created) == sorted(scheduled_job_name(NAME, m) for m in hour)
    assert watch.peak <= 3, f"{watch.peak} backfill Jobs were unfinished at once"
    assert watch.peak >= 2  # the parallelism was used, not one at a time
    first = list(watch.created)

    # 2. The same request again: the same id (re-applied as it is), then a new id through the REST API;
    # the hour's Jobs are pruned by now (history limit 1), so only status can say they ran.
    wait_for("the history limit to prune the hour's Jobs",
             lambda: len([j for j in kube.jobs(namespace, NAME)
                          if j.metadata.labels.get(LABEL_RUN_KIND) == "backfill"]) <= 1, timeout=60)
    annotation = kube.trigger(namespace, NAME)["metadata"]["annotations"][ANNOTATION_BACKFILL]
    kube.annotate(namespace, NAME, ANNOTATION_BACKFILL, json.dumps(json.loads(annotation)))  # seen again
    token = service_account_token(kube, namespace, "editor")
    grant(kube, namespace, "editor", SEED_EDITOR)
    api = Client(operator, namespace, token)
    refused = api("POST", f"/v1/triggers/{NAME}/backfill", {"start_time": stamp(hour[-1]),
                                                             "end_time": stamp(hour[0])})
    assert refused.status_code == 422 and "end_time" in refused.text, refused.text
    answer = api("POST", f"/v1/triggers/{NAME}/backfill", {"start_time": stamp(hour[0]), "end_time": stamp(hour[-1]),
                                                            "parallelism": 5})
    assert answer.status_code == 200, answer.text
    again_id = answer.json()["backfill_id"]
    block = wait_for("the repeated backfill to settle", lambda: settled(kube, namespace, again_id), timeout=60)
    assert (block["state"], block["started"], block["skipped"]) == ("Complete", 0, 60), block
    progress = api("GET", f"/v1/triggers/{NAME}/backfill").json()
    assert (progress["state"], progress["skipped"], progress["backfill_id"]) == ("complete", 60, again_id)
    assert watch.created == first

    # 3. Overlapping the live schedule: once it has run a live minute, backfill from 5 minutes before
    # the Trigger's creation to now. The minutes before it became active run; the live ones do not.
    status = wait_for("a live run", lambda: (s := kube.status(namespace, NAME)).get("executionCount", 0) > 60
                      and s.get("lastScheduleTime") and s, timeout=90)
    since = parse(status["activeSince"])
    assert since is not None
    now = dt.datetime.now(dt.UTC)
    start = base - dt.timedelta(minutes=5)
    ok(plugin(kube, "backfill", NAME, "-n", namespace, "--from", stamp(start), "--to", stamp(now),
              "--parallel", "3"))
    block = wait_for("the overlapping backfill to complete",
                     lambda: (b := settled(kube, namespace)) and b.get("id") != again_id and b, timeout=90)
    moments = [start + dt.timedelta(minutes=n) for n in range(int((now - start) / dt.timedelta(minutes=1)) + 1)]
    before = [m for m in moments if m < since]
    live = [m for m in moments if m >= since]
    assert live, "the Trigger ran no live minute in the range"
    assert (block["state"], block["total"], block["started"], block["skipped"]) == (
        "Complete", len(moments), len(before), len(live)), block
    assert sorted(watch.created) == sorted(first + [scheduled_job_name(NAME, m) for m in before])
    assert not operator.errors()
