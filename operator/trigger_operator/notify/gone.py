"""The memory of deleted Triggers. A Trigger deleted before the notify finalizer was put on (within a
round of its creation, or while no operator ran) is the one case left to memory: its undelivered
events and ``trigger.deleted`` are held here with its name and uid (never its whole body: a tenant's
create/delete loop must not grow the operator), for at most `GONE_KEPT` Triggers; beyond that the
oldest one's events are dead-lettered (one Warning Event, the metric)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from trigger_operator.api import ANNOTATION_NOTIFICATIONS_APPROVAL
from trigger_operator.core.outbox import DeadLetter, Event, Outbox, Settled, deleted, expired, settle
from trigger_operator.kube.interface import Body
from trigger_operator.model.notify import Notifications
from trigger_operator.model.spec import SpecError, parse_spec
from trigger_operator.model.status import read_status

GONE_KEPT = 1_000  # deleted Triggers whose events memory holds; beyond, the oldest's are dead-lettered
GONE_EVICTED = f"more than {GONE_KEPT} deleted Triggers' notifications were held in memory"


@dataclass
class Held:
    """A deleted Trigger's undelivered events, held in memory (its status is gone). ``body`` is a
    stub: its namespace, name and uid and the approval annotation (all the signing key's check and
    an Event need), never the whole object."""

    body: Body
    notifications: Notifications
    events: list[Event] = field(default_factory=list)


def _stub(body: Mapping[str, Any]) -> Body:
    meta = body.get("metadata") or {}
    approval = (meta.get("annotations") or {}).get(ANNOTATION_NOTIFICATIONS_APPROVAL)
    return {"metadata": {"namespace": meta["namespace"], "name": meta["name"], "uid": meta["uid"],
                         "annotations": {ANNOTATION_NOTIFICATIONS_APPROVAL: approval} if approval else {}}}


class Gone(Mapping[str, Held]):
    """The deleted Triggers held, by uid, oldest first; the letters of those evicted past the bound
    wait here for the next tick (`take_evicted`), posted by the replica that delivers for them."""

    def __init__(self, clock: Callable[[], dt.datetime]) -> None:
        self.clock = clock
        self._held: dict[str, Held] = {}
        self._evicted: list[tuple[Body, list[DeadLetter]]] = []  # over GONE_KEPT: letters for the next tick

    def __getitem__(self, uid: str) -> Held:
        return self._held[uid]

    def __iter__(self) -> Iterator[str]:
        return iter(self._held)

    def __len__(self) -> int:
        return len(self._held)

    def pending(self) -> int:
        """Events held, each waiting for at least one sink."""
        return sum(len(h.events) for h in self._held.values())

    def on_deleted(self, body: Mapping[str, Any]) -> list[str]:
        """Holds a deleted Trigger's undelivered events and ``trigger.deleted``; the uids evicted
        past the bound (their deliveries under way are to be cancelled)."""
        meta = body.get("metadata") or {}
        try:
            notifications = parse_spec(dict(body.get("spec") or {})).notifications
        except SpecError:
            return []
        if notifications is None or not meta.get("uid") or meta["uid"] in self._held:
            return []
        status, _ = read_status(dict(body.get("status") or {}))
        events = list(Outbox.of(status).pending)
        gone = deleted(meta["namespace"], meta["name"], meta["uid"], self.clock())
        if notifications.wants(gone.type) and all(e.id != gone.id for e in events):
            events.append(Event(gone.id, gone.type, gone.time, gone.data, notifications.sink_keys()))
        if not events:
            return []
        self._held[meta["uid"]] = Held(_stub(body), notifications, events)
        evicted = []
        while len(self._held) > GONE_KEPT:
            uid = next(iter(self._held))
            oldest = self._held.pop(uid)
            evicted.append(uid)
            self._evicted.append((oldest.body, expired(Outbox(tuple(oldest.events)), oldest.notifications,
                                                       GONE_EVICTED, self.clock())))
        return evicted

    def take_evicted(self) -> list[tuple[Body, list[DeadLetter]]]:
        """The letters of the Triggers evicted since the last call (each stub with its letters)."""
        evicted, self._evicted = self._evicted, []
        return evicted

    def settle(self, uid: str, held: Held, done: Settled) -> list[DeadLetter] | None:
        """Removes what a try delivered or gave up (and the Trigger once nothing is left); the letters
        to post, or None if it was evicted meanwhile (its letters are taken already)."""
        left, letters = settle(Outbox(tuple(held.events)), done, held.notifications, self.clock())
        if self._held.get(uid) is not held:
            return None
        held.events = list(left.pending)
        if not held.events:
            del self._held[uid]
        return letters
