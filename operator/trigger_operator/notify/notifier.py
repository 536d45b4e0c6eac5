"""The notifier: delivers each owned Trigger's ``status.notifications.pending`` (core/outbox.py) in
the background, never on a run's path, and removes what was acknowledged in one guarded status
write per Trigger and round. Per sink it backs off exponentially (1 s to 10 min) after a failure;
it gives an event up for a sink (dead letter: status, a Warning Event ``NotificationDeadLettered``,
a metric) on a 4xx other than 408/429 or after 24 hours. docs/notifications.md.

The signing key is read from the Trigger's Secret with the operator's rights on the author's behalf,
so only when the webhook's approval of ``spec.notifications.signingSecretRef`` verifies
(admission/approval.py), before every read, as for a condition source's tokenSecret. An event whose
key cannot be used (not approved, no such Secret or key, not a ``whsec_`` key) is not sent unsigned:
it waits, as for a sink that is down, and is dead-lettered after 24 hours.

``trigger.deleted`` is durable by a finalizer, ``trigger-operator.io/notify`` (api.FINALIZER_NOTIFY):
the notifier puts it on every owned Trigger that has ``spec.notifications`` and takes it off one that
has none any more. A deleted Trigger then stays (with a deletionTimestamp) while the reconciler
records ``trigger.deleted`` in its outbox and counts the runs still going; the finalizer comes off
once that event left the outbox at every sink (core/outbox.finalizer_verdict), or once the deletion
grace passed (what is still owed is then dead-lettered: Warning Events and the metric), so a restart
or an outage meanwhile loses nothing. A Trigger deleted before the finalizer was put on (within a
round of its creation, or while no operator ran) is the one case left to memory: its last copy from
the watch, its undelivered events and ``trigger.deleted`` are held here, as before.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from trigger_operator.admission.approval import notifications_refusal
from trigger_operator.api import FINALIZER_NOTIFY
from trigger_operator.config import NotificationSettings
from trigger_operator.core.outbox import (
    GIVE_UP_AFTER,
    DeadLetter,
    Event,
    Outbox,
    Settled,
    SigningKeyError,
    acknowledged,
    backoff,
    cloudevent,
    dead_letter_notice,
    deleted,
    expired,
    finalizer_verdict,
    given_up,
    headers,
    settle,
    signing_key,
)
from trigger_operator.kube.interface import Body, ClusterApi, Conflict, NotFound, Rejected
from trigger_operator.metrics import Metrics
from trigger_operator.model.notify import Notifications
from trigger_operator.model.spec import SpecError, parse_spec
from trigger_operator.model.status import parse_time, read_status
from trigger_operator.notify.sender import Sender, SendError

log = logging.getLogger("trigger_operator.notify")
TICK_SECONDS = 1.0  # how often pending outboxes are looked at (a sink's backoff decides when it is tried)
WRITE_ATTEMPTS = 3  # a guarded write that conflicts is re-applied to the fresh copy this many times
RELEASED_KEPT = 10_000  # uids whose notify finalizer we took off: their DELETED needs nothing from memory
Key = tuple[str, str]


@dataclass
class _Rest:
    failures: int = 0
    until: dt.datetime | None = None


@dataclass
class _Gone:
    """A deleted Trigger's undelivered events, held in memory (its status is gone)."""

    body: Body
    notifications: Notifications
    events: list[Event] = field(default_factory=list)


