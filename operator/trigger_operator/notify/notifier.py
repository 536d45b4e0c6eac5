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
round of its creation, or while no operator ran) is the one case left to memory: its undelivered
events and ``trigger.deleted`` are held here with its name and uid (never its whole body: a tenant's
create/delete loop must not grow the operator), for at most `GONE_KEPT` Triggers; beyond that the
oldest one's events are dead-lettered (one Warning Event, the metric), and an event for a sink the
egress rules refuse is dead-lettered at once, since no retry can deliver it.

No tenant's sink holds another's notifications, nor a deletion: every request has a total deadline
(notify/sender.py); each Trigger's deliveries run as a task of their own (a flight), its sinks side by
side, each sink's events in order; at most `SENDS_AT_ONCE` requests are in flight, at most
`SENDS_PER_NAMESPACE` of them for one namespace. `run` ticks every second whatever the flights do:
the finalizer's verdict (the deletion grace, notifications removed) is taken at each tick, and a
Trigger whose finalizer comes off that way has its flight cancelled first.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from trigger_operator.admission.approval import notifications_refusal
from trigger_operator.api import ANNOTATION_NOTIFICATIONS_APPROVAL, FINALIZER_NOTIFY
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
    dropped_notice,
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
from trigger_operator.notify.sender import Refused, Sender, SendError

log = logging.getLogger("trigger_operator.notify")
TICK_SECONDS = 1.0  # how often pending outboxes are looked at (a sink's backoff decides when it is tried)
WRITE_ATTEMPTS = 3  # a guarded write that conflicts is re-applied to the fresh copy this many times
RELEASED_KEPT = 10_000  # uids whose notify finalizer we took off: their DELETED needs nothing from memory
GONE_KEPT = 1_000  # deleted Triggers whose events memory holds; beyond, the oldest's are dead-lettered
GONE_EVICTED = f"more than {GONE_KEPT} deleted Triggers' notifications were held in memory"
SENDS_AT_ONCE = 16  # requests in flight, every Trigger's together
SENDS_PER_NAMESPACE = 4  # of those, one namespace's: a tenant's slow sinks never take every slot
Key = tuple[str, str]
_REFUSED = "the egress rules refuse the sink of a deleted Trigger: "  # a dead letter's reason, at once


@dataclass
class _Rest:
    failures: int = 0
    until: dt.datetime | None = None


@dataclass
class _Gone:
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


