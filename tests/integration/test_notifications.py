"""Outbound notifications on the real control plane (issue 23 part 5, "Done when"): a sink receives
every one of the seed's eight webhook types for one Trigger's life, once each by id, each signed the
Standard Webhooks way (verified here with the key), while a second sink that is down (its port
closed) gets them all once it comes up."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.harness import SUCCEEDS, Kube, Operator, fails, free_port, wait_for
from tests.integration.triggers import trigger

TYPES = {"trigger.created", "trigger.updated", "trigger.deleted", "trigger.paused", "trigger.resumed",
         "trigger.fired", "trigger.execution.completed", "trigger.execution.failed"}


class Sink:
    """A real HTTP receiver on a loopback port: keeps every POST (headers and body) and answers 200."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.received: list[tuple[dict[str, str], bytes]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self) -> Sink:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with sink._lock:
                    sink.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(body) for _, body in self.received]

    def types(self) -> set[str]:
        return {e["type"] for e in self.events()}


def verified(key: bytes, headers: dict[str, str], body: bytes) -> bool:
    """Standard Webhooks' check, written here from the scheme, not imported from the operator."""
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(part == f"v1,{expected}" for part in headers.get("webhook-signature", "").split(" "))


def test_a_sink_gets_all_eight_events_of_a_triggers_life_signed_and_a_down_sink_gets_them_later(
        kube: Kube, namespace: str, operator: Operator) -> None:
    key = secrets.token_bytes(32)
    kube.core.create_namespaced_secret(namespace, {
        "metadata": {"name": "hook-key"},
        "stringData": {"key": "whsec_" + base64.b64encode(key).decode()}})
    live = Sink().start()
    down = Sink()  # its port is closed until the end
    try:
        notifications = {"sinks": [{"uri": live.url}, {"uri": down.url}],
                         "signingSecretRef": {"name": "hook-key", "key": "key"}}
        kube.apply(trigger("life", cron="0 0 1 1 *", pod=SUCCEEDS, notifications=notifications), namespace)
        wait_for("trigger.created", lambda: "trigger.created" in live.types(), timeout=30)

        kube.patch_spec(namespace, "life", {"description": "edited"})
        wait_for("trigger.updated", lambda: "trigger.updated" in live.types(), timeout=30)
        kube.patch_spec(namespace, "life", {"state": "paused"})
        wait_for("trigger.paused", lambda: "trigger.paused" in live.types(), timeout=30)
        kube.patch_spec(namespace, "life", {"state": "active"})
        wait_for("trigger.resumed", lambda: "trigger.resumed" in live.types(), timeout=30)

        kube.annotate(namespace, "life", "trigger-operator.io/run-now", "good")
        wait_for("trigger.execution.completed", lambda: "trigger.execution.completed" in live.types(), timeout=60)
        broken = trigger("life", pod=fails(3, "no model"))["spec"]["jobTemplate"]
        kube.patch_spec(namespace, "life", {"jobTemplate": broken})
        wait_for("the edit to be seen", lambda: kube.status(namespace, "life").get("observedGeneration") == 5)
        kube.annotate(namespace, "life", "trigger-operator.io/run-now", "bad")
        wait_for("trigger.execution.failed", lambda: "trigger.execution.failed" in live.types(), timeout=60)

        assert kube.status(namespace, "life")["notifications"]["pending"]  # all still owed to the down sink
        kube.custom.delete_namespaced_custom_object("trigger-operator.io", "v1alpha1", namespace, "triggers", "life")
        wait_for("trigger.deleted", lambda: "trigger.deleted" in live.types(), timeout=30)

        events = live.events()
        ids = [e["id"] for e in events]
        assert len(ids) == len(set(ids)), "an event was delivered twice to a sink that acknowledged it"
        assert {e["type"] for e in events} == TYPES
        assert sorted(e["type"] for e in events if e["type"] == "trigger.fired") == ["trigger.fired"] * 2
        source = f"/apis/trigger-operator.io/v1alpha1/namespaces/{namespace}/triggers/life"
        for headers, body in live.received:
            event = json.loads(body)
            assert headers["content-type"] == "application/cloudevents+json"
            assert (event["specversion"], event["source"], event["subject"]) == ("1.0", source, "life")
            assert headers["webhook-id"] == event["id"] and verified(key, headers, body), event["type"]
        uid_prefix = events[0]["id"].removesuffix(".created")
        assert f"{uid_prefix}.deleted" in ids and all(i.startswith(uid_prefix + ".") for i in ids)
        failed = next(e for e in events if e["type"] == "trigger.execution.failed")
        assert failed["data"]["outcome"] == "Failed" and "no model" in failed["data"]["error"]

        down.start()  # the sink comes back: everything owed to it arrives, signed, once per id
        wait_for("the down sink to get every event", lambda: set(i["id"] for i in down.events()) == set(ids),
                 timeout=180)
        again = [e["id"] for e in down.events()]
        assert len(again) == len(set(again)) and all(verified(key, h, b) for h, b in down.received)
        assert not [line for line in operator.errors()], operator.errors()
    finally:
        live.close()
        down.close()


def test_a_trigger_deleted_while_its_sink_is_down_gets_trigger_deleted_after_a_restart(
        kube: Kube, namespace: str, operator: Operator) -> None:
    """The notify finalizer makes trigger.deleted durable: deleted while its only sink is down, the
    Trigger is held (with a deletionTimestamp) and the event is in its status; the operator restarts;
    the sink comes up and receives trigger.deleted once, by id; then the Trigger goes."""
    down = Sink()  # its port is closed until after the restart
    try:
        kube.apply(trigger("gone", cron="0 0 1 1 *", pod=SUCCEEDS,
                           notifications={"sinks": [{"uri": down.url}]}), namespace)
        wait_for("the notify finalizer", lambda: "trigger-operator.io/notify" in (
            kube.trigger(namespace, "gone")["metadata"].get("finalizers") or []), timeout=30)
        uid = kube.trigger(namespace, "gone")["metadata"]["uid"]
        kube.custom.delete_namespaced_custom_object("trigger-operator.io", "v1alpha1", namespace, "triggers", "gone")

        def owed() -> list[str]:
            return [e["id"] for e in (kube.status(namespace, "gone").get("notifications") or {}).get("pending") or []]

        wait_for("trigger.deleted recorded in status", lambda: f"{uid}.deleted" in owed(), timeout=30)
        operator.stop()
        assert kube.trigger(namespace, "gone")["metadata"]["deletionTimestamp"]  # held while no operator runs
        operator.start()
        down.start()
        wait_for("trigger.deleted at the sink", lambda: f"{uid}.deleted" in [e["id"] for e in down.events()],
                 timeout=120)
        wait_for("the Trigger to go", lambda: not any(
            t["metadata"]["name"] == "gone" for t in kube.custom.list_namespaced_custom_object(
                "trigger-operator.io", "v1alpha1", namespace, "triggers")["items"]), timeout=30)
        ids = [e["id"] for e in down.events()]
        assert ids.count(f"{uid}.deleted") == 1 and ids.count(f"{uid}.created") == 1, "\n".join(
            f"{h.get('webhook-id')} {h.get('webhook-timestamp')}" for h, _ in down.received)
        assert ids[-1] == f"{uid}.deleted"  # after everything owed before it
        assert not [line for line in operator.errors()], operator.errors()
    finally:
        down.close()
