"""The notifications' shell against the fake API server and a real HTTP receiver on loopback: the
signing Secret is used only with its approval (the webhook asks RBAC; the notifier verifies before
every read), delivered events leave the outbox in one guarded write, a final 4xx is dead-lettered,
and a ref sink never follows an ExternalName Service out of the namespace."""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime as dt
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.harness import free_port
from tests.unit.conftest import at, interval_spec
from tests.unit.fake_cluster import FakeCluster
from trigger_operator.admission.approval import requester, sign, signing_subject
from trigger_operator.api import ANNOTATION_NOTIFICATIONS_APPROVAL, FINALIZER_NOTIFY
from trigger_operator.config import SourcesSettings
from trigger_operator.core.outbox import signature
from trigger_operator.core.reconcile import reconcile
from trigger_operator.kube.interface import Identity
from trigger_operator.metrics import Metrics
from trigger_operator.model.notify import Notifications, Sink
from trigger_operator.model.trigger import trigger_view
from trigger_operator.notify.notifier import Notifier
from trigger_operator.notify.sender import Sender, SendError
from trigger_operator.web.admission import add_admission_routes

KEY = b"k" * 32  # the operator's approval key
SIGNING = bytes(range(32))  # the Trigger author's Standard Webhooks key
LOOPBACK = SourcesSettings(allowed_networks="127.0.0.0/8")


class Receiver:
    """A real HTTP receiver on loopback that answers ``status`` and keeps what it got."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.got: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.port = free_port()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def notifications(url: str, signed: bool = True) -> dict[str, Any]:
    return {"sinks": [{"uri": url}], **({"signingSecretRef": {"name": "hook-key", "key": "key"}} if signed else {})}


def cluster_with_trigger(url: str, annotations: dict[str, str] | None = None, signed: bool = True
                         ) -> tuple[FakeCluster, Any]:
    cluster = FakeCluster(clock=at)
    cluster.secrets["team-a", "hook-key"] = {
        "data": {"key": base64.b64encode(b"whsec_" + base64.b64encode(SIGNING)).decode()}}
    body = cluster.apply_trigger("team-a", "t", {**interval_spec(60), "notifications": notifications(url, signed)},
                                 annotations=annotations)
    return cluster, body


def notifier_for(cluster: FakeCluster, metrics: Metrics | None = None, required: bool = True) -> Notifier:
    return Notifier(cluster, Sender(cluster, LOOPBACK), triggers=lambda: list(cluster.triggers.values()),
                    owns=lambda namespace, name: True, wrote=lambda key, body: None, clock=at, approval_key=KEY,
                    approval_required=required, metrics=metrics)


def with_pending(cluster: FakeCluster) -> None:
    """Runs the pure core's first pass on the Trigger, as the reconciler would: trigger.created pending."""
    body = cluster.triggers["team-a", "t"]
    plan = reconcile(trigger_view(body, at()), {}, {}, at())
    cluster.edit_trigger("team-a", "t", status=plan.patch)


def test_the_webhook_refuses_a_signing_secret_its_author_may_not_get() -> None:
    cluster = FakeCluster(clock=at)
    app = FastAPI()
    add_admission_routes(app, api=cluster, action_types=lambda: ["cluster"], clock=at, approval_key=KEY)
    client = TestClient(app)
    made = {"uid": "r", "operation": "CREATE", "namespace": "team-a",
            "kind": {"group": "trigger-operator.io", "version": "v1alpha1", "kind": "Trigger"},
            "resource": {"group": "trigger-operator.io", "version": "v1alpha1", "resource": "triggers"},
            "userInfo": {"username": "alice", "groups": ["devs"]},
            "object": {"metadata": {"name": "t"},
                       "spec": {**interval_spec(60), "notifications": notifications("https://a.example.com/")}}}
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": made}
    denied = client.post("/admission/mutate", json=review).json()["response"]
    assert denied["allowed"] is False and denied["status"]["code"] == 403
    assert denied["status"]["message"].startswith("spec.notifications.signingSecretRef: alice may not get Secret "
                                                  "hook-key")
    cluster.grants.add(("alice", "team-a", "get", "secrets/*hook-key"))
    allowed = client.post("/admission/mutate", json=review).json()["response"]
    patch = json.loads(base64.b64decode(allowed["patch"]))
    approved = signing_subject(Notifications.model_validate(notifications("https://a.example.com/")))
    assert approved is not None
    assert patch[0]["value"][ANNOTATION_NOTIFICATIONS_APPROVAL] == sign(
        KEY, "team-a", "t", approved, requester(Identity("alice", groups=("devs",))))


