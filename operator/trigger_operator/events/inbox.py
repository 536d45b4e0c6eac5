"""The shared event inbox: one write acknowledges a group commit across Triggers. Pure.
docs/events.md, "The shared inbox".

A replica's group commit holds the events waiting for any of its Triggers, of any namespace; it is
stored by ONE create of an inbox object (a ConfigMap in the operator's own namespace, named
`object_name`), and the senders get their 202 once that create returned. Each object holds
entries: one per Trigger, with the time the events were stored and, per event, its remembered key
(11 characters, `counting.event_keys`; None without an id), its count and its groupBy value.

The fold adds a Trigger's entries to its status in one guarded write (`fold`). It is idempotent
by a watermark, not by event ids: ``status.inboxFolded`` keeps, per writing replica incarnation,
the sequence number of the last object folded into the Trigger, written in the same guarded write
as the counts. A replica creates its objects one after the other (1, 2, 3...), so:

- a fold of object n for a Trigger also folds every unfolded object m < n of that incarnation
  holding an entry for it: the folder's own objects are in its memory, in order; a list of the
  inbox is one snapshot, which holds m if it holds n, unless m was deleted, which happens only
  once m was folded into each of its Triggers (so the watermark is at least m already);
- so an entry is folded at most once: after a crash between the fold and the object's delete, or
  with two folders at once (the guarded write lets one win; the other re-reads the watermark),
  whatever number of event ids passed through the Trigger's 1,000 remembered ones meanwhile.

Event ids still de-duplicate across objects (a retry stored twice, on two replicas), as before.
An event counts at the time it was stored (its entry's), so windows and groupBy buckets are those
of the 202, however late the fold.

What is decided when (docs/events.md, "The shared inbox"): which Triggers an event counts for
(eventType, collectionId, filters) is decided at store time, the 202 says so; its groupBy key too:
the entry keeps `keys.key_of`'s value (at most 64 characters) and the attribute it was read from.
The fold counts with the spec of fold time (threshold, window, maxKeys): a key stored under another
groupBy attribute than the Trigger's now counts for no key (ungrouped), never as a value of the new
attribute. An entry carries its Trigger's uid: one stored for a Trigger since deleted and re-created
under the same name is dropped, not counted into its namesake (`for_trigger`).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from trigger_operator.events.cloudevents import MAX_COUNT, Occurrence
from trigger_operator.events.counting import Tally, count_events, event_keys
from trigger_operator.events.keys import KEY_MAX_CHARS, key_of
from trigger_operator.model.spec import TriggerSpec
from trigger_operator.model.status import TriggerStatus

LABEL = "trigger-operator.io/event-inbox"  # on every inbox object; its value: the writer's incarnation
DATA_KEY = "entries"
# A ConfigMap holds at most 1 MiB; a commit larger than this is split over several objects.
MAX_OBJECT_BYTES = 900_000
# A watermark not advanced for this long, of an incarnation with no object left in a recent list of
# the inbox, leaves status: any object it could still cover was created before it, so before the list.
MARK_KEPT_SECONDS = 86_400
_GROUP = "\0group"  # where a read-back event keeps its groupBy value until `with_group` names it
_NAME = re.compile(r"events-inbox-([0-9a-f]{12})-([0-9]{10})")
_KEY = re.compile(r"[A-Za-z0-9_-]{10}[AEIMQUYcgkosw048]")  # 11 base64url characters: exactly 64 bits
NAME_MAX_CHARS = 253  # a namespace's, a Trigger's name


class InboxError(ValueError):
    """An inbox object that cannot be read (named, with the field at fault)."""


@dataclass(frozen=True)
class Entry:
    """A Trigger's events of one group commit."""

    namespace: str
    trigger: str
    at: int  # unix s: when they were stored (the time they count at)
    events: tuple[Occurrence, ...]
    uid: str | None = None  # the Trigger's metadata.uid when stored (None: not known, not checked)
    group_by: str | None = None  # the attribute the groupBy values were read from (None: no groupBy)


@dataclass(frozen=True)
class InboxObject:
    name: str
    incarnation: str
    seq: int
    entries: tuple[Entry, ...]


def object_name(incarnation: str, seq: int) -> str:
    return f"events-inbox-{incarnation}-{seq:010d}"


def parse_name(name: str) -> tuple[str, int] | None:
    found = _NAME.fullmatch(name)
    return (found.group(1), int(found.group(2))) if found else None


def _event_row(spec: TriggerSpec, event: Occurrence) -> list[Any]:
    if event.key is not None:  # read back already: its value is stored under the _GROUP attribute
        return [event.key, event.count, event.attributes.get(_GROUP)]
    keys = event_keys(event)
    return [keys[0] if keys else None, event.count, key_of(spec, event)]  # bounded: what counting keys by


