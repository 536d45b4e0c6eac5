"""One try of a Trigger's pending events at its sinks (core/outbox.py holds the rules): the sinks side
by side, each sink's events oldest first, each request in a slot (notify/flights.py). Per sink it
backs off exponentially (1 s to 10 min) after a failure; an event is given up for a sink on a 4xx
other than 408/429 or after 24 hours.

The signing key is read from the Trigger's Secret with the operator's rights on the author's behalf,
so only when the webhook's approval of ``spec.notifications.signingSecretRef`` verifies
(admission/approval.py), before every read, as for a condition source's tokenSecret. An event whose
key cannot be used (not approved, no such Secret or key, not a ``whsec_`` key) is not sent unsigned:
it waits, as for a sink that is down, and is dead-lettered after 24 hours."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from trigger_operator.admission.approval import notifications_refusal
from trigger_operator.core.outbox import (
    GIVE_UP_AFTER,
    Event,
    Settled,
    SigningKeyError,
    acknowledged,
    backoff,
    cloudevent,
    given_up,
    headers,
    signing_key,
)
from trigger_operator.kube.interface import Body, ClusterApi
from trigger_operator.metrics import Metrics
from trigger_operator.model.notify import Notifications
from trigger_operator.notify.flights import Slots
from trigger_operator.notify.sender import Refused, Sender, SendError

log = logging.getLogger("trigger_operator.notify")
_REFUSED = "the egress rules refuse the sink of a deleted Trigger: "  # a dead letter's reason, at once


@dataclass
class _Rest:
    failures: int = 0
    until: dt.datetime | None = None


class Deliveries:
    """Sends events and keeps each (Trigger uid, sink)'s backoff; writes nothing (notify/acks.py)."""

    def __init__(self, api: ClusterApi, sender: Sender, *, clock: Callable[[], dt.datetime],
                 approval_key: bytes | None, approval_required: bool, metrics: Metrics | None) -> None:
        self.api = api
        self.sender = sender
        self.clock = clock
        self.approval_key = approval_key
        self.approval_required = approval_required
        self.metrics = metrics
        self._rest: dict[tuple[str, str], _Rest] = {}  # (Trigger uid, sink key)
        self._slots = Slots()

    def forget(self, uid: str) -> None:
        """A Trigger gone for good: its sinks' backoff is dropped."""
        self._rest = {k: v for k, v in self._rest.items() if k[0] != uid}

    async def attempt(self, body: Body, notifications: Notifications, events: Iterable[Event], *,
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

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.notification(outcome)