def test_an_unapproved_signing_secret_is_never_read_nor_its_events_sent_unsigned(receiver: Receiver) -> None:
    cluster, _ = cluster_with_trigger(receiver.url)
    with_pending(cluster)
    asyncio.run(notifier_for(cluster).round())
    assert receiver.got == [] and cluster.called("get_secret") == 0
    assert cluster.status("team-a", "t")["notifications"]["pending"]  # it waits, as for a sink that is down


def test_an_approved_key_signs_and_the_delivered_event_leaves_the_outbox(receiver: Receiver) -> None:
    approved = signing_subject(Notifications.model_validate(notifications(receiver.url)))
    assert approved is not None
    cluster, _ = cluster_with_trigger(receiver.url, {ANNOTATION_NOTIFICATIONS_APPROVAL: sign(
        KEY, "team-a", "t", approved, "0" * 32)})
    with_pending(cluster)
    asyncio.run(notifier_for(cluster).round())
    [(headers, body)] = receiver.got
    assert json.loads(body)["type"] == "trigger.created"
    assert headers["webhook-signature"] == signature(SIGNING, headers["webhook-id"],
                                                     int(headers["webhook-timestamp"]), body)
    assert "notifications" not in cluster.status("team-a", "t")  # acknowledged: the outbox is empty


def test_a_final_4xx_is_dead_lettered_with_an_event_and_a_metric() -> None:
    gone = Receiver(status=410)
    try:
        cluster, _ = cluster_with_trigger(gone.url, signed=False)
        with_pending(cluster)
        metrics = Metrics()
        asyncio.run(notifier_for(cluster, metrics).round())
        outbox = cluster.status("team-a", "t")["notifications"]
        assert outbox["pending"] == []
        [letter] = outbox["deadLetters"]
        assert (letter["type"], letter["reason"]) == ("trigger.created", "the sink answered HTTP 410")
        assert [n.reason for n in cluster.events] == ["NotificationDeadLettered"]
        assert metrics.registry.get_sample_value("trigger_operator_notification_dead_letters_total") == 1
        assert metrics.registry.get_sample_value("trigger_operator_notification_deliveries_total",
                                                 {"outcome": "rejected"}) == 1
    finally:
        gone.close()


@pytest.mark.parametrize(("service", "says"), [
    pytest.param(None, "Service team-a/receiver does not exist", id="missing"),
    pytest.param({"type": "ExternalName", "externalName": "db.other.svc.cluster.local"}, "an ExternalName Service",
                 id="external-name"),
    pytest.param({"type": "ClusterIP", "clusterIP": "None"}, "is headless", id="headless"),
    pytest.param({"type": "ClusterIP", "clusterIP": "127.0.0.1"}, "is loopback", id="loopback"),
    pytest.param({"type": "ClusterIP", "clusterIP": "169.254.169.254"}, "is link-local", id="metadata"),
    # Its endpoints are whatever someone writes into its EndpointSlices: any address at all.
    pytest.param({"type": "ClusterIP", "clusterIP": "10.96.0.10"}, "Service team-a/receiver has no selector",
                 id="selectorless"),
    pytest.param({"type": "ClusterIP", "clusterIP": "10.96.0.10", "selector": {}},
                 "Service team-a/receiver has no selector", id="empty-selector"),
])
def test_a_ref_sink_goes_only_to_its_services_own_cluster_ip(service: dict[str, Any] | None, says: str) -> None:
    cluster = FakeCluster(clock=at)
    if service is not None:
        cluster.objects["v1", "Service", "team-a", "receiver"] = {"spec": service}
    sender = Sender(cluster, SourcesSettings())  # the default rules: nothing opened
    sink = Sink.model_validate({"ref": {"name": "receiver", "port": 8080}})
    with pytest.raises(SendError) as refused:
        asyncio.run(sender.send("team-a", sink, {}, b"{}"))
    assert says in str(refused.value)