class Notifier:
    """``triggers()``: the Triggers as the store holds them; ``owns(namespace, name)``: whether this
    replica delivers for a Trigger now (the scheduler's owner rule: one replica sends); ``wrote``:
    the store keeps the answer of our status write."""

    def __init__(self, api: ClusterApi, sender: Sender, *, triggers: Callable[[], Iterable[Body]],
                 owns: Callable[[str, str], bool], wrote: Callable[[Key, Body], Any],
                 clock: Callable[[], dt.datetime], approval_key: bytes | None, approval_required: bool,
                 metrics: Metrics | None = None,
                 delete_grace: dt.timedelta = dt.timedelta(seconds=NotificationSettings.delete_grace_seconds)) -> None:
        self.api = api
        self.sender = sender
        self.triggers = triggers
        self.owns = owns
        self.wrote = wrote
        self.clock = clock
        self.approval_key = approval_key
        self.approval_required = approval_required
        self.metrics = metrics
        self.delete_grace = delete_grace  # config.NotificationSettings.delete_grace_seconds
        self._released: dict[str, None] = {}  # uids, oldest first
        self._rest: dict[tuple[str, str], _Rest] = {}  # (Trigger uid, sink key)
        self._gone: dict[str, _Gone] = {}  # by uid

    async def run(self) -> None:
        while True:
            try:
                await self.round()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("a round of notifications failed; trying again")
            await asyncio.sleep(TICK_SECONDS)

    def pending(self) -> int:
        """Events waiting for at least one sink (a gauge read at scrape time)."""
        stored = sum(len(((b.get("status") or {}).get("notifications") or {}).get("pending") or ())
                     for b in self.triggers())
        return stored + sum(len(g.events) for g in self._gone.values())

    def on_deleted(self, body: Mapping[str, Any]) -> None:
        """The watch saw the Trigger deleted: hold its undelivered events and ``trigger.deleted``."""
        meta = body.get("metadata") or {}
        if meta.get("uid") in self._released:
            return  # our finalizer held it until its trigger.deleted was delivered (or the grace passed)
        try:
            notifications = parse_spec(dict(body.get("spec") or {})).notifications
        except SpecError:
            return
        if notifications is None or not meta.get("uid") or meta["uid"] in self._gone:
            return
        status, _ = read_status(dict(body.get("status") or {}))
        events = list(Outbox.of(status).pending)
        gone = deleted(meta["namespace"], meta["name"], meta["uid"], self.clock())
        if notifications.wants(gone.type) and all(e.id != gone.id for e in events):
            events.append(Event(gone.id, gone.type, gone.time, gone.data, notifications.sink_keys()))
        if events:
            self._gone[meta["uid"]] = _Gone(dict(body), notifications, events)

    async def round(self) -> None:
        if self.metrics is not None:
            self.metrics.notifications_pending(self.pending())
        for body in list(self.triggers()):
            meta = body["metadata"]
            held = FINALIZER_NOTIFY in (meta.get("finalizers") or ())
            if not (held or (body.get("spec") or {}).get("notifications")):
                continue  # most Triggers: nothing to parse
            if meta.get("uid") in self._gone or not self.owns(meta["namespace"], meta["name"]):
                continue
            await self._one(body, held)
        for uid, gone in list(self._gone.items()):
            meta = gone.body["metadata"]
            if not self.owns(meta["namespace"], meta["name"]):
                continue
            done = await self._attempt(gone.body, gone.notifications, gone.events)
            left, letters = settle(Outbox(tuple(gone.events)), done, gone.notifications, self.clock())
            for letter in letters:
                await self.api.post_event(gone.body, dead_letter_notice(letter), self.clock())
            if self.metrics is not None:
                self.metrics.dead_letters(len(letters))
            gone.events = list(left.pending)
            if not gone.events:
                del self._gone[uid]
                for rest in [k for k in self._rest if k[0] == uid]:
                    del self._rest[rest]

    async def _one(self, body: Body, held: bool) -> None:
        """One Trigger's round: its finalizer put on or taken off, its pending events tried."""
        meta = body["metadata"]
        try:
            notifications = parse_spec(dict(body.get("spec") or {})).notifications
        except SpecError:
            # Unreadable (the webhook refuses such a spec; one written around it): nothing can be
            # sent, so a deleted one must not wait for anything; a live one keeps what it has.
            if held and meta.get("deletionTimestamp"):
                await self._release(body, "spec.notifications cannot be read", Outbox(), None)
            return
        deleting = parse_time(meta.get("deletionTimestamp"))
        if notifications is not None and deleting is None and not held:
            body = await self._hold(body) or body
            held = FINALIZER_NOTIFY in (body["metadata"].get("finalizers") or ())
        status, error = read_status(dict(body.get("status") or {}))
        outbox = after = Outbox.of(status) if error is None else Outbox()
        now = self.clock()
        if held:
            verdict = finalizer_verdict(notifications, meta["uid"], deleting, outbox, outbox, now, self.delete_grace)
            if verdict is not None:
                # What is owed when the grace ends is given up; without notifications nothing is wanted.
                owed = outbox if deleting is not None and notifications is not None else Outbox()
                await self._release(body, verdict, owed, notifications)
                return
        if notifications is None or not outbox.pending:
            return  # the reconciler empties the outbox of a Trigger without notifications
        done = await self._attempt(body, notifications, outbox.pending)
        if not (done.delivered or done.dead):
            return
        if held and deleting is not None:
            after, letters = settle(outbox, done, notifications, self.clock())
            verdict = finalizer_verdict(notifications, meta["uid"], deleting, outbox, after, self.clock(),
                                        self.delete_grace)
            if verdict is not None:  # the last write is the finalizer's: the status goes with the Trigger
                await self._bury(body, letters)
                await self._release(body, verdict, after, notifications)
                return
        await self._write(body, done, notifications)

    async def _hold(self, body: Body) -> Body | None:
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

    async def _release(self, body: Body, why: str, owed: Outbox, notifications: Notifications | None) -> None:
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
            self._rest = {k: v for k, v in self._rest.items() if k[0] != meta["uid"]}
            await self._bury(body, expired(owed, notifications, f"the Trigger was deleted: {why}", self.clock()))
            log.info("Trigger %s/%s: notifications finalizer removed (%s)", *key, why)
        elif written is not None:
            self.wrote(key, written)

    async def _bury(self, body: Body, letters: list[DeadLetter]) -> None:
        """Dead letters that no status will hold (the Trigger is going): Events and the metric."""
        if self.metrics is not None:
            self.metrics.dead_letters(len(letters))
        for letter in letters:
            await self.api.post_event(body, dead_letter_notice(letter), self.clock())

    async def _attempt(self, body: Body, notifications: Notifications, events: Iterable[Event]) -> Settled:
        """One try of each event at each sink not resting, oldest first; a sink that fails rests and
        is not tried again this round (so events reach it in order)."""
        meta = body["metadata"]
        namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
        key, unusable = await self._signing_key(body, notifications)
        delivered: set[tuple[str, str]] = set()
        dead: list[tuple[str, str, str]] = []
        failed: set[str] = set()
        for event in events:
            for sink_key in event.sinks:
                sink = notifications.sink(sink_key)
                now = self.clock()
                rest = self._rest.setdefault((uid, sink_key), _Rest())
                if sink is None or sink_key in failed or (rest.until is not None and now < rest.until):
                    if sink is not None and now - event.time >= GIVE_UP_AFTER:
                        dead.append((event.id, sink_key, given_up(None, event.time, now) or "expired"))
                    continue
                code: int | None = None
                why = unusable
                if unusable is None:
                    content = cloudevent(event, namespace, name)
                    try:
                        code = await self.sender.send(namespace, sink, headers(event, content, key, now), content)
                    except SendError as error:
                        why = str(error)
                    else:
                        why = f"HTTP {code}"
                if code is not None and acknowledged(code):
                    delivered.add((event.id, sink_key))
                    self._count("delivered")
                    if rest.failures:
                        log.info("sink %s of Trigger %s/%s takes notifications again", sink.describe(),
                                 namespace, name)
                    rest.failures, rest.until = 0, None
                    continue
                final = given_up(code, event.time, now)
                if final is not None:
                    dead.append((event.id, sink_key, final))
                    self._count("rejected")
                    continue
                failed.add(sink_key)
                rest.failures += 1
                rest.until = now + backoff(rest.failures)
                self._count("failed")
                if rest.failures == 1:  # once per streak: a sink that is down is not a log line a second
                    log.warning("notification %s to %s of Trigger %s/%s not delivered (%s); retrying with "
                                "backoff", event.id, sink.describe(), namespace, name, why)
        return Settled(frozenset(delivered), tuple(dead))

    async def _signing_key(self, body: Body, notifications: Notifications) -> tuple[bytes | None, str | None]:
        """The signing key, or why the configured one cannot be used (events then wait: never unsigned)."""
        ref = notifications.signing_secret_ref
        if ref is None:
            return None, None  # unsigned, as the author chose
        refused = notifications_refusal(body, notifications, self.approval_key, self.approval_required)
        if refused is not None:
            return None, refused
        namespace = body["metadata"]["namespace"]
        secret = await self.api.get_secret(namespace, ref.name)
        data = (secret or {}).get("data") or {}
        where = f"spec.notifications.signingSecretRef: Secret {namespace}/{ref.name}"
        if ref.key not in data:
            return None, f"{where} has no key {ref.key!r}"
        try:
            return signing_key(base64.b64decode(data[ref.key]).decode()), None
        except (ValueError, UnicodeDecodeError) as error:
            reason = str(error) if isinstance(error, SigningKeyError) else "is not text"
            return None, f"{where} key {ref.key!r} {reason}"

    async def _write(self, body: Body, done: Settled, notifications: Notifications) -> None:
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

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.notification(outcome)
