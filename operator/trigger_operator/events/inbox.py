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
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from trigger_operator.events.cloudevents import Occurrence
from trigger_operator.events.counting import Tally, count_events, event_keys
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


class InboxError(ValueError):
    """An inbox object that cannot be read (named, with the field at fault)."""


@dataclass(frozen=True)
class Entry:
    """A Trigger's events of one group commit."""

    namespace: str
    trigger: str
    at: int  # unix s: when they were stored (the time they count at)
    events: tuple[Occurrence, ...]


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


def _event_row(spec_group: str | None, event: Occurrence) -> list[Any]:
    keys = event_keys(event)
    group = event.attributes.get(spec_group) if spec_group else None
    return [keys[0] if keys else None, event.count, group]


def entry_json(entry: Entry, group_by: str | None) -> str:
    return json.dumps([entry.namespace, entry.trigger, entry.at,
                       [_event_row(group_by, e) for e in entry.events]], separators=(",", ":"))


def pack(rows: Iterable[str], limit: int = MAX_OBJECT_BYTES) -> list[tuple[str, int]]:
    """Entries (`entry_json`), in order, as the data of as few objects as hold them, each under
    ``limit`` bytes, with how many entries each holds. An entry larger than the limit alone is
    refused (`InboxError`): it could never be stored."""
    objects: list[list[str]] = [[]]
    size = 2
    for row in rows:
        if len(row) + 3 > limit:
            raise InboxError(f"one Trigger's share of the commit is {len(row)} bytes, above {limit}")
        if objects[-1] and size + len(row) + 1 > limit:
            objects.append([])
            size = 2
        objects[-1].append(row)
        size += len(row) + 1
    return [("[" + ",".join(rows_) + "]", len(rows_)) for rows_ in objects if rows_]


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
        entries = tuple(Entry(str(ns), str(trigger), int(at), tuple(
            Occurrence(type="", source="", id=None, count=int(count), key=None if key is None else str(key),
                       attributes={} if group is None else {_GROUP: str(group)})
            for key, count, group in events)) for ns, trigger, at, events in rows)
    except (KeyError, TypeError, ValueError) as error:
        raise InboxError(f"{name}: data.{DATA_KEY}: {type(error).__name__}: {error}") from None
    return InboxObject(name, parsed[0], parsed[1], entries)


def with_group(event: Occurrence, group_by: str | None) -> Occurrence:
    """An event read back, its groupBy value under the attribute the Trigger groups by now."""
    value = event.attributes.get(_GROUP)
    return replace(event, attributes={group_by: value} if group_by and value is not None else {})


def fold(status: TriggerStatus, spec: TriggerSpec, entries: Iterable[tuple[str, int, Entry]], now: int,
         listed: frozenset[str] | None = None) -> tuple[TriggerStatus, Tally, int]:
    """``status`` with the Trigger's inbox entries ((incarnation, seq, entry), any order) counted,
    each at the time it was stored, those at or under the watermark passed over; the tally of what
    counted, and how many entries were folded now. ``listed``: the incarnations with objects in a
    list of the inbox taken within the last minute (None: no such list), for pruning marks."""
    marks: dict[str, list[int]] = {k: [int(v[0]), int(v[1])] for k, v in (status.inbox_folded or {}).items()}
    counted = duplicates = ungrouped = refused = folded = 0
    group_by = spec.schedule_config.group_by
    before = {k: v[0] for k, v in marks.items()}  # an object holds many entries of a Trigger: all pass or none
    for incarnation, seq, entry in sorted(entries, key=lambda e: (e[0], e[1])):
        if seq <= before.get(incarnation, 0):
            continue  # folded before (a crash before the delete, another folder)
        events = [with_group(e, group_by) for e in entry.events]
        status, tally = count_events(status, spec, events, dt.datetime.fromtimestamp(entry.at, dt.UTC))
        counted += tally.counted
        duplicates += tally.duplicates
        ungrouped += tally.ungrouped
        refused += tally.refused
        marks[incarnation] = [seq, now]
        folded += 1
    if listed is not None:
        marks = {k: v for k, v in marks.items() if k in listed or v[1] >= now - MARK_KEPT_SECONDS}
    return replace(status, inbox_folded=marks or None), Tally(counted, duplicates, ungrouped, refused), folded


def unfolded(status: TriggerStatus, incarnation: str, seq: int) -> bool:
    return seq > int(((status.inbox_folded or {}).get(incarnation) or [0])[0])


def stored_keys(events: Sequence[Occurrence]) -> list[str]:
    return [k[0] for e in events if (k := event_keys(e)) is not None]