def test_a_ref_sink_to_a_service_selecting_pods_goes_to_its_cluster_ip() -> None:
    cluster = FakeCluster(clock=at)
    cluster.objects["v1", "Service", "team-a", "receiver"] = {
        "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10", "selector": {"app": "receiver"}}}
    sink = Sink.model_validate({"ref": {"name": "receiver", "port": 8080, "path": "/events"}})
    target, address = asyncio.run(Sender(cluster, SourcesSettings())._destination("team-a", sink))
    assert (str(target.url), str(address)) == ("http://receiver.team-a.svc:8080/events", "10.96.0.10")


# --- trigger.deleted, made durable by the notify finalizer ---------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = at()

    def __call__(self) -> dt.datetime:
        return self.now


def deleting_setup(url: str) -> tuple[FakeCluster, Clock, Metrics]:
    clock = Clock()
    cluster = FakeCluster(clock=clock)
    cluster.apply_trigger("team-a", "t", {**interval_spec(3600), "notifications": notifications(url, signed=False)})
    return cluster, clock, Metrics()


def notifier_with(cluster: FakeCluster, clock: Clock, metrics: Metrics) -> Notifier:
    """A fresh process's notifier (nothing in memory), with a clock the test moves."""
    return Notifier(cluster, Sender(cluster, LOOPBACK), triggers=lambda: list(cluster.triggers.values()),
                    owns=lambda namespace, name: True, wrote=lambda key, body: None, clock=clock, approval_key=KEY,
                    approval_required=True, metrics=metrics, delete_grace=dt.timedelta(minutes=10))


def reconcile_pass(cluster: FakeCluster, clock: Clock) -> None:
    """The reconciler's pass, as the controller writes it: its status patch."""
    body = cluster.triggers["team-a", "t"]
    plan = reconcile(trigger_view(body, clock()), {}, {}, clock())
    assert not plan.create  # a deleted Trigger starts nothing while the finalizer holds it
    asyncio.run(cluster.patch_trigger_status("team-a", "t", body["metadata"]["resourceVersion"], plan.patch))


def finalizers(cluster: FakeCluster) -> list[str]:
    return list(cluster.triggers["team-a", "t"]["metadata"].get("finalizers") or [])


def test_the_notify_finalizer_is_on_only_while_the_trigger_has_notifications(receiver: Receiver) -> None:
    cluster, clock, metrics = deleting_setup(receiver.url)
    cluster.triggers["team-a", "t"]["metadata"]["finalizers"] = ["example.com/other"]
    notifier = notifier_with(cluster, clock, metrics)
    asyncio.run(notifier.round())
    assert finalizers(cluster) == ["example.com/other", FINALIZER_NOTIFY]  # another controller's kept
    asyncio.run(notifier.round())
    assert cluster.called("patch_trigger_finalizers") == 1  # put on once
    cluster.edit_spec("team-a", "t", notifications=None)
    cluster.triggers["team-a", "t"]["spec"].pop("notifications")
    asyncio.run(notifier.round())
    assert finalizers(cluster) == ["example.com/other"]  # an edit that removes notifications takes it off


