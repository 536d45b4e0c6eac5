"""``trigger.deleted`` is durable by a finalizer, ``trigger-operator.io/notify`` (api.FINALIZER_NOTIFY):
the notifier puts it on every owned Trigger that has ``spec.notifications`` and takes it off one that
has none any more. A deleted Trigger then stays (with a deletionTimestamp) while the reconciler
records ``trigger.deleted`` in its outbox and counts the runs still going; the finalizer comes off
once that event left the outbox at every sink (core/outbox.finalizer_verdict), or once the deletion
grace passed (what is still owed is then dead-lettered: Warning Events and the metric), so a restart
or an outage meanwhile loses nothing."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from trigger_operator.api import FINALIZER_NOTIFY
from trigger_operator.config import NotificationSettings
from trigger_operator.core.outbox import Outbox, expired, finalizer_verdict
from trigger_operator.kube.interface import Body, ClusterApi, Conflict, NotFound, Rejected
from trigger_operator.model.notify import Notifications
from trigger_operator.notify.acks import Acks, Key

log = logging.getLogger("trigger_operator.notify")
RELEASED_KEPT = 10_000  # uids whose notify finalizer we took off: their DELETED needs nothing from memory


def holds(body: Body) -> bool:
    """Whether the Trigger carries the notify finalizer."""
    return FINALIZER_NOTIFY in (body["metadata"].get("finalizers") or ())


class Finalizer:
    """Puts the notify finalizer on and takes it off; ``forget(uid)``: a Trigger released from it is
    gone for good (its sinks' backoff is dropped); ``wrote``: the store keeps the answer of our write."""

    def __init__(self, api: ClusterApi, acks: Acks, *, forget: Callable[[str], None],
                 wrote: Callable[[Key, Body], Any], clock: Callable[[], dt.datetime],
                 delete_grace: dt.timedelta = dt.timedelta(seconds=NotificationSettings.delete_grace_seconds)) -> None:
        self.api = api
        self.acks = acks
        self.forget = forget
        self.wrote = wrote
        self.clock = clock
        self.delete_grace = delete_grace  # config.NotificationSettings.delete_grace_seconds
        self._released: dict[str, None] = {}  # uids, oldest first

    def released(self, uid: str | None) -> bool:
        """Whether we took this deleted Trigger's finalizer off: what its DELETED reports was delivered
        here (or given up), not to be held in memory and sent again."""
        return uid in self._released

    def verdict(self, notifications: Notifications | None, uid: str, deleting: dt.datetime | None,
                before: Outbox, after: Outbox) -> str | None:
        """Why the finalizer comes off now, or None to keep it (core/outbox.finalizer_verdict)."""
        return finalizer_verdict(notifications, uid, deleting, before, after, self.clock(), self.delete_grace)

    async def hold(self, body: Body) -> Body | None:
        """Puts the notify finalizer on (guarded by resourceVersion: a conflict waits for the next
        round, with the copy the watch brings). The Trigger as written, or None."""
        meta = body["metadata"]
        try:
            written = await self.api.patch_trigger_finalizers(
                meta["namespace"], meta["name"], meta["resourceVersion"],
                [*(meta.get("finalizers") or ()), FINALIZER_NOTIFY])
        except (Conflict, NotFound, Rejected):  # Rejected: its deletion began meanwhile
            return None
        self.wrote((meta["namespace"], meta["name"]), written)
        return written

    async def release(self, body: Body, why: str, owed: Outbox, notifications: Notifications | None) -> None:
        """Takes the notify finalizer off; what ``owed`` still holds is dead-lettered (a deleted
        Trigger's grace passed). A conflict leaves it for the next round, with the fresh copy."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        kept = [f for f in meta.get("finalizers") or () if f != FINALIZER_NOTIFY]
        deleting = bool(meta.get("deletionTimestamp"))
        if deleting:
            # Before the call: the watch may report the deletion (on_deleted) while we await its answer,
            # and what it reports was delivered here, not to be held in memory and sent again.
            self._released[meta["uid"]] = None
            while len(self._released) > RELEASED_KEPT:
                del self._released[next(iter(self._released))]
        try:
            written = await self.api.patch_trigger_finalizers(*key, meta["resourceVersion"], kept)
        except Conflict:
            self._released.pop(meta["uid"], None)
            return
        except NotFound:
            written = None
        if deleting:
            self.forget(meta["uid"])
            await self.acks.bury(body, expired(owed, notifications, f"the Trigger was deleted: {why}", self.clock()))
            log.info("Trigger %s/%s: notifications finalizer removed (%s)", *key, why)
        elif written is not None:
            self.wrote(key, written)
