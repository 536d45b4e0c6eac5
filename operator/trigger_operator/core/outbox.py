"""Outbound notifications (issue 23 part 5): which of the seed's eight webhook events a reconcile pass
produces, the bounded outbox in status that holds them until delivered, and the rules the notifier
(notify/) applies: the CloudEvent it sends, its Standard Webhooks signature, the retry schedule and
when an event is dead-lettered. Pure: no I/O, ``now`` is an argument. docs/notifications.md.

At least once, never on a run's critical path: `record` adds a pass's events to
``status.notifications.pending`` in the very status write that records the change they report (a
run started, counted, a new generation, a phase change), so there is no write of its own and an
event exists exactly when its cause is stored. The notifier sends them later, in the background,
and removes the acknowledged ones in one guarded write (`settle`): a crash between a delivery and
that write sends the event again, with the same id, for the receiver to de-duplicate.

An event's id is made of durable facts only (the Trigger's uid, the Job's name, the generation), so
the same fact always has the same id: ``<uid>.fired.<job>``, ``<uid>.updated.<generation>``...
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from trigger_operator.api import API_VERSION, PLURAL
from trigger_operator.core.plan import Draft, Observed
from trigger_operator.model.notice import Notice
from trigger_operator.model.notify import Notifications, NotificationType
from trigger_operator.model.spec import TriggerSpec
from trigger_operator.model.status import (
    Execution,
    Outcome,
    Phase,
    TriggerStatus,
    cut,
    format_time,
    parse_time,
    token_hash,
)
from trigger_operator.seed.mapping import seed_status

OUTBOX_MAX = 100  # pending events per Trigger; past it the oldest is dead-lettered ("outbox full")
DEAD_LETTERS_KEPT = 20  # the newest dead letters status shows
GIVE_UP_AFTER = dt.timedelta(hours=24)  # an event not delivered to a sink by then is dead-lettered
BACKOFF_FIRST = dt.timedelta(seconds=1)  # per sink, doubling after each failed attempt ...
BACKOFF_CAP = dt.timedelta(minutes=10)  # ... up to this
DATA_ERROR_MAX_CHARS = 256  # a failed run's error in an event: status keeps many events, each short
# A 4xx says the request itself is wrong and will be wrong again, except these two: "try later".
RETRYABLE_4XX = frozenset({408, 429})
CONTENT_TYPE = "application/cloudevents+json"
OUTBOX_FULL = "outbox full"


@dataclass(frozen=True)
class Event:
    """One notification: ``sinks`` are the keys (model.notify.Sink.key) still to acknowledge it."""

    id: str
    type: NotificationType
    time: dt.datetime
    data: Mapping[str, Any]
    sinks: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type.value, "time": format_time(self.time), "sinks": list(self.sinks),
                "data": dict(self.data)}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Event:
        time = parse_time(raw["time"])
        assert time is not None
        return cls(id=str(raw["id"]), type=NotificationType(raw["type"]), time=time, data=dict(raw.get("data") or {}),
                   sinks=tuple(str(s) for s in raw.get("sinks") or ()))


@dataclass(frozen=True)
class DeadLetter:
    id: str
    type: str
    sink: str  # as people read it (model.notify.Sink.describe), or the sink's key once it is gone
    reason: str
    at: dt.datetime

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "sink": self.sink, "reason": self.reason, "at": format_time(self.at)}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> DeadLetter:
        at = parse_time(raw["at"])
        assert at is not None
        return cls(str(raw["id"]), str(raw["type"]), str(raw["sink"]), str(raw["reason"]), at)


@dataclass(frozen=True)
class Outbox:
    pending: tuple[Event, ...] = ()  # oldest first: delivered in this order
    dead_letters: tuple[DeadLetter, ...] = ()  # newest last, at most DEAD_LETTERS_KEPT

    @classmethod
    def of(cls, status: TriggerStatus) -> Outbox:
        """The outbox as status holds it. One that cannot be read (edited by hand) is empty: losing
        notifications is better than a Trigger that never reconciles again."""
        raw = status.notifications or {}
        try:
            return cls(tuple(Event.from_dict(e) for e in raw.get("pending") or ()),
                       tuple(DeadLetter.from_dict(d) for d in raw.get("deadLetters") or ()))
        except (KeyError, TypeError, ValueError, AssertionError, AttributeError):
            return cls()

    def to_status(self) -> dict[str, Any] | None:
        if not self.pending and not self.dead_letters:
            return None
        return {"pending": [e.to_dict() for e in self.pending],
                "deadLetters": [d.to_dict() for d in self.dead_letters]}

    def buried(self, letters: Iterable[DeadLetter]) -> Outbox:
        return replace(self, dead_letters=(*self.dead_letters, *letters)[-DEAD_LETTERS_KEPT:])


# --- which events a pass produces ----------------------------------------------------------------


def derive(o: Observed, after: TriggerStatus, finished: Sequence[Execution], spec: TriggerSpec) -> list[Event]:
    """The events of one pass, from the status as stored (``o.trigger.status``) and as drafted
    (``after``), and the runs the pass counted. Decisions (docs/notifications.md):

    - ``trigger.created``: the first pass that writes a status (none was written before).
    - ``trigger.updated``: a new generation of the spec, unless the edit paused or resumed the Trigger,
      which is then reported as that alone (the seed's pause and resume are no updates).
    - ``trigger.paused``: the phase became Paused; ``trigger.resumed``: it became Active again from
      Paused, or from Failed by the resume annotation (whose token hash is then part of the id).
    - ``trigger.fired``: a run was started (any kind: scheduled, manual, event, condition).
    - ``trigger.execution.completed``: a run Succeeded; ``trigger.execution.failed``: a run Failed,
      was Lost (its Job vanished unseen) or Replaced (concurrencyPolicy Replace): it did not complete.
    - ``trigger.deleted``: the Trigger has a deletionTimestamp (the notify finalizer holds it until
      this event is delivered: `finalizer_verdict`), so it is as durable as every other event.
    """
    t, before = o.trigger, o.trigger.status
    events: list[Event] = []

    def add(kind: NotificationType, suffix: str, **data: Any) -> None:
        base = {"trigger_id": t.name, "namespace": t.namespace, "event_type": kind.value,
                "status": seed_status({"spec": {"state": spec.state.value},
                                       "status": {"phase": after.phase.value if after.phase else None}}).value,
                "generation": t.generation}
        events.append(Event(f"{t.uid}.{kind.value.removeprefix('trigger.')}{suffix}", kind, o.now,
                            {**base, **{k: v for k, v in data.items() if v is not None}}))

    if before.observed_generation is None:
        add(NotificationType.CREATED, "")
    elif t.deleting_since is not None:
        pass  # the deletion itself is a new generation (the API server counts it): no update, no phase change
    else:
        paused = after.phase is Phase.PAUSED and before.phase not in (None, Phase.PAUSED)
        resumed = after.phase is Phase.ACTIVE and before.phase in (Phase.PAUSED, Phase.FAILED)
        if paused:
            add(NotificationType.PAUSED, f".{t.generation}")
        if resumed:
            token = after.last_resume_token if after.last_resume_token != before.last_resume_token else None
            add(NotificationType.RESUMED, f".{t.generation}" + (f".{token_hash(token)}" if token else ""))
        if t.generation > before.observed_generation and not (paused or resumed):
            add(NotificationType.UPDATED, f".{t.generation}")
    started = {r.name for r in before.active}
    for run in after.active:
        if run.name not in started:
            add(NotificationType.FIRED, f".{run.name}", job_name=run.name, run_kind=run.kind.value,
                scheduled_time=format_time(run.scheduled_time), fired_at=format_time(run.fired_at))
    for e in finished:
        kind = (NotificationType.EXECUTION_COMPLETED if e.outcome is Outcome.SUCCEEDED
                else NotificationType.EXECUTION_FAILED)
        add(kind, f".{e.name}", job_name=e.name, run_kind=e.kind.value, outcome=e.outcome.value,
            scheduled_time=format_time(e.scheduled_time), started_at=format_time(e.started_at),
            finished_at=format_time(e.finished_at), duration_ms=e.duration_ms,
            error=cut(e.error, DATA_ERROR_MAX_CHARS) if e.error else None)
    if t.deleting_since is not None:
        events.append(deleted(t.namespace, t.name, t.uid, o.now))
    return events


def deleted(namespace: str, name: str, uid: str, now: dt.datetime) -> Event:
    """``trigger.deleted``: recorded in status by the pass that sees the deletionTimestamp (`derive`),
    or, for a Trigger deleted before the notify finalizer was on it, made by the notifier from the
    watch's last copy and held in its memory (docs/notifications.md)."""
    kind = NotificationType.DELETED
    return Event(f"{uid}.deleted", kind, now, {"trigger_id": name, "namespace": namespace,
                                               "event_type": kind.value, "status": "deleted"})


# --- the outbox ------------------------------------------------------------------------------------


def enqueue(outbox: Outbox, events: Iterable[Event], notifications: Notifications, now: dt.datetime
            ) -> tuple[Outbox, list[DeadLetter]]:
    """``outbox`` with the wanted ``events`` added for every sink, pending events narrowed to the
    sinks the spec still names (an event for a sink taken out of the spec is dropped with it: the
    author no longer wants it there), and bounded to `OUTBOX_MAX`: the oldest beyond it are
    dead-lettered, one letter per sink, reason `OUTBOX_FULL`. Returns the new dead letters too."""
    keys = notifications.sink_keys()
    kept = [replace(e, sinks=tuple(s for s in e.sinks if s in keys)) for e in outbox.pending]
    pending = [e for e in kept if e.sinks]
    known = {e.id for e in pending}
    for event in events:
        if notifications.wants(event.type) and event.id not in known:
            pending.append(replace(event, sinks=keys))
            known.add(event.id)
    # trigger.deleted stays last (a stable sort): a sink gets it after everything recorded before or
    # after it, so once every sink acknowledged it nothing older is owed (`finalizer_verdict`).
    pending.sort(key=lambda e: e.type is NotificationType.DELETED)
    cut_at = max(0, len(pending) - OUTBOX_MAX)
    over, pending = pending[:cut_at], pending[cut_at:]
    letters = [DeadLetter(e.id, e.type.value, _shown(notifications, s), OUTBOX_FULL, now)
               for e in over for s in e.sinks]
    return replace(outbox, pending=tuple(pending)).buried(letters), letters


def record(o: Observed, d: Draft, spec: TriggerSpec, *, runs_only: bool = False) -> None:
    """The pass's hook (core/reconcile.py): the events this pass produces, into the outbox the same
    status write carries; a Warning Event for each dead letter. Without ``spec.notifications`` the
    outbox is emptied (nothing is sent any more) and nothing is recorded. ``runs_only``: only the
    runs the pass counted (refused_creates: a Job the API server refused for good, a failed run; that
    pass decides nothing about the generation or the phase, so it must not report them)."""
    if spec.notifications is None:
        if d.status.notifications is not None:
            d.status = replace(d.status, notifications=None)
        return
    outbox = Outbox.of(d.status)
    events = derive(o, d.status, d.finished, spec)
    if runs_only:
        events = [e for e in events if e.type in _RUN_ENDS]
    updated, letters = enqueue(outbox, events, spec.notifications, o.now)
    if len(letters) == 1:
        d.notices.append(dead_letter_notice(letters[0]))
    elif letters:  # e.g. 1,000 keys firing at once: one Event, not one per dropped event and sink
        d.notices.append(dropped_notice(letters, OUTBOX_FULL))
    if updated != outbox:
        d.status = replace(d.status, notifications=updated.to_status())


_RUN_ENDS = frozenset({NotificationType.EXECUTION_COMPLETED, NotificationType.EXECUTION_FAILED})


def dead_letter_notice(letter: DeadLetter) -> Notice:
    return Notice("Warning", "NotificationDeadLettered",
                  f"{letter.type} {letter.id} to {letter.sink} was given up: {letter.reason}")


def dropped_notice(letters: Sequence[DeadLetter], reason: str) -> Notice:
    """One Warning for many dead letters given up at once for one reason: a pass (or a notifier's
    round) must not post hundreds of Events; status keeps the newest letters, the metric counts all."""
    events = len({letter.id for letter in letters})
    return Notice("Warning", "NotificationDeadLettered",
                  f"{events} events dropped ({len(letters)} dead letters, one per event and sink): {reason}")


@dataclass(frozen=True)
class Settled:
    """What one round of deliveries did for one Trigger: (event id, sink key) pairs acknowledged,
    and those given up with the reason."""

    delivered: frozenset[tuple[str, str]] = frozenset()
    dead: tuple[tuple[str, str, str], ...] = ()  # (event id, sink key, reason)


def settle(outbox: Outbox, done: Settled, notifications: Notifications | None, now: dt.datetime
           ) -> tuple[Outbox, list[DeadLetter]]:
    """The outbox after a round of deliveries: acknowledged and dead pairs leave ``pending`` (an
    event leaves once no sink is left), dead ones become letters. Applied to the copy the write
    is guarded by, so it is correct against whatever the reconciler added meanwhile (by id)."""
    dead = {(i, s): reason for i, s, reason in done.dead}
    pending, letters = [], []
    for event in outbox.pending:
        left = []
        for sink in event.sinks:
            if (event.id, sink) in done.delivered:
                continue
            if (event.id, sink) in dead:
                letters.append(DeadLetter(event.id, event.type.value, _shown(notifications, sink),
                                          dead[(event.id, sink)], now))
                continue
            left.append(sink)
        if left:
            pending.append(replace(event, sinks=tuple(left)))
    return replace(outbox, pending=tuple(pending)).buried(letters), letters


def finalizer_verdict(notifications: Notifications | None, uid: str, deleting_since: dt.datetime | None,
                      before: Outbox, after: Outbox, now: dt.datetime, grace: dt.timedelta) -> str | None:
    """Why the notify finalizer comes off a Trigger that carries it now, or None to keep it.
    ``before`` and ``after``: the outbox as stored and as this round of deliveries left it.

    - ``spec.notifications`` removed (or unreadable): nothing is sent any more, so nothing may hold
      the Trigger, deleted or not.
    - Deleted: once ``trigger.deleted`` (always last per sink, `enqueue`) left the outbox in this
      round, delivered or dead-lettered at every sink; when the author does not want that type,
      once nothing is pending. The reconciler records the event at its first pass after the
      deletion (`derive`); until then there is nothing to decide.
    - Deleted ``grace`` ago (the setting TRIGGER_OPERATOR_NOTIFICATIONS_DELETE_GRACE_SECONDS, 10 min:
      a dead sink must never hold a deletion, or a GitOps prune waiting on it, for long): at once,
      whatever is still owed (dead-lettered by the caller, `expired`).
    """
    if notifications is None:
        return "spec.notifications was removed"
    if deleting_since is None:
        return None
    if now - deleting_since >= grace:
        return f"the deletion grace ({_duration(grace)}) passed"
    if not notifications.wants(NotificationType.DELETED):
        return "every event was delivered or given up" if not after.pending else None
    gone = f"{uid}.deleted"
    was = any(e.id == gone for e in before.pending)
    return "trigger.deleted was delivered or given up" if was and all(e.id != gone for e in after.pending) else None


def expired(outbox: Outbox, notifications: Notifications | None, reason: str, now: dt.datetime) -> list[DeadLetter]:
    """Every (event, sink) pair still owed, as dead letters: what a deleted Trigger's grace left."""
    return [DeadLetter(e.id, e.type.value, _shown(notifications, s), reason, now)
            for e in outbox.pending for s in e.sinks]


def _duration(span: dt.timedelta) -> str:
    seconds = int(span.total_seconds())
    return f"{seconds // 60} min" if seconds % 60 == 0 and seconds >= 60 else f"{seconds} s"


def _shown(notifications: Notifications | None, key: str) -> str:
    sink = notifications.sink(key) if notifications is not None else None
    return sink.describe() if sink is not None else f"sink {key}"


# --- delivery rules ----------------------------------------------------------------------------------


def backoff(failures: int) -> dt.timedelta:
    """How long a sink rests after ``failures`` failed attempts in a row: 1 s, 2 s, 4 s ... 10 min."""
    if failures <= 0:
        return dt.timedelta(0)
    wait: dt.timedelta = BACKOFF_FIRST * 2 ** min(failures - 1, 20)
    return min(wait, BACKOFF_CAP)


def given_up(status: int | None, event_time: dt.datetime, now: dt.datetime) -> str | None:
    """Why a failed delivery is final (the event is dead-lettered for that sink), or None to retry:
    a 4xx other than 408 and 429 (the receiver refuses this request and would refuse it again), or
    `GIVE_UP_AFTER` passed since the event. ``status`` None: no HTTP answer (refused, timed out)."""
    if status is not None and 400 <= status < 500 and status not in RETRYABLE_4XX:
        return f"the sink answered HTTP {status}"
    if now - event_time >= GIVE_UP_AFTER:
        answer = f"HTTP {status}" if status is not None else "no answer"
        return f"not delivered within {int(GIVE_UP_AFTER.total_seconds() // 3600)} h (last: {answer})"
    return None


def acknowledged(status: int) -> bool:
    return 200 <= status < 300


def source(namespace: str, name: str) -> str:
    """The CloudEvents ``source``: the Trigger's API path."""
    return f"/apis/{API_VERSION}/namespaces/{namespace}/{PLURAL}/{name}"


def cloudevent(event: Event, namespace: str, name: str) -> bytes:
    """The event as a structured-mode CloudEvent 1.0 (``application/cloudevents+json``). The same
    event always gives the same bytes (sorted keys), so a re-send is byte for byte the first."""
    body = {"specversion": "1.0", "id": event.id, "source": source(namespace, name), "type": event.type.value,
            "subject": name, "time": format_time(event.time), "datacontenttype": "application/json",
            "data": dict(event.data)}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


class SigningKeyError(ValueError):
    """A signing key that is no Standard Webhooks key (the message never quotes it)."""


def signing_key(text: str) -> bytes:
    """The key bytes of a Standard Webhooks secret, ``whsec_<base64>`` (the prefix is optional, as
    the libraries accept it), at least 24 bytes as their reference implementation asks."""
    encoded = text.strip().removeprefix("whsec_")
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise SigningKeyError("is not whsec_ followed by base64") from None
    if len(key) < 24:
        raise SigningKeyError(f"decodes to {len(key)} bytes; a Standard Webhooks key has at least 24")
    return key


def signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``, Standard Webhooks' scheme."""
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def headers(event: Event, body: bytes, key: bytes | None, now: dt.datetime) -> dict[str, str]:
    """The request's headers: the CloudEvents content type and Standard Webhooks' ``webhook-id`` (the
    event's id, so receivers de-duplicate by either), ``webhook-timestamp`` (the attempt's time, as
    the scheme wants it recent) and, with a key, ``webhook-signature``; without one, unsigned."""
    timestamp = int(now.timestamp())
    out = {"Content-Type": CONTENT_TYPE, "webhook-id": event.id, "webhook-timestamp": str(timestamp)}
    if key is not None:
        out["webhook-signature"] = signature(key, event.id, timestamp, body)
    return out