def test_a_trigger_deleted_while_its_sink_is_down_gets_trigger_deleted_after_a_restart(receiver: Receiver) -> None:
    """The finalizer holds the deleted Trigger; the reconciler records trigger.deleted in status; the
    operator restarts (a new notifier: nothing in memory); the sink comes up and gets it once, by id,
    and only then does the finalizer come off and the Trigger go."""
    cluster, clock, metrics = deleting_setup(receiver.url)
    reconcile_pass(cluster, clock)
    first = notifier_with(cluster, clock, metrics)
    asyncio.run(first.round())  # finalizer on, trigger.created delivered
    assert finalizers(cluster) == [FINALIZER_NOTIFY]
    receiver.status = 503  # the sink goes down
    cluster.delete_trigger("team-a", "t")
    assert ("team-a", "t") in cluster.triggers  # held
    clock.now = at(seconds=5)
    reconcile_pass(cluster, clock)
    pending = cluster.status("team-a", "t")["notifications"]["pending"]
    assert [e["type"] for e in pending] == ["trigger.deleted"]
    asyncio.run(first.round())
    assert ("team-a", "t") in cluster.triggers  # a 503: still owed, still held

    restarted = notifier_with(cluster, clock, metrics)  # the operator restarts
    receiver.status = 200  # the sink comes up
    clock.now = at(seconds=30)
    refused = len(receiver.got)
    last = copy.deepcopy(cluster.triggers["team-a", "t"])
    patch = cluster.patch_trigger_finalizers

    async def watched_patch(*args: Any) -> Any:
        """The watch reports the deletion before the finalizer patch's answer arrives (kopf runs
        the handler meanwhile): nothing of it may be held in memory and sent again."""
        written = await patch(*args)
        if ("team-a", "t") not in cluster.triggers:
            restarted.on_deleted(copy.deepcopy(written))
        return written

    cluster.patch_trigger_finalizers = watched_patch  # type: ignore[method-assign,assignment]
    asyncio.run(restarted.round())
    assert ("team-a", "t") not in cluster.triggers  # delivered: the finalizer came off, the Trigger went
    acknowledged = [json.loads(body) for _, body in receiver.got[refused:]]
    assert [e["type"] for e in acknowledged] == ["trigger.deleted"]
    assert acknowledged[0]["id"] == f"{last['metadata']['uid']}.deleted"
    restarted.on_deleted(last)  # the watch's DELETED: nothing is held in memory for it
    asyncio.run(restarted.round())
    assert len(receiver.got) == refused + 1  # once


def test_a_dead_sink_holds_a_deletion_only_for_the_grace_and_what_was_owed_is_dead_lettered() -> None:
    down = Receiver(status=503)
    try:
        cluster, clock, metrics = deleting_setup(down.url)
        notifier = notifier_with(cluster, clock, metrics)
        asyncio.run(notifier.round())
        assert finalizers(cluster) == [FINALIZER_NOTIFY]
        reconcile_pass(cluster, clock)
        cluster.delete_trigger("team-a", "t")
        reconcile_pass(cluster, clock)
        clock.now = at(minutes=9, seconds=59)
        asyncio.run(notifier.round())
        assert ("team-a", "t") in cluster.triggers
        clock.now = at(minutes=10)
        asyncio.run(notifier.round())
        assert ("team-a", "t") not in cluster.triggers
        letters = [n.message for n in cluster.events if n.reason == "NotificationDeadLettered"]
        assert len(letters) == 2 and all("the deletion grace (10 min) passed" in m for m in letters)
        assert {m.split()[0] for m in letters} == {"trigger.created", "trigger.deleted"}
        assert metrics.registry.get_sample_value("trigger_operator_notification_dead_letters_total") == 2
    finally:
        down.close()


def test_a_trigger_deleted_before_the_finalizer_was_on_still_gets_trigger_deleted_from_memory(
        receiver: Receiver) -> None:
    cluster, clock, metrics = deleting_setup(receiver.url)
    body = copy.deepcopy(cluster.triggers["team-a", "t"])
    cluster.delete_trigger("team-a", "t")  # no finalizer yet: gone at once
    notifier = notifier_with(cluster, clock, metrics)
    notifier.on_deleted(body)
    asyncio.run(notifier.round())
    assert [json.loads(b)["type"] for _, b in receiver.got] == ["trigger.deleted"]
