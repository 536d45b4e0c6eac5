"""The shared event inbox's shell: one create per group commit across Triggers, then the folds.
The rule (names, entries, the watermark that makes a fold count once): events/inbox.py.
docs/events.md, "The shared inbox".

- `store` queues a Trigger's events; one writer creates inbox objects one after the other (their
  sequence numbers in order, the watermark's premise), each holding every entry waiting, and
  answers each waiting sender when the object holding its entry was created.
- The folder folds, per Trigger, every entry it knows (its own objects from memory, any replica's
  from a list of the inbox: at start, then every ``sweep_seconds``) in one guarded status write,
  and deletes an object once each of its entries is folded (or its Trigger is gone).
- Until folded, this replica remembers the ids it stored per Trigger, so a retry is answered as
  a duplicate at once; across replicas the fold's de-duplication by the same ids catches it. An id
  is remembered once its object's create returned: a retry of an event whose create is under way
  waits for that create, and is then a duplicate (stored) or stored itself (the create failed).
- An object is folded from memory exactly as a list would read it back (`rule.read_entry` of
  each row its text is made of). An entry that would not read back, or too large for an object
  alone, fails its own sender alone.
- A fold refused for good (the API server refuses the status write, the Trigger's status or
  inboxFolded unreadable) is tried `MAX_REFUSALS` rounds in a row, then its entries are dropped
  with a Warning Event on the Trigger (reason `InboxEventsDropped`) and the metric
  ``trigger_operator_events_total{result="inbox_dropped"}``: acknowledged events lost, said aloud,
  rather than objects and the 503 budget held for ever. Entries stored for a Trigger since deleted
  and re-created under its name are dropped (``result="inbox_stale"``).
- A sweep takes in at most `MAX_SWEPT_OBJECTS` objects it does not know yet (of each incarnation
  the lowest sequence numbers first: the watermark's premise), and sweeps again at the next round
  while more are left; it forgets the other replicas' objects a list no longer holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from trigger_operator.events import inbox as rule
from trigger_operator.events.cloudevents import Occurrence
from trigger_operator.events.counting import Tally, event_keys, message_follows
from trigger_operator.events.keys import key_of
from trigger_operator.kube.interface import Body, Conflict, NotFound, Rejected
from trigger_operator.metrics import Metrics
from trigger_operator.model.notice import Notice
from trigger_operator.model.spec import TriggerSpec
from trigger_operator.model.status import status_patch
from trigger_operator.model.trigger import trigger_view

log = logging.getLogger("trigger_operator.intake.inbox")
Key = tuple[str, str]
# The status keys a fold writes: the counting's and the watermark.
FOLD_KEYS = ("eventCounter", "recentEventIds", "eventWindow", "eventKeyState", "eventKeys", "inboxFolded",
             "conditions", "message")
MAX_ATTEMPTS = 20  # conflicting fold writes in a row before the Trigger's fold waits for the next round
# Fold writes in flight, of the 64 hot calls (KubeSettings.threads). A fold waits for a few turns
# of the event loop, each long under a burst of batches: 16 at once folded 100 Triggers in ~15 s and
# senders met MAX_WAITING_EVENTS (503); 32 keep up at 20,000 events/s (issue 21).
FOLDS_AT_ONCE = 32
FOLD_EVERY_SECONDS = 0.25  # at most this often: a fold write then carries every entry since the last
MAX_WAITING_EVENTS = 200_000  # stored but not folded, in this replica: beyond it senders get 503
MAX_REFUSALS = 5  # rounds in a row a Trigger's fold is refused for good before its entries are dropped
MAX_SWEPT_OBJECTS = 32  # objects a sweep takes in (each up to 900 KB): the rest wait for the next sweep


class InboxApi(Protocol):
    async def create_config_map(self, namespace: str, body: Mapping[str, Any]) -> Body: ...
    async def list_config_maps(self, namespace: str, label_selector: str) -> list[Body]: ...
    async def delete_config_map(self, namespace: str, name: str) -> bool: ...
    async def get_trigger(self, namespace: str, name: str) -> Body: ...
    async def patch_trigger_status(self, namespace: str, name: str, resource_version: str,
                                   patch: Mapping[str, Any]) -> Body: ...
    async def post_event(self, trigger: Mapping[str, Any], notice: Notice, now: dt.datetime) -> None: ...


class InboxFull(Exception):
    pass


class _Refused(Exception):
    """A fold that will not pass by trying again (see `MAX_REFUSALS`)."""

    def __init__(self, message: str, body: Body) -> None:
        super().__init__(message)
        self.body = body


@dataclass(frozen=True)
class _Own:
    """What this replica remembers of an entry it stored, until it is folded."""

    ids: tuple[str, ...]
    counted: int
    events: int


@dataclass
class _Known:
    """An inbox object this replica knows of, and which of its entries are still to fold."""

    obj: rule.InboxObject
    left: set[int] = field(default_factory=set)  # indexes of its entries not folded yet
    own: tuple[_Own, ...] = ()  # this replica's object: per entry


@dataclass
class _Waiting:
    entry: rule.Entry
    spec: TriggerSpec
    own: _Own
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Inbox:
    def __init__(self, api: InboxApi, namespace: str, *, latest: Callable[[Key], Body | None],
                 committed: Callable[[Body], None], spec_of: Callable[[Body], TriggerSpec | None],
                 clock: Callable[[], dt.datetime], sweep_seconds: float = 10.0,
                 incarnation: str | None = None, metrics: Metrics | None = None) -> None:
        self._api, self._namespace = api, namespace
        self._latest, self._committed, self._spec_of, self._clock = latest, committed, spec_of, clock
        self._sweep_seconds = sweep_seconds
        self.incarnation = incarnation or secrets.token_hex(6)
        self._seq = 0
        self._queue: list[_Waiting] = []
        self._writer: asyncio.Task[None] | None = None
        self._known: dict[str, _Known] = {}  # by object name
        self._pending_ids: dict[Key, set[str]] = {}  # ids stored by this replica, not folded yet
        self._in_flight: dict[Key, dict[str, asyncio.Future[None]]] = {}  # ids whose create is under way
        self._refusals: dict[Key, int] = {}  # folds refused for good in a row, per Trigger
        self._metrics = metrics
        self._more = False  # the last sweep left objects out (MAX_SWEPT_OBJECTS): sweep again
        self._pending_counts: dict[Key, int] = {}
        self._waiting_events = 0
        self._listed: tuple[float, frozenset[str]] | None = None  # (monotonic time, incarnations) of the last list
        self._kick = asyncio.Event()
        self._folds = asyncio.Semaphore(FOLDS_AT_ONCE)
        self._seen_cache: dict[Key, tuple[str, frozenset[str], int]] = {}

    # --- the intake side --------------------------------------------------------------------------

    def tally(self, key: Key, spec: TriggerSpec, body: Body | None,
              events: Sequence[Occurrence]) -> tuple[list[Occurrence], Tally, int]:
        """The events to store for a Trigger (duplicates left out: in status or stored here and not
        folded yet), what the sender is told, and the counter as it will be once folded."""
        seen, stored = self._seen(key, body)
        pending = self._pending_ids.get(key, set())
        keep: list[Occurrence] = []
        duplicates = counted = ungrouped = 0
        batch: set[str] = set()
        for event in events:
            both = event_keys(event)
            if both is not None and (both[0] in seen or both[1] in seen or both[0] in pending or both[0] in batch):
                duplicates += 1
                continue
            if both is not None:
                batch.add(both[0])
            keep.append(event)
            if spec.schedule_config.group_by is not None and key_of(spec, event) is None:
                ungrouped += event.count
            else:
                counted += event.count
        return keep, Tally(counted, duplicates, ungrouped), stored + self._pending_counts.get(key, 0) + counted

    def _seen(self, key: Key, body: Body | None) -> tuple[frozenset[str], int]:
        """The ids a Trigger's status remembers and its counter, read once per resourceVersion."""
        if body is None:
            return frozenset(), 0
        version = str(body["metadata"].get("resourceVersion"))
        cached = self._seen_cache.get(key)
        if cached is None or cached[0] != version:
            status = trigger_view(body, self._clock()).status
            cached = self._seen_cache[key] = (version, frozenset(status.recent_event_ids), status.event_counter)
        return cached[1], cached[2]

    def in_flight(self, key: Key, events: Sequence[Occurrence]) -> list[asyncio.Future[None]]:
        """The creates under way that hold one of ``events`` for the Trigger: wait for them before
        `tally` (a retry is a duplicate only of an event stored)."""
        flying = self._in_flight.get(key)
        if not flying:
            return []
        return list({id(f): f for e in events if (k := event_keys(e)) is not None and (f := flying.get(k[0]))}.values())

    async def store(self, items: Sequence[tuple[Key, TriggerSpec, Sequence[Occurrence], int, str | None]]
                    ) -> list[Exception | None]:
        """Returns once each item's events (its Trigger's, their count, its uid) are stored in an
        inbox object (the 202's promise), or could not be: per item, None or the error. Call it
        right after `tally`, with no await between (an id's create is then known to be under way).
        One call for a request's Triggers: one future each, not a task each (batches, issue 21)."""
        total = sum(len(events) for _, _, events, _, _ in items)
        if not total:
            return [None] * len(items)
        if total > MAX_WAITING_EVENTS:  # never fits, however empty the inbox: not worth a retry
            never = rule.InboxError(f"one request's events for its Triggers number {total}, above "
                                    f"{MAX_WAITING_EVENTS} the inbox holds: send fewer events per request")
            return [never if events else None for _, _, events, _, _ in items]
        if self._waiting_events + total > MAX_WAITING_EVENTS:  # the request whole, or none of it
            full = InboxFull(f"{self._waiting_events} events stored and not folded yet")
            return [full if events else None for _, _, events, _, _ in items]
        if self._writer is None:  # (it runs once we wait: after every item is queued)
            self._writer = asyncio.create_task(self._write_all(), name="events inbox")
        waits: list[asyncio.Future[None] | None] = []
        at = int(self._clock().timestamp())  # when they count (the entry's time)
        for key, spec, events, counted, uid in items:
            if not events:
                waits.append(None)
                continue
            own = _Own(tuple(rule.stored_keys(events)), counted, len(events))
            waiting = _Waiting(rule.Entry(key[0], key[1], at, tuple(events), uid,
                                          spec.schedule_config.group_by), spec, own)
            self._remember(key, own, 1)
            flying = self._in_flight.setdefault(key, {})
            for event_id in own.ids:
                flying[event_id] = waiting.done
            self._queue.append(waiting)
            waits.append(waiting.done)
        futures = [w for w in waits if w is not None]
        # In order, one at a time: they are answered in queue order, mostly by one create, so this
        # is one wait, not a callback on each of up to 1,000. asyncio.wait, not await: a sender
        # that goes away does not take its entries out of a create under way.
        for done in futures:
            if not done.done():
                await asyncio.wait((done,))
        return [None if w is None else _error_of(w) for w in waits]

    def _remember(self, key: Key, own: _Own, sign: int) -> None:
        """Adds (1) or takes back (-1) an entry's share of what this replica stored and has not folded
        (its ids are remembered apart, once stored: `_landed`)."""
        if sign < 0:
            pending = self._pending_ids.get(key)
            if pending is not None:
                pending.difference_update(own.ids)
                if not pending:
                    del self._pending_ids[key]
        self._pending_counts[key] = self._pending_counts.get(key, 0) + sign * own.counted
        if not self._pending_counts[key]:
            del self._pending_counts[key]
        self._waiting_events += sign * own.events

    def _landed(self, w: _Waiting, stored: bool) -> None:
        """An entry's create returned (``stored``) or failed: its ids leave the creates under way,
        and are remembered as stored when they are."""
        key = (w.entry.namespace, w.entry.trigger)
        flying = self._in_flight.get(key, {})
        for event_id in w.own.ids:
            if flying.get(event_id) is w.done:
                del flying[event_id]
        if not flying:
            self._in_flight.pop(key, None)
        if stored:
            self._pending_ids.setdefault(key, set()).update(w.own.ids)

    async def _write_all(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    await self._write(batch)
                except Exception as error:  # a defect, not the API's (_create answers those): said
                    log.exception("inbox entries not stored")  # aloud, its senders get 503, the writer goes on
                    self._failed([w for w in batch if not w.done.done()], error)
        finally:
            self._writer = None

    async def _write(self, batch: list[_Waiting]) -> None:
        kept: list[tuple[_Waiting, list[Any], rule.Entry]] = []
        for w in batch:  # each row read back as a list will read it: one that would not fails alone
            try:
                row = rule.entry_row(w.entry, w.spec)
                kept.append((w, row, rule.read_entry(row)))
            except rule.InboxError as error:
                log.error("an inbox entry for %s/%s not stored, it would not read back: %s",
                          w.entry.namespace, w.entry.trigger, error)
                self._failed([w], error)
            except Exception as error:  # a defect: said aloud, its sender alone gets 503
                log.exception("an inbox entry for %s/%s not stored", w.entry.namespace, w.entry.trigger)
                self._failed([w], error)
        if not kept:
            return
        try:
            whole = rule.one_object([row for _, row, _ in kept])  # the common case, one encoding for all
        except UnicodeEncodeError:  # a row no UTF-8 text holds: the rows one by one find it, alone
            whole = None
        if whole is not None:
            await self._create([(w, entry) for w, _, entry in kept], [(whole, len(kept))])
            return
        fitting: list[tuple[_Waiting, rule.Entry, str]] = []
        for w, row, entry in kept:
            text = rule.row_json(row)
            try:
                weight = rule.size_of(text)
            except UnicodeEncodeError as error:
                log.error("an inbox entry for %s/%s not stored: %s", w.entry.namespace, w.entry.trigger, error)
                self._failed([w], rule.InboxError(f"not UTF-8 text: {error.reason}"))
                continue
            if rule.fits(weight):
                fitting.append((w, entry, text))
            else:  # its sender alone is refused: the others' entries go on
                self._failed([w], rule.InboxError(rule.too_large(weight)))
        if fitting:
            await self._create([(w, entry) for w, entry, _ in fitting], rule.pack(text for _, _, text in fitting))

    async def _create(self, batch: list[tuple[_Waiting, rule.Entry]], datas: list[tuple[str, int]]) -> None:
        """One create per object, in order (the watermark's premise); the senders of an object whose
        create failed get the error (503), those of the objects created are answered."""
        start = 0
        for data, n in datas:
            taken, start = batch[start:start + n], start + n
            waiting = [w for w, _ in taken]
            self._seq += 1
            name = rule.object_name(self.incarnation, self._seq)
            body = rule.manifest(name, self.incarnation, data)
            # Folded from memory as a list reads it back: the entries read from the rows its text is.
            obj = rule.InboxObject(name, self.incarnation, self._seq, tuple(entry for _, entry in taken))
            try:
                await self._api.create_config_map(self._namespace, body)
            except Exception as error:
                log.warning("inbox object %s not stored: %s", name, error)
                self._failed(waiting, error)
                continue
            except BaseException as error:  # cancelled (shutdown): nobody is told it was stored
                self._failed([w for w, _ in batch[start - n:]], error)
                raise
            self._known[name] = _Known(obj, set(range(len(waiting))), tuple(w.own for w in waiting))
            for w in waiting:
                self._landed(w, stored=True)
                if not w.done.done():
                    w.done.set_result(None)
            self._kick.set()

    def _failed(self, rows: list[_Waiting], error: BaseException) -> None:
        for w in rows:
            self._remember((w.entry.namespace, w.entry.trigger), w.own, -1)
            self._landed(w, stored=False)
            if w.done.done():
                continue
            if isinstance(error, asyncio.CancelledError):
                w.done.cancel()
            else:  # without its traceback: its frames (a whole commit's text) would live until a collection
                w.done.set_exception(error.with_traceback(None))
                w.done.exception()  # retrieved: a sender gone away leaves no "never retrieved" warning

    # --- the folder --------------------------------------------------------------------------------

    async def run(self) -> None:
        """Folds for ever: when an object is stored, and every ``sweep_seconds`` with a fresh list
        of the inbox (every replica's objects: a crashed one's too); first thing, a list."""
        swept = -float("inf")
        while True:
            if self._more or time.monotonic() - swept >= self._sweep_seconds:
                swept = time.monotonic()
                await self.sweep()
            self._kick.clear()  # before the round: an object stored during it brings the next round at once
            try:
                await self.fold_once()
            except Exception:
                log.exception("inbox fold failed; tried again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), timeout=self._sweep_seconds)
            await asyncio.sleep(FOLD_EVERY_SECONDS)  # entries gather: one write per Trigger carries them all

    async def sweep(self) -> None:
        """Learns every inbox object there is (another replica's, a crashed one's)."""
        try:
            bodies = await self._api.list_config_maps(self._namespace, rule.LABEL)
        except Exception as error:
            log.warning("the event inbox could not be listed: %s", error)
            return
        listed: dict[str, tuple[str, int]] = {}
        for body in bodies:
            name = str((body.get("metadata") or {}).get("name", ""))
            parsed = rule.parse_name(name)
            if parsed is not None:
                listed[name] = parsed
        for name in [n for n, k in self._known.items() if not k.own and n not in listed]:
            del self._known[name]  # folded and deleted by another replica
        new = sorted((n for n in listed if n not in self._known), key=lambda n: (listed[n][1], n))
        # The lowest sequence numbers first, so what is taken of an incarnation is all it has below
        # (the watermark's premise: folding n passes over every m < n).
        taken = set(new[:MAX_SWEPT_OBJECTS])
        self._more = len(new) > MAX_SWEPT_OBJECTS
        for body in bodies:
            name = str((body.get("metadata") or {}).get("name", ""))
            if name not in taken:
                continue
            try:
                obj = rule.read_object(body)
            except rule.InboxError as error:
                log.error("unreadable inbox object left as it is: %s", error)
                continue
            self._known[obj.name] = _Known(obj, set(range(len(obj.entries))))
        self._listed = (time.monotonic(), frozenset(incarnation for incarnation, _ in listed.values()))

    async def fold_once(self) -> None:
        """Folds every entry known, one guarded write per Trigger, then deletes the objects done."""
        by_trigger: dict[Key, list[tuple[str, int, int]]] = {}  # -> (object name, seq, entry index)
        for name, known in self._known.items():
            for i in known.left:
                entry = known.obj.entries[i]
                by_trigger.setdefault((entry.namespace, entry.trigger), []).append((name, known.obj.seq, i))
        if not by_trigger:
            return
        keys = sorted(by_trigger)
        results = await asyncio.gather(*(self._fold(key, by_trigger[key]) for key in keys), return_exceptions=True)
        for key, result in zip(keys, results, strict=True):
            if isinstance(result, BaseException) and not isinstance(result, Exception):
                raise result  # cancelled: stop here, the objects stay for the next fold
            if isinstance(result, _Refused):
                refusals = self._refusals[key] = self._refusals.get(key, 0) + 1
                if refusals < MAX_REFUSALS:
                    log.warning("inbox entries of %s/%s refused (%d of %d): %s", *key, refusals, MAX_REFUSALS, result)
                    continue
                await self._drop(key, by_trigger[key], result)
            elif isinstance(result, BaseException):
                log.warning("inbox entries of %s/%s not folded yet: %s", *key, result)
                continue
            self._refusals.pop(key, None)
            for name, _, i in by_trigger[key]:
                known = self._known[name]
                known.left.discard(i)
                if known.own:
                    self._remember(key, known.own[i], -1)
        for name in [n for n, k in self._known.items() if not k.left]:
            try:
                await self._api.delete_config_map(self._namespace, name)
            except Exception as error:
                log.warning("folded inbox object %s not deleted yet: %s", name, error)
                continue
            del self._known[name]

    async def _drop(self, key: Key, refs: list[tuple[str, int, int]], refused: _Refused) -> None:
        """Gives up entries whose fold was refused `MAX_REFUSALS` times in a row: said in the log, a
        Warning Event on the Trigger and the metric; their objects can then go."""
        events = _occurrences([(n, 0, self._known[n].obj.entries[i]) for n, _, i in refs])
        log.error("inbox entries of %s/%s dropped after %d refused folds: %d event(s) acknowledged and not "
                  "counted: %s", *key, MAX_REFUSALS, events, refused)
        if self._metrics is not None:
            self._metrics.events("inbox_dropped", events)
        notice = Notice("Warning", "InboxEventsDropped",
                        f"{events} acknowledged event(s) were not counted: their fold into status was refused "
                        f"{MAX_REFUSALS} times: {refused}"[:1024])
        try:
            await self._api.post_event(refused.body, notice, self._clock())
        except Exception as error:
            log.warning("the Event on %s/%s could not be posted: %s", *key, error)

    async def _fold(self, key: Key, refs: list[tuple[str, int, int]]) -> None:
        async with self._folds:
            await self._fold_now(key, refs)

    async def _fold_now(self, key: Key, refs: list[tuple[str, int, int]]) -> None:
        entries = [(self._known[name].obj.incarnation, seq, self._known[name].obj.entries[i]) for name, seq, i in refs]
        try:
            body = self._latest(key) or await self._api.get_trigger(*key)
        except NotFound:
            log.info("inbox entries for %s/%s dropped: the Trigger is gone", *key)
            return
        for _ in range(MAX_ATTEMPTS):
            now = self._clock()
            view, spec = trigger_view(body, now), self._spec_of(body)
            if spec is None:
                log.warning("inbox entries for %s/%s dropped: it no longer is a valid event Trigger", *key)
                return
            if view.status_error is not None:
                raise _Refused(view.status_error, body)
            kept, stale = rule.for_trigger(entries, body["metadata"].get("uid"))
            if stale:
                log.info("%d inbox entries for %s/%s dropped: stored for a Trigger of its name since deleted",
                         stale, *key)
                if self._metrics is not None:
                    self._metrics.events("inbox_stale", _occurrences(entries) - _occurrences(kept))
                entries = kept
            listed = self._listed[1] | {self.incarnation} if self._listed is not None and \
                time.monotonic() - self._listed[0] < 60 else None
            try:
                status, _, folded = rule.fold(view.status, spec, entries, int(now.timestamp()), listed)
            except rule.InboxError as error:  # status.inboxFolded unreadable
                raise _Refused(str(error), body) from None
            if not folded:
                return
            followed = message_follows(view.status, status, spec)
            patch = {k: v for k, v in status_patch(view.raw_status, followed).items() if k in FOLD_KEYS}
            try:
                written = await self._api.patch_trigger_status(*key, body["metadata"]["resourceVersion"], patch)
            except Conflict:
                body = await self._api.get_trigger(*key)
                continue
            except NotFound:
                log.info("inbox entries for %s/%s dropped: the Trigger is gone", *key)
                return
            except Rejected as error:  # refused for good (too large, invalid): see MAX_REFUSALS
                raise _Refused(f"the status write was refused: {error}", body) from None
            self._committed(written)
            return
        raise RuntimeError(f"{MAX_ATTEMPTS} conflicting writes in a row")


def _error_of(done: asyncio.Future[None]) -> Exception | None:
    if done.cancelled():  # the writer was (shutdown): not stored, and the sender's request ends too
        raise asyncio.CancelledError()
    error = done.exception()
    return None if error is None else error if isinstance(error, Exception) else RuntimeError(str(error))


def _occurrences(entries: Sequence[tuple[str, int, rule.Entry]]) -> int:
    return sum(e.count for _, _, entry in entries for e in entry.events)