def entry_row(entry: Entry, spec: TriggerSpec) -> list[Any]:
    """An entry as an object stores it: its events' keys, counts and groupBy keys (`key_of`'s, at
    most 64 characters), the Trigger's uid and the groupBy attribute; strings, whole numbers and
    nulls alone, so `row_json`'s text reads back as this very value (`read_entry`)."""
    return [entry.namespace, entry.trigger, entry.at, [_event_row(spec, e) for e in entry.events],
            entry.uid, entry.group_by]


def row_json(row: list[Any]) -> str:
    return json.dumps(row, separators=(",", ":"), ensure_ascii=False)


def entry_json(entry: Entry, spec: TriggerSpec) -> str:
    return row_json(entry_row(entry, spec))


def size_of(row: str) -> int:
    """What an entry weighs in an object: UTF-8 bytes (a ConfigMap's bound is in bytes)."""
    return len(row.encode())


def pack(rows: Iterable[str], limit: int | None = None) -> list[tuple[str, int]]:
    """Entries (`entry_json`), in order, as the data of as few objects as hold them, each under
    ``limit`` bytes, with how many entries each holds. An entry larger than the limit alone is
    refused (`InboxError`): it could never be stored."""
    limit = limit or MAX_OBJECT_BYTES
    objects: list[list[str]] = [[]]
    size = 2
    for row in rows:
        weight = size_of(row)
        if not fits(weight, limit):
            raise InboxError(too_large(weight, limit))
        if objects[-1] and size + weight + 1 > limit:
            objects.append([])
            size = 2
        objects[-1].append(row)
        size += weight + 1
    return [("[" + ",".join(rows_) + "]", len(rows_)) for rows_ in objects if rows_]


def one_object(rows: list[list[Any]], limit: int | None = None) -> str | None:
    """Every entry's row in one object's data, the text `pack` makes of them when it makes one
    object; None when they take ``limit`` bytes or more (then `pack` splits them)."""
    data, limit = row_json(rows), limit or MAX_OBJECT_BYTES
    # As pack counts (the data and 1); no text has fewer bytes than characters: no copy for that.
    return data if len(data) < limit and size_of(data) < limit else None


def fits(weight: int, limit: int | None = None) -> bool:
    """Whether an entry of ``weight`` bytes fits an object alone."""
    return weight + 3 <= (limit or MAX_OBJECT_BYTES)


def too_large(weight: int, limit: int | None = None) -> str:
    limit = limit or MAX_OBJECT_BYTES
    return (f"one request's events for one Trigger take {weight} bytes in the event inbox, above {limit}, "
            "the bound of an inbox object: send fewer events per request")


def manifest(name: str, incarnation: str, data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "labels": {LABEL: incarnation}}, "data": {DATA_KEY: data}}


def read_object(body: Mapping[str, Any]) -> InboxObject:
    """An inbox object as listed; `InboxError` names what is wrong."""
    name = str((body.get("metadata") or {}).get("name", ""))
    parsed = parse_name(name)
    if parsed is None:
        raise InboxError(f"metadata.name {name!r}: not an inbox object's name")
    try:
        rows = json.loads((body.get("data") or {})[DATA_KEY])
    except (KeyError, TypeError, ValueError) as error:
        raise InboxError(f"{name}: data.{DATA_KEY}: {type(error).__name__}: {error}") from None
    if not isinstance(rows, list):
        raise InboxError(f"{name}: data.{DATA_KEY}: not a list of entries")
    entries = []
    for i, row in enumerate(rows):
        try:
            entries.append(read_entry(row))
        except InboxError as error:  # the place is spelled only for an error: this runs per entry
            raise InboxError(f"{name}: data.{DATA_KEY}[{i}]: {error}") from None
    return InboxObject(name, parsed[0], parsed[1], tuple(entries))


def read_entry(row: Any) -> Entry:
    """One stored entry, every value checked: a bad one is named (its place in the object left to
    the caller), never met by the fold."""
    if not isinstance(row, list) or len(row) not in (4, 6):
        raise InboxError("not [namespace, trigger, at, events, uid, groupBy]")
    namespace, trigger, at, events, *rest = row
    uid, group_by = rest or (None, None)
    for field, value in (("namespace", namespace), ("trigger", trigger)):
        if not isinstance(value, str) or not 0 < len(value) <= NAME_MAX_CHARS:
            raise InboxError(f"{field}: not a name")
    if not _is_int(at) or at < 0:
        raise InboxError("at: not a unix time")
    for field, value in (("uid", uid), ("groupBy", group_by)):
        if value is not None and (not isinstance(value, str) or not 0 < len(value) <= NAME_MAX_CHARS):
            raise InboxError(f"{field}: not a string of at most {NAME_MAX_CHARS} characters")
    if not isinstance(events, list):
        raise InboxError("events: not a list")
    read = []
    for j, event in enumerate(events):
        try:
            read.append(_read_event(event))
        except InboxError as error:
            raise InboxError(f"events[{j}]: {error}") from None
    return Entry(namespace, trigger, at, tuple(read), uid, group_by)


