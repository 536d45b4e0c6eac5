"""What a try came to, recorded: the acknowledged and given-up events removed from
``status.notifications.pending`` in one guarded status write per Trigger and round (dead letters:
a Warning Event ``NotificationDeadLettered`` each, and the metric); for a Trigger that is going, whose
status goes with it, the dead letters as Events and the metric only."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from trigger_operator.core.outbox import DeadLetter, Outbox, Settled, dead_letter_notice, dropped_notice, settle
from trigger_operator.kube.interface import Body, ClusterApi, Conflict, NotFound
from trigger_operator.metrics import Metrics
from trigger_operator.model.notify import Notifications
from trigger_operator.model.status import read_status

log = logging.getLogger("trigger_operator.notify")
WRITE_ATTEMPTS = 3  # a guarded write that conflicts is re-applied to the fresh copy this many times
Key = tuple[str, str]


class Acks:
    """``wrote``: the store keeps the answer of our status write."""

    def __init__(self, api: ClusterApi, *, wrote: Callable[[Key, Body], Any], clock: Callable[[], dt.datetime],
                 metrics: Metrics | None) -> None:
        self.api = api
        self.wrote = wrote
        self.clock = clock
        self.metrics = metrics

    async def write(self, body: Body, done: Settled, notifications: Notifications) -> None:
        """Removes what was delivered or given up, guarded by resourceVersion; on a conflict the
        same acknowledgements are applied to the fresh copy (they are by event id)."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        for _ in range(WRITE_ATTEMPTS):
            status, _error = read_status(dict(body.get("status") or {}))
            now = self.clock()
            updated, letters = settle(Outbox.of(status), done, notifications, now)
            try:
                written = await self.api.patch_trigger_status(*key, body["metadata"]["resourceVersion"],
                                                              {"notifications": updated.to_status()})
            except Conflict:
                try:
                    body = await self.api.get_trigger(*key)
                except NotFound:
                    return
                continue
            except NotFound:
                return
            self.wrote(key, written)
            if self.metrics is not None:
                self.metrics.dead_letters(len(letters))
            for letter in letters:
                await self.api.post_event(written, dead_letter_notice(letter), now)
            return
        log.info("notifications of Trigger %s/%s: the acknowledgement conflicted %d times; the events are "
                 "sent again (same ids) next round", *key, WRITE_ATTEMPTS)

    async def bury(self, body: Body, letters: list[DeadLetter], aggregate: str | None = None) -> None:
        """Dead letters that no status will hold (the Trigger is going): Events and the metric; with
        ``aggregate``, one Event for them all, with that reason."""
        if self.metrics is not None:
            self.metrics.dead_letters(len(letters))
        if aggregate is not None and letters:
            await self.api.post_event(body, dropped_notice(letters, aggregate), self.clock())
            return
        for letter in letters:
            await self.api.post_event(body, dead_letter_notice(letter), self.clock())
