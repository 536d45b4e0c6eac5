"""The notifier: delivers each owned Trigger's ``status.notifications.pending`` (core/outbox.py) in
the background, never on a run's path, and removes what was acknowledged in one guarded status
write per Trigger and round. docs/notifications.md. It composes parts of one job each:

- notify/deliveries.py: one try of a Trigger's events at its sinks (backoff, the signing key);
- notify/flights.py: each Trigger's deliveries as a task of their own, the request slots;
- notify/acks.py: the acknowledgement write, and dead letters posted as Events;
- notify/finalizer.py: ``trigger-operator.io/notify`` put on and taken off, the deletion grace;
- notify/gone.py: the memory of Triggers deleted before the finalizer was on them (bounded).

No tenant's sink holds another's notifications, nor a deletion: every request has a total deadline
(notify/sender.py); each Trigger's deliveries run as a flight, its sinks side by side. `run` ticks
every second whatever the flights do: the finalizer's verdict (the deletion grace, notifications
removed) is taken at each tick, and a Trigger whose finalizer comes off that way has its flight
cancelled first. An event held in memory for a sink the egress rules refuse is dead-lettered at
once, since no retry can deliver it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from trigger_operator.config import NotificationSettings
from trigger_operator.core.outbox import Outbox, settle
from trigger_operator.kube.interface import Body, ClusterApi
from trigger_operator.metrics import Metrics
from trigger_operator.model.notify import Notifications
from trigger_operator.model.spec import SpecError, parse_spec
from trigger_operator.model.status import parse_time, read_status
from trigger_operator.notify.acks import Acks, Key
from trigger_operator.notify.deliveries import Deliveries
from trigger_operator.notify.finalizer import Finalizer, holds
from trigger_operator.notify.flights import Flights
from trigger_operator.notify.gone import GONE_EVICTED, Gone, Held
from trigger_operator.notify.sender import Sender

log = logging.getLogger("trigger_operator.notify")
TICK_SECONDS = 1.0  # how often pending outboxes are looked at (a sink's backoff decides when it is tried)


def concerns(body: Body) -> bool:
    """Whether a Trigger gives the notifier anything to do: notifications in its spec, some pending
    in its status, or the notify finalizer on it (to take off)."""
    return bool(holds(body) or (body.get("spec") or {}).get("notifications")
                or ((body.get("status") or {}).get("notifications") or {}).get("pending"))


class Concerned:
    """The Triggers that `concerns` the notifier, kept from the store's changes (``changed`` is a
    store follower): its tick reads these, not every Trigger. Scanning all 5,000 of an idle
    operator every second took 1-2% of a core (issue 21)."""

    def __init__(self) -> None:
        self._bodies: dict[Key, Body] = {}

    def changed(self, key: Key, body: Body | None) -> None:
        if body is not None and concerns(body):
            self._bodies[key] = body
        else:
            self._bodies.pop(key, None)

    def __call__(self) -> list[Body]:
        return list(self._bodies.values())


class Notifier:
    """``triggers()``: the Triggers as the store holds them (all, or at least every one that
    `concerns` it: `Concerned`); ``owns(namespace, name)``: whether this
    replica delivers for a Trigger now (the scheduler's owner rule: one replica sends); ``wrote``:
    the store keeps the answer of our status write."""

    def __init__(self, api: ClusterApi, sender: Sender, *, triggers: Callable[[], Iterable[Body]],
                 owns: Callable[[str, str], bool], wrote: Callable[[Key, Body], Any],
                 clock: Callable[[], dt.datetime], approval_key: bytes | None, approval_required: bool,
                 metrics: Metrics | None = None,
                 delete_grace: dt.timedelta = dt.timedelta(seconds=NotificationSettings.delete_grace_seconds)) -> None:
        self.sender = sender
        self.triggers = triggers
        self.owns = owns
        self.clock = clock
        self.metrics = metrics
        self.deliveries = Deliveries(api, sender, clock=clock, approval_key=approval_key,
                                     approval_required=approval_required, metrics=metrics)
        self.acks = Acks(api, wrote=wrote, clock=clock, metrics=metrics)
        self.finalizer = Finalizer(api, self.acks, forget=self.deliveries.forget, wrote=wrote, clock=clock,
                                   delete_grace=delete_grace)
        self._gone = Gone(clock)
        self._flights = Flights()

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self.tick()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("a round of notifications failed; trying again")
                await asyncio.sleep(TICK_SECONDS)
        finally:
            self._flights.cancel()

    async def round(self) -> None:
        """A tick, then every delivery under way to its end (tests; `run` never waits for them)."""
        await self.tick()
        await self._flights.wait()

    def pending(self) -> int:
        """Events waiting for at least one sink (a gauge read at scrape time)."""
        stored = sum(len(((b.get("status") or {}).get("notifications") or {}).get("pending") or ())
                     for b in self.triggers())
        return stored + self._gone.pending()

    def on_deleted(self, body: Mapping[str, Any]) -> None:
        """The watch saw the Trigger deleted: hold its undelivered events and ``trigger.deleted``."""
        if self.finalizer.released((body.get("metadata") or {}).get("uid")):
            return  # our finalizer held it until its trigger.deleted was delivered (or the grace passed)
        for uid in self._gone.on_deleted(body):
            self._flights.land(uid)

    async def tick(self) -> None:
        """Every owned Trigger's finalizer put on or taken off, and its deliveries started unless
        some are under way; never waits for a sink."""
        if self.metrics is not None:
            self.metrics.notifications_pending(self.pending())
        for stub, letters in self._gone.take_evicted():  # by the replica that delivers for it, as its events would be
            if self.owns(stub["metadata"]["namespace"], stub["metadata"]["name"]):
                await self.acks.bury(stub, letters, aggregate=GONE_EVICTED)
        for body in list(self.triggers()):
            meta = body["metadata"]
            held = holds(body)
            if not (held or (body.get("spec") or {}).get("notifications")):
                continue  # most Triggers: nothing to parse
            if meta.get("uid") in self._gone or not self.owns(meta["namespace"], meta["name"]):
                continue
            await self._one(body, held)
        for uid, gone in list(self._gone.items()):
            meta = gone.body["metadata"]
            if self.owns(meta["namespace"], meta["name"]):
                self._flights.fly(uid, functools.partial(self._deliver_gone, uid, gone))

    async def _deliver_gone(self, uid: str, gone: Held) -> None:
        done = await self.deliveries.attempt(gone.body, gone.notifications, gone.events, refused_is_final=True)
        letters = self._gone.settle(uid, gone, done)
        if letters is None:
            return  # evicted meanwhile: its letters are written already
        if uid not in self._gone:
            self.deliveries.forget(uid)
        await self.acks.bury(gone.body, letters)

    async def _one(self, body: Body, held: bool) -> None:
        """One Trigger's tick: its finalizer put on or taken off, its pending events handed to a flight."""
        meta = body["metadata"]
        try:
            notifications = parse_spec(dict(body.get("spec") or {})).notifications
        except SpecError:
            # Unreadable (the webhook refuses such a spec; one written around it): nothing can be
            # sent, so a deleted one must not wait for anything; a live one keeps what it has.
            if held and meta.get("deletionTimestamp"):
                self._flights.land(meta["uid"])
                await self.finalizer.release(body, "spec.notifications cannot be read", Outbox(), None)
            return
        deleting = parse_time(meta.get("deletionTimestamp"))
        if notifications is not None and deleting is None and not held:
            body = await self.finalizer.hold(body) or body
            held = holds(body)
        status, error = read_status(dict(body.get("status") or {}))
        outbox = Outbox.of(status) if error is None else Outbox()
        if held:
            verdict = self.finalizer.verdict(notifications, meta["uid"], deleting, outbox, outbox)
            if verdict is not None:
                # What is owed when the grace ends is given up; without notifications nothing is wanted.
                owed = outbox if deleting is not None and notifications is not None else Outbox()
                self._flights.land(meta["uid"])
                await self.finalizer.release(body, verdict, owed, notifications)
                return
        if notifications is None or not outbox.pending:
            return  # the reconciler empties the outbox of a Trigger without notifications
        self._flights.fly(meta["uid"], functools.partial(self._deliver, body, held, notifications, outbox, deleting))

    async def _deliver(self, body: Body, held: bool, notifications: Notifications, outbox: Outbox,
                       deleting: dt.datetime | None) -> None:
        """One try of a Trigger's pending events; what was acknowledged or given up is written, or,
        for a deleted Trigger whose trigger.deleted went, the finalizer comes off."""
        done = await self.deliveries.attempt(body, notifications, outbox.pending)
        if not (done.delivered or done.dead):
            return
        if held and deleting is not None:
            after, letters = settle(outbox, done, notifications, self.clock())
            verdict = self.finalizer.verdict(notifications, body["metadata"]["uid"], deleting, outbox, after)
            if verdict is not None:  # the last write is the finalizer's: the status goes with the Trigger
                await self.acks.bury(body, letters)
                await self.finalizer.release(body, verdict, after, notifications)
                return
        await self.acks.write(body, done, notifications)