def _read_event(event: Any) -> Occurrence:
    if not isinstance(event, list) or len(event) != 3:
        raise InboxError("not [key, count, group]")
    key, count, group = event
    if key is not None and (not isinstance(key, str) or not _KEY.fullmatch(key)):
        raise InboxError("key: not 11 base64url characters")
    if not _is_int(count) or not 1 <= count <= MAX_COUNT:
        raise InboxError(f"count: not a whole number from 1 to {MAX_COUNT}")
    if group is not None and (not isinstance(group, str) or not 0 < len(group) <= KEY_MAX_CHARS):
        raise InboxError(f"group: not a string of at most {KEY_MAX_CHARS} characters")
    return Occurrence(type="", source="", id=None, count=count, key=key,
                      attributes={} if group is None else {_GROUP: group})


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_marks(status: TriggerStatus) -> dict[str, list[int]]:
    """``status.inboxFolded``, checked: {incarnation: [seq, unix s of the fold]}; `InboxError` names it."""
    marks: dict[str, list[int]] = {}
    for incarnation, mark in (status.inbox_folded or {}).items():
        if not isinstance(mark, list) or len(mark) != 2 or not all(_is_int(v) and v >= 0 for v in mark):
            raise InboxError(f"status.inboxFolded[{incarnation!r}]: not [sequence number, unix time]")
        marks[str(incarnation)] = [int(mark[0]), int(mark[1])]
    return marks


def for_trigger(entries: Iterable[tuple[str, int, Entry]], uid: str | None) -> tuple[list[tuple[str, int, Entry]], int]:
    """The entries stored for the Trigger of ``uid``, and how many were stored for another Trigger of
    its name (deleted and re-created since): those are dropped, not counted into their namesake."""
    kept, stale = [], 0
    for item in entries:
        if uid is not None and item[2].uid is not None and item[2].uid != uid:
            stale += 1
        else:
            kept.append(item)
    return kept, stale


def with_group(event: Occurrence, group_by: str | None, stored_by: str | None = None) -> Occurrence:
    """An event read back, its groupBy key under the attribute the Trigger groups by now, when it was
    read from that one (``stored_by``; None: an entry that does not say, taken as the same); a key of
    another attribute counts for no key."""
    value = event.attributes.get(_GROUP)
    same = stored_by is None or stored_by == group_by
    attributes = {group_by: value} if group_by and value is not None and same else {}
    return event if attributes == event.attributes else replace(event, attributes=attributes)  # (most: no copy)


def fold(status: TriggerStatus, spec: TriggerSpec, entries: Iterable[tuple[str, int, Entry]], now: int,
         listed: frozenset[str] | None = None) -> tuple[TriggerStatus, Tally, int]:
    """``status`` with the Trigger's inbox entries ((incarnation, seq, entry), any order) counted,
    each at the time it was stored, those at or under the watermark passed over; the tally of what
    counted, and how many entries were folded now. ``listed``: the incarnations with objects in a
    list of the inbox taken within the last minute (None: no such list), for pruning marks."""
    marks = read_marks(status)
    counted = duplicates = ungrouped = refused = folded = 0
    group_by = spec.schedule_config.group_by
    before = {k: v[0] for k, v in marks.items()}  # an object holds many entries of a Trigger: all pass or none
    # Entries stored in the same second are counted in one pass, as one delivery of all their events
    # would be: a pass copies the Trigger's recent ids (up to 1,000), so a pass per entry made the
    # fold most of the operator's CPU at 1,200 single events a second (issue 21).
    fresh = [item for item in sorted(entries, key=lambda e: (e[0], e[1]))
             if item[1] > before.get(item[0], 0)]  # not folded before (a crash before the delete, another folder)
    for at, run in itertools.groupby(fresh, key=lambda item: item[2].at):
        stored = list(run)
        events = [with_group(e, group_by, entry.group_by) for _, _, entry in stored for e in entry.events]
        status, tally = count_events(status, spec, events, dt.datetime.fromtimestamp(at, dt.UTC))
        counted += tally.counted
        duplicates += tally.duplicates
        ungrouped += tally.ungrouped
        refused += tally.refused
        for incarnation, seq, _ in stored:
            marks[incarnation] = [seq, now]
        folded += len(stored)
    if listed is not None:
        marks = {k: v for k, v in marks.items() if k in listed or v[1] >= now - MARK_KEPT_SECONDS}
    return replace(status, inbox_folded=marks or None), Tally(counted, duplicates, ungrouped, refused), folded


def unfolded(status: TriggerStatus, incarnation: str, seq: int) -> bool:
    return seq > read_marks(status).get(incarnation, [0])[0]


def stored_keys(events: Sequence[Occurrence]) -> list[str]:
    return [k[0] for e in events if (k := event_keys(e)) is not None]