class _Slots:
    """At most `SENDS_AT_ONCE` requests in flight, at most `SENDS_PER_NAMESPACE` of them one
    namespace's (that slot is taken first, so a namespace waiting for its own holds no global one).
    The semaphores are made for the running loop (tests run a notifier under several loops)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._all = asyncio.Semaphore(SENDS_AT_ONCE)
        self._per: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}  # namespace: (slots, [users])

    @contextlib.asynccontextmanager
    async def of(self, namespace: str) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop, self._all, self._per = loop, asyncio.Semaphore(SENDS_AT_ONCE), {}
        own, users = self._per.setdefault(namespace, (asyncio.Semaphore(SENDS_PER_NAMESPACE), [0]))
        users[0] += 1
        try:
            async with own, self._all:
                yield
        finally:
            users[0] -= 1
            if not users[0] and self._per.get(namespace, (None,))[0] is own:
                del self._per[namespace]  # no namespace stays in memory once idle


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
        self._gone: dict[str, _Gone] = {}  # by uid, oldest first
        self._evicted: list[tuple[Body, list[DeadLetter]]] = []  # over GONE_KEPT: letters for the next tick
        self._flights: dict[str, asyncio.Task[None]] = {}  # by Trigger uid: its deliveries under way
        self._slots = _Slots()

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
            for flight in list(self._flights.values()):
                flight.cancel()

    async def round(self) -> None:
        """A tick, then every delivery under way to its end (tests; `run` never waits for them)."""
        await self.tick()
        while self._flights:
            await asyncio.gather(*self._flights.values(), return_exceptions=True)

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
        if not events:
            return
        self._gone[meta["uid"]] = _Gone(_stub(body), notifications, events)
        while len(self._gone) > GONE_KEPT:
            uid = next(iter(self._gone))
            oldest = self._gone.pop(uid)
            self._land(uid)
            self._evicted.append((oldest.body, expired(Outbox(tuple(oldest.events)), oldest.notifications,
                                                       GONE_EVICTED, self.clock())))

    async def tick(self) -> None:
        """Every owned Trigger's finalizer put on or taken off, and its deliveries started unless
        some are under way; never waits for a sink."""
        if self.metrics is not None:
            self.metrics.notifications_pending(self.pending())
        evicted, self._evicted = self._evicted, []
        for stub, letters in evicted:  # by the replica that delivers for it, as its events would be
            if self.owns(stub["metadata"]["namespace"], stub["metadata"]["name"]):
                await self._bury(stub, letters, aggregate=GONE_EVICTED)
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
            if self.owns(meta["namespace"], meta["name"]):
                self._fly(uid, functools.partial(self._deliver_gone, uid, gone))

    def _fly(self, uid: str, deliveries: Callable[[], Awaitable[None]]) -> None:
        """Starts a Trigger's deliveries as a task of their own, unless some are under way."""
        if uid in self._flights:
            return

        async def flight() -> None:
            try:
                await deliveries()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("notifications of Trigger uid %s failed; trying again", uid)
            finally:
                if self._flights.get(uid) is task:
                    del self._flights[uid]

        task = asyncio.get_running_loop().create_task(flight(), name=f"notify {uid}")
        self._flights[uid] = task

    def _land(self, uid: str) -> None:
        """Cancels a Trigger's deliveries under way: a verdict taken without them overrides them."""
        flight = self._flights.pop(uid, None)
        if flight is not None:
            flight.cancel()

    async def _deliver_gone(self, uid: str, gone: _Gone) -> None:
        done = await self._attempt(gone.body, gone.notifications, gone.events, refused_is_final=True)
        left, letters = settle(Outbox(tuple(gone.events)), done, gone.notifications, self.clock())
        if self._gone.get(uid) is not gone:
            return  # evicted meanwhile: its letters are written already
        gone.events = list(left.pending)
        if not gone.events:
            del self._gone[uid]
            for rest in [k for k in self._rest if k[0] == uid]:
                del self._rest[rest]
        await self._bury(gone.body, letters)

    async def _one(self, body: Body, held: bool) -> None:
        """One Trigger's tick: its finalizer put on or taken off, its pending events handed to a flight."""
        meta = body["metadata"]
        try:
            notifications = parse_spec(dict(body.get("spec") or {})).notifications
        except SpecError:
            # Unreadable (the webhook refuses such a spec; one written around it): nothing can be
            # sent, so a deleted one must not wait for anything; a live one keeps what it has.
            if held and meta.get("deletionTimestamp"):
                self._land(meta["uid"])
                await self._release(body, "spec.notifications cannot be read", Outbox(), None)
            return
        deleting = parse_time(meta.get("deletionTimestamp"))
        if notifications is not None and deleting is None and not held:
            body = await self._hold(body) or body
            held = FINALIZER_NOTIFY in (body["metadata"].get("finalizers") or ())
        status, error = read_status(dict(body.get("status") or {}))
        outbox = Outbox.of(status) if error is None else Outbox()
        now = self.clock()
        if held:
            verdict = finalizer_verdict(notifications, meta["uid"], deleting, outbox, outbox, now, self.delete_grace)
            if verdict is not None:
                # What is owed when the grace ends is given up; without notifications nothing is wanted.
                owed = outbox if deleting is not None and notifications is not None else Outbox()
                self._land(meta["uid"])
                await self._release(body, verdict, owed, notifications)
                return
        if notifications is None or not outbox.pending:
            return  # the reconciler empties the outbox of a Trigger without notifications
        self._fly(meta["uid"], functools.partial(self._deliver, body, held, notifications, outbox, deleting))

    async def _deliver(self, body: Body, held: bool, notifications: Notifications, outbox: Outbox,
                       deleting: dt.datetime | None) -> None:
        """One try of a Trigger's pending events; what was acknowledged or given up is written, or,
        for a deleted Trigger whose trigger.deleted went, the finalizer comes off."""
        meta = body["metadata"]
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

    async def _bury(self, body: Body, letters: list[DeadLetter], aggregate: str | None = None) -> None:
        """Dead letters that no status will hold (the Trigger is going): Events and the metric; with
        ``aggregate``, one Event for them all, with that reason."""
        if self.metrics is not None:
            self.metrics.dead_letters(len(letters))
        if aggregate is not None and letters:
            await self.api.post_event(body, dropped_notice(letters, aggregate), self.clock())
            return
        for letter in letters:
            await self.api.post_event(body, dead_letter_notice(letter), self.clock())

    async def _attempt(self, body: Body, notifications: Notifications, events: Iterable[Event], *,
                       refused_is_final: bool = False) -> Settled:
        """One try of each event at each sink not resting: the sinks side by side, each sink's events
        oldest first; a sink that fails rests and is not tried again this round (so events reach it
        in order). ``refused_is_final``: a sink the egress rules refuse gives its events up at once
        (a deleted Trigger's: nobody can change its sinks any more)."""
        key, unusable = await self._signing_key(body, notifications)
        events = tuple(events)
        sinks = dict.fromkeys(s for e in events for s in e.sinks)
        tried = await asyncio.gather(*(self._to_sink(body, notifications, s, [e for e in events if s in e.sinks],
                                                     key, unusable, refused_is_final) for s in sinks))
        return Settled(frozenset(p for done in tried for p in done.delivered),
                       tuple(d for done in tried for d in done.dead))

    async def _to_sink(self, body: Body, notifications: Notifications, sink_key: str, events: list[Event],
                       key: bytes | None, unusable: str | None, refused_is_final: bool) -> Settled:
        meta = body["metadata"]
        namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
        sink = notifications.sink(sink_key)
        rest = self._rest.setdefault((uid, sink_key), _Rest())
        delivered: set[tuple[str, str]] = set()
        dead: list[tuple[str, str, str]] = []
        failed: str | None = None  # why the sink failed this round (it is then not tried again)
        for event in events:
            now = self.clock()
            if sink is None or failed is not None or (rest.until is not None and now < rest.until):
                if failed is not None and failed.startswith(_REFUSED):
                    dead.append((event.id, sink_key, failed))
                elif sink is not None and now - event.time >= GIVE_UP_AFTER:
                    dead.append((event.id, sink_key, given_up(None, event.time, now) or "expired"))
                continue
            code: int | None = None
            why = unusable
            if unusable is None:
                content = cloudevent(event, namespace, name)
                try:
                    async with self._slots.of(namespace):
                        code = await self.sender.send(namespace, sink, headers(event, content, key, self.clock()),
                                                      content)
                except Refused as error:
                    why = f"{_REFUSED}{error}" if refused_is_final else str(error)
                except SendError as error:
                    why = str(error)
                else:
                    why = f"HTTP {code}"
            if code is not None and acknowledged(code):
                delivered.add((event.id, sink_key))
                self._count("delivered")
                if rest.failures:
                    log.info("sink %s of Trigger %s/%s takes notifications again", sink.describe(), namespace, name)
                rest.failures, rest.until = 0, None
                continue
            final = why if why is not None and why.startswith(_REFUSED) else given_up(code, event.time, now)
            if final is not None:
                dead.append((event.id, sink_key, final))
                self._count("rejected")
                if final.startswith(_REFUSED):
                    failed = final
                continue
            failed = why or "failed"
            rest.failures += 1
            rest.until = self.clock() + backoff(rest.failures)
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
