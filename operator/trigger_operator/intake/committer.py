"""Durable event counting with group commit.

Each event Trigger has at most one status write in flight; events that arrive meanwhile wait for
the next write and share it, so a burst of concurrent senders costs a few writes, not one each.
Every write is a merge patch of the event keys alone, guarded by resourceVersion: a conflict (the
scheduler, another replica, another batch) re-reads the Trigger and counts the batch again on the
fresh copy, so no count is lost or doubled. A sender's acknowledgement waits for the write that
holds its events.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from trigger_operator.events.cloudevents import Occurrence
from trigger_operator.events.counting import Tally, count_events, message_follows
from trigger_operator.events.inbox import InboxError
from trigger_operator.intake.candidates import EventCandidates
from trigger_operator.intake.inbox import Inbox
from trigger_operator.kube.interface import Body, ClusterApi, Conflict, NotFound
from trigger_operator.metrics import Metrics
from trigger_operator.model.spec import SpecError, TriggerSpec, TriggerType, parse_spec
from trigger_operator.model.status import status_patch
from trigger_operator.model.trigger import trigger_view

log = logging.getLogger("trigger_operator.intake")
Key = tuple[str, str]
Follower = Callable[[Key, Body | None], None]  # told a Trigger's newest body (None: gone)
# The status keys counting writes; groupBy's keys and their summary too (events/keys.py).
EVENT_KEYS = ("eventCounter", "recentEventIds", "eventWindow", "eventKeyState", "eventKeys")
# And the Ready message that states the counter, when it does and changed (counting.message_follows).
MESSAGE_KEYS = ("conditions", "message")
MAX_ATTEMPTS = 20  # conflicting writes before a batch gives up (the sender gets 503 and may retry)


NOT_READ = "the namespace's Triggers could not be read; send again"
NOT_WRITTEN = "the Trigger's status could not be written; send again"
NOT_STORED = "the events could not be stored; send again"


class NotStored(Exception):
    """The events could not be stored (the Trigger is gone, unreadable or too busy): not acknowledged.

    ``public`` says what failed in our words, for the sender's 503; the exception's text (which may
    carry the API client's own error) is for the operator's log alone."""

    def __init__(self, detail: str, public: str = NOT_WRITTEN) -> None:
        super().__init__(detail)
        self.public = public


@dataclass(frozen=True)
class TriggerTally:
    name: str
    counted: int
    duplicates: int
    event_counter: int
    ungrouped: int = 0  # groupBy: occurrences without the key attribute (counted for no key)
    refused: int = 0  # groupBy: occurrences of new keys beyond maxKeys (not counted, not remembered)


@dataclass
class _Waiting:
    events: Sequence[Occurrence]
    done: asyncio.Future[tuple[Tally, int]] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class EventCommitter:
    def __init__(self, api: ClusterApi, *, follow: Callable[[Follower], None],
                 latest: Callable[[Key], Body | None], committed: Callable[[Body], None],
                 clock: Callable[[], dt.datetime], metrics: Metrics | None = None,
                 know: Callable[[str], Awaitable[None]] | None = None, inbox: Inbox | None = None) -> None:
        self._api = api
        self._inbox = inbox  # the shared inbox (intake/inbox.py), when on: the 202 waits for its create
        self._know = know  # completes the scheduler's memory of a namespace (once) before it is read
        self._metrics = metrics
        self._latest = latest  # the scheduler's newest copy of one Trigger
        self._committed = committed  # hands a written Trigger back to the scheduler (it may fire now)
        self._clock = clock
        self._waiting: dict[Key, list[_Waiting]] = {}
        self._writers: dict[Key, asyncio.Task[None]] = {}
        self._specs: dict[tuple[str, str], TriggerSpec | None] = {}  # (uid, generation) -> parsed spec
        # Which Triggers count which events (intake/candidates.py), kept by the scheduler's memory:
        # ``follow`` tells it of every Trigger held now and of every change after.
        self._candidates = EventCandidates(self._spec)
        follow(self._candidates.changed)

    def candidates(self, namespace: str) -> list[tuple[Key, TriggerSpec]]:
        """The event Triggers of the namespace that count events now (intake/candidates.py)."""
        return self._candidates.of(namespace)

    async def count(self, namespace: str, events: Sequence[Occurrence]) -> list[TriggerTally]:
        """Counts ``events`` for every Trigger they apply to; returns once all are stored."""
        by_trigger: dict[Key, list[Occurrence]] = {}
        unmatched = 0
        if self._know is not None:
            try:
                await self._know(namespace)
            except Exception as error:
                raise NotStored(f"the Triggers of namespace {namespace} could not be read: {error}",
                                public=NOT_READ) from error
        specs: dict[Key, TriggerSpec] = {}
        for event, matched in zip(events, self._candidates.matching(namespace, events), strict=True):
            unmatched += not matched
            for key, spec in matched:
                specs[key] = spec
                by_trigger.setdefault(key, []).append(event)
        keys = sorted(by_trigger)
        inboxed = [(key, specs[key], by_trigger[key]) for key in keys if self._into_inbox(specs[key])]
        direct = [key for key in keys if not self._into_inbox(specs[key])]
        waits: list[Awaitable[Any]] = [self._submit(key, by_trigger[key]) for key in direct]
        if inboxed:
            waits.append(self._stored(inboxed))
        gathered = await asyncio.gather(*waits, return_exceptions=True)
        outcome: dict[Key, tuple[Tally, int] | BaseException] = dict(zip(direct, gathered, strict=False))
        if inboxed:
            stored = gathered[-1]
            outcome.update(((key, stored) for key, _, _ in inboxed) if isinstance(stored, BaseException)
                           else zip((key for key, _, _ in inboxed), stored, strict=True))
        tallies: list[TriggerTally] = []
        for key in keys:
            result = outcome[key]
            if isinstance(result, BaseException):
                raise NotStored(str(result), getattr(result, "public", NOT_WRITTEN)) from result
            tally, counter = result
            tallies.append(TriggerTally(key[1], tally.counted, tally.duplicates, counter, tally.ungrouped,
                                        tally.refused))
        if self._metrics is not None:
            self._metrics.events("counted", sum(t.counted for t in tallies))
            self._metrics.events("duplicate", sum(t.duplicates for t in tallies))
            self._metrics.events("unmatched", unmatched)
            self._metrics.events("ungrouped", sum(t.ungrouped for t in tallies))
            self._metrics.events("refused_key_bound", sum(t.refused for t in tallies))
        return tallies

    def _into_inbox(self, spec: TriggerSpec) -> bool:
        """Absence Triggers count in their status directly: a window's verdict at its end must see
        every event stored in it, and an inbox entry may be folded after that end."""
        return self._inbox is not None and spec.schedule_config.absence is None

    async def _stored(self, batches: Sequence[tuple[Key, TriggerSpec, Sequence[Occurrence]]]
                      ) -> list[tuple[Tally, int] | NotStored]:
        """A request's events for the inbox, every Trigger's in one `Inbox.store` (batched mode
        spreads a request over up to 1,000 Triggers: one future each, not a task each)."""
        assert self._inbox is not None
        inbox = self._inbox
        # A retry is a duplicate only of an event stored (not cancelled with us: other senders
        # wait for those creates).
        while flying := list({id(f): f for key, _, events in batches for f in inbox.in_flight(key, events)}.values()):
            await asyncio.wait(flying)
        items, tallies = [], []
        for key, spec, events in batches:  # no await from here to store: it marks the ids as under way
            body = self._latest(key)
            keep, tally, counter = inbox.tally(key, spec, body, events)
            items.append((key, spec, keep, tally.counted, None if body is None else body["metadata"].get("uid")))
            tallies.append((tally, counter))
        results: list[tuple[Tally, int] | NotStored] = []
        for (key, _, _), counted, error in zip(batches, tallies, await inbox.store(items), strict=True):
            if error is None:
                results.append(counted)
            elif isinstance(error, InboxError):  # too large for the inbox: sending it again will not help
                results.append(NotStored(f"{key[0]}/{key[1]}: the event inbox: {error}", str(error)))
            else:
                results.append(NotStored(f"{key[0]}/{key[1]}: the event inbox: {error}", NOT_STORED))
        return results

    def _submit(self, key: Key, events: Sequence[Occurrence]) -> asyncio.Future[tuple[Tally, int]]:
        waiting = _Waiting(events)
        self._waiting.setdefault(key, []).append(waiting)
        if key not in self._writers:
            self._writers[key] = asyncio.create_task(self._write_all(key), name=f"events {key[0]}/{key[1]}")
        return waiting.done

    async def _write_all(self, key: Key) -> None:
        try:
            while self._waiting.get(key):
                batch = self._waiting.pop(key)
                try:
                    results = await self._write(key, batch)
                except Exception as error:
                    for w in batch:
                        if not w.done.done():  # a sender that went away (cancelled) needs no answer
                            w.done.set_exception(NotStored(f"{key[0]}/{key[1]}: {error}"))
                    continue
                for w, result in zip(batch, results, strict=True):
                    if not w.done.done():
                        w.done.set_result(result)
        finally:
            del self._writers[key]

    async def _write(self, key: Key, batch: Sequence[_Waiting]) -> list[tuple[Tally, int]]:
        body = self._latest(key) or await self._api.get_trigger(*key)
        for _ in range(MAX_ATTEMPTS):
            now = self._clock()
            view = trigger_view(body, now)
            spec = self._spec(body)
            if view.status_error is not None or spec is None:
                raise NotStored(view.status_error or "the Trigger's spec is invalid")
            status, tallies = view.status, []
            for waiting in batch:
                status, tally = count_events(status, spec, waiting.events, now)
                tallies.append(tally)
            followed = message_follows(view.status, status, spec)
            keys = EVENT_KEYS + MESSAGE_KEYS if followed is not status else EVENT_KEYS
            patch = {k: v for k, v in status_patch(view.raw_status, followed).items() if k in keys}
            results = [(t, followed.event_counter) for t in tallies]
            if not patch:
                return results  # only duplicates
            try:
                written = await self._api.patch_trigger_status(*key, body["metadata"]["resourceVersion"], patch)
            except Conflict:
                body = await self._api.get_trigger(*key)
                continue
            except NotFound:
                raise NotStored("the Trigger was deleted") from None
            self._committed(written)
            return results
        raise NotStored(f"{MAX_ATTEMPTS} conflicting writes in a row")

    def spec_of(self, body: Mapping[str, Any]) -> TriggerSpec | None:
        """The event spec of a Trigger (parsed once per generation), or None."""
        return self._spec(body)

    def _spec(self, body: Mapping[str, Any]) -> TriggerSpec | None:
        return _remembered(self._specs, body, "generation", lambda: _event_spec(body))


CACHE_LIMIT = 100_000  # entries per cache; cleared whole when full (a rebuild costs one parse each)
T = TypeVar("T")


def _remembered(cache: dict[tuple[str, str], T], body: Mapping[str, Any], version: str, compute: Callable[[], T]) -> T:
    """``compute()`` once per Trigger uid and ``metadata.<version>``."""
    meta = body["metadata"]
    key = (str(meta.get("uid")), str(meta.get(version)))
    if key not in cache:
        if len(cache) >= CACHE_LIMIT:
            cache.clear()
        cache[key] = compute()
    return cache[key]


def _event_spec(body: Mapping[str, Any]) -> TriggerSpec | None:
    """The spec of an event Trigger, or None (another trigger type, or an invalid spec)."""
    try:
        spec = parse_spec(dict(body.get("spec") or {}))
    except SpecError:
        return None
    return spec if spec.trigger_type is TriggerType.EVENT else None
