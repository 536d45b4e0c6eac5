"""No tenant's sink holds another's notifications or a deletion, and deleted Triggers cost bounded
memory (review of issue 23, F1 and F4): a total deadline per request, each Trigger's deliveries in
a task of their own under a global and a per-namespace cap, the finalizer's verdict taken every tick
whatever the sinks do; a deleted Trigger is held by its events and name only, for at most
GONE_KEPT Triggers, and a sink the egress rules refuse gives its events up at once. Real sockets on
loopback; the notifier's own `run` loop."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.unit.conftest import at, interval_spec
from tests.unit.fake_cluster import FakeCluster
from tests.unit.test_notify_shell import (
    LOOPBACK,
    Clock,
    Receiver,
    deleting_setup,
    notifier_with,
    reconcile_pass,
)
from trigger_operator.api import ANNOTATION_NOTIFICATIONS_APPROVAL, FINALIZER_NOTIFY
from trigger_operator.core.reconcile import reconcile
from trigger_operator.metrics import Metrics
from trigger_operator.model.notify import Sink
from trigger_operator.model.trigger import trigger_view
from trigger_operator.notify.flights import SENDS_PER_NAMESPACE
from trigger_operator.notify.gone import GONE_KEPT
from trigger_operator.notify.notifier import Notifier
from trigger_operator.notify.sender import Sender, SendError


class Trickler:
    """A sink that reads each request and then sends its status line one byte every 0.3 s: every
    read gets a byte in time, so only a total deadline ends the request."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.connections = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.1)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.getsockname()[1]}/"

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            self.connections += 1
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()
        self._server.close()

    def _trickle(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            for byte in b"HTTP/1.1 200 OK" + b"x" * 10_000:
                if self.stop.is_set():
                    return
                try:
                    conn.send(bytes([byte]))
                except OSError:
                    return
                time.sleep(0.3)


@pytest.fixture
def trickler() -> Iterator[Trickler]:
    t = Trickler()
    yield t
    t.stop.set()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def pending_trigger(cluster: FakeCluster, namespace: str, name: str, url: str) -> None:
    """A Trigger whose first pass recorded trigger.created, as the reconciler writes it."""
    cluster.apply_trigger(namespace, name, {**interval_spec(60), "notifications": {"sinks": [{"uri": url}]}})
    plan = reconcile(trigger_view(cluster.triggers[namespace, name], at()), {}, {}, at())
    cluster.edit_trigger(namespace, name, status=plan.patch)


async def running(notifier: Notifier, until: Any, within: float) -> float:
    """Runs the notifier's own loop until ``until()`` holds; the seconds it took (fails past ``within``)."""
    task = asyncio.create_task(notifier.run())
    began = time.monotonic()
    try:
        while not until():
            assert time.monotonic() - began < within, f"not within {within} s"
            await asyncio.sleep(0.05)
        return time.monotonic() - began
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_a_trickling_sink_is_cut_at_the_total_deadline_and_rests(trickler: Trickler) -> None:
    cluster = FakeCluster(clock=at)
    sender = Sender(cluster, LOOPBACK, timeout_seconds=1.0)
    sink = Sink.model_validate({"uri": trickler.url})
    began = time.monotonic()
    with pytest.raises(SendError, match="no answer within 1 s"):
        asyncio.run(asyncio.wait_for(sender.send("team-a", sink, {}, b"{}"), 5))  # per read, it never ends
    assert time.monotonic() - began < 2.5

    pending_trigger(cluster, "team-a", "t", trickler.url)
    notifier = Notifier(cluster, sender, triggers=lambda: list(cluster.triggers.values()), owns=lambda n, m: True,
                        wrote=lambda k, b: None, clock=at, approval_key=None, approval_required=False)
    asyncio.run(asyncio.wait_for(notifier.round(), 5))
    asyncio.run(asyncio.wait_for(notifier.round(), 5))  # at the same instant: the sink rests, not tried
    assert trickler.connections == 2  # the bare send's and the first round's
    assert cluster.status("team-a", "t")["notifications"]["pending"]  # still owed, retried after the rest


def test_one_tenants_slow_sinks_do_not_hold_another_tenants_notifications(trickler: Trickler,
                                                                          receiver: Receiver) -> None:
    """Twenty Triggers of team-a whose sink trickles (each request holds for the production deadline,
    10 s), listed before team-b's: team-b's event is delivered at once, and team-a never has more
    than its share of the requests in flight."""
    cluster = FakeCluster(clock=at)
    for n in range(20):
        pending_trigger(cluster, "team-a", f"t{n}", trickler.url)
    pending_trigger(cluster, "team-b", "t", receiver.url)
    notifier = Notifier(cluster, Sender(cluster, LOOPBACK), triggers=lambda: list(cluster.triggers.values()),
                        owns=lambda n, m: True, wrote=lambda k, b: None, clock=at, approval_key=None,
                        approval_required=False)
    took = asyncio.run(running(notifier, lambda: bool(receiver.got), within=4))
    assert took < 4 and [json.loads(b)["type"] for _, b in receiver.got] == ["trigger.created"]
    assert trickler.connections == SENDS_PER_NAMESPACE


def test_the_deletion_grace_is_kept_while_the_triggers_own_sink_trickles(trickler: Trickler) -> None:
    """A deleted Trigger's delivery hangs on its sink; the grace passes meanwhile: the next tick takes
    the finalizer off (the hanging delivery is cancelled) and dead-letters what was owed."""
    cluster, clock, metrics = deleting_setup(trickler.url)
    reconcile_pass(cluster, clock)  # trigger.created pending
    cluster.triggers["team-a", "t"]["metadata"]["finalizers"] = [FINALIZER_NOTIFY]
    cluster.delete_trigger("team-a", "t")
    reconcile_pass(cluster, clock)  # trigger.deleted pending
    clock.now = at(minutes=9, seconds=59)
    notifier = notifier_with(cluster, clock, metrics)

    async def main() -> float:
        began = time.monotonic()
        task = asyncio.create_task(notifier.run())
        while not trickler.connections:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        assert ("team-a", "t") in cluster.triggers  # within the grace: held, its delivery hanging
        clock.now = at(minutes=10)
        while ("team-a", "t") in cluster.triggers:
            assert time.monotonic() - began < 5, "the finalizer did not come off while the sink trickled"
            await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return time.monotonic() - began

    assert asyncio.run(main()) < 5  # well before the request's own deadline (10 s) would have ended it
    letters = [n.message for n in cluster.events if n.reason == "NotificationDeadLettered"]
    assert len(letters) == 2 and all("the deletion grace (10 min) passed" in m for m in letters)


# --- deleted Triggers held in memory ----------------------------------------------------------------


def deleted_body(n: int, url: str, pad: str = "") -> dict[str, Any]:
    return {"metadata": {"namespace": "team-a", "name": f"t{n}", "uid": f"uid-{n}",
                         "annotations": {"pad": pad, ANNOTATION_NOTIFICATIONS_APPROVAL: "approval"}},
            "spec": {**interval_spec(60), "notifications": {"sinks": [{"uri": url}]}}}


def gone_notifier(cluster: FakeCluster, metrics: Metrics, owns: Any = lambda n, m: True) -> Notifier:
    return Notifier(cluster, Sender(cluster, LOOPBACK), triggers=lambda: [], owns=owns, wrote=lambda k, b: None,
                    clock=Clock(), approval_key=None, approval_required=False, metrics=metrics)


def test_a_deleted_trigger_is_held_by_its_events_and_name_not_its_body(receiver: Receiver) -> None:
    cluster = FakeCluster(clock=at)
    notifier = gone_notifier(cluster, Metrics(), owns=lambda n, m: False)
    notifier.on_deleted(deleted_body(0, receiver.url, pad="x" * 100_000))
    [held] = notifier._gone.values()
    assert held.body == {"metadata": {"namespace": "team-a", "name": "t0", "uid": "uid-0",
                                      "annotations": {ANNOTATION_NOTIFICATIONS_APPROVAL: "approval"}}}
    assert [e.type.value for e in held.events] == ["trigger.deleted"]


def test_past_the_bound_the_oldest_deleted_triggers_events_are_dead_lettered_in_one_event() -> None:
    cluster, metrics = FakeCluster(clock=at), Metrics()
    notifier = gone_notifier(cluster, metrics, owns=lambda n, name: name == "t0")  # no sends for the others
    for n in range(GONE_KEPT + 1):
        notifier.on_deleted(deleted_body(n, "http://127.0.0.1:9/"))
    assert len(notifier._gone) == GONE_KEPT and "uid-0" not in notifier._gone
    asyncio.run(notifier.round())
    [notice] = [n for n in cluster.events if n.reason == "NotificationDeadLettered"]
    assert notice.message == ("1 events dropped (1 dead letters, one per event and sink): more than 1000 deleted "
                              "Triggers' notifications were held in memory")
    assert metrics.registry.get_sample_value("trigger_operator_notification_dead_letters_total") == 1


def test_a_deleted_triggers_events_for_a_sink_the_egress_rules_refuse_are_dead_lettered_at_once() -> None:
    cluster, metrics = FakeCluster(clock=at), Metrics()
    notifier = gone_notifier(cluster, metrics)
    notifier.on_deleted(deleted_body(0, "http://10.255.255.1/"))  # private: LOOPBACK opens 127/8 only
    asyncio.run(notifier.round())
    assert notifier._gone == {}
    [notice] = [n for n in cluster.events if n.reason == "NotificationDeadLettered"]
    assert notice.message.startswith("trigger.deleted uid-0.deleted to http://10.255.255.1/ was given up: the "
                                     "egress rules refuse the sink of a deleted Trigger: ")
    assert metrics.registry.get_sample_value("trigger_operator_notification_dead_letters_total") == 1
