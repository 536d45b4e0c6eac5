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

``trigger.deleted``: status goes with the Trigger, so the notifier takes the deleted Trigger's last
copy from the watch and holds, in memory, its undelivered events and the ``trigger.deleted`` event;
they are delivered with the same rules, but a restart of the operator loses them (the one event
that is not durable: docs/notifications.md).
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
from trigger_operator.core.outbox import (
    GIVE_UP_AFTER,
    Event,
    Outbox,
    Settled,
    SigningKeyError,
    acknowledged,
    backoff,
    cloudevent,
    dead_letter_notice,
    deleted,
    given_up,
    headers,
    settle,
    signing_key,
)
from trigger_operator.kube.interface import Body, ClusterApi, Conflict, NotFound
from trigger_operator.metrics import Metrics
from trigger_operator.model.notify import Notifications
from trigger_operator.model.spec import SpecError, parse_spec
from trigger_operator.model.status import read_status
from trigger_operator.notify.sender import Sender, SendError

log = logging.getLogger("trigger_operator.notify")
TICK_SECONDS = 1.0  # how often pending outboxes are looked at (a sink's backoff decides when it is tried)
WRITE_ATTEMPTS = 3  # a guarded write that conflicts is re-applied to the fresh copy this many times
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
                 metrics: Metrics | None = None) -> None:
        self.api = api
        self.sender = sender
        self.triggers = triggers
        self.owns = owns
        self.wrote = wrote
        self.clock = clock
        self.approval_key = approval_key
        self.approval_required = approval_required
        self.metrics = metrics
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
        try:
            notifications = parse_spec(dict(body.get("spec") or {})).notifications
        except SpecError:
            return
        if notifications is None or not meta.get("uid") or meta["uid"] in self._gone:
            return
        status, _ = read_status(dict(body.get("status") or {}))
        events = list(Outbox.of(status).pending)
        gone = deleted(meta["namespace"], meta["name"], meta["uid"], self.clock())
        if notifications.wants(gone.type):
            events.append(Event(gone.id, gone.type, gone.time, gone.data, notifications.sink_keys()))
        if events:
            self._gone[meta["uid"]] = _Gone(dict(body), notifications, events)

    async def round(self) -> None:
        if self.metrics is not None:
            self.metrics.notifications_pending(self.pending())
        for body in list(self.triggers()):
            meta = body["metadata"]
            if not ((body.get("status") or {}).get("notifications") or {}).get("pending"):
                continue  # most Triggers: nothing to parse
            if meta.get("uid") in self._gone or not self.owns(meta["namespace"], meta["name"]):
                continue
            status, error = read_status(dict(body.get("status") or {}))
            outbox = Outbox.of(status)
            if error is not None or not outbox.pending:
                continue
            try:
                notifications = parse_spec(dict(body.get("spec") or {})).notifications
            except SpecError:
                continue
            if notifications is None:
                continue  # the reconciler empties the outbox
            done = await self._attempt(body, notifications, outbox.pending)
            if done.delivered or done.dead:
                await self._write(body, done, notifications)
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
