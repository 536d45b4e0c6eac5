"""Which event Triggers an event counts for, and counting it into status exactly once. Pure.

An event counts for an event Trigger when its ``type`` is the Trigger's ``eventType``, its
``collectionid`` is the Trigger's ``collectionId`` (when set) and every filter holds. A delivery
is counted once per (source, id): status keeps the hashes of the last `RECENT_EVENT_IDS` pairs
counted, so a retry with the same pair within that many later events is acknowledged and not
counted, across restarts and replicas (the hashes live in the Trigger's status, written in the
same guarded write as the count).

With ``windowSeconds``, only the events of the last N seconds count: they are kept in buckets of
N/60 seconds (at least 1 s), so the window is exact to 1/60 of its length and status stays small.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, replace

from trigger_operator.events.cloudevents import Occurrence
from trigger_operator.model.filters import matches
from trigger_operator.model.spec import TriggerSpec, TriggerType
from trigger_operator.model.status import RECENT_EVENT_IDS, TriggerStatus

WINDOW_BUCKETS = 60


@dataclass(frozen=True)
class Tally:
    counted: int = 0  # occurrences added to the counter
    duplicates: int = 0  # events not counted again (their source and id were counted before)


def applies_to(spec: TriggerSpec, event: Occurrence) -> bool:
    config = spec.schedule_config
    return (spec.trigger_type is TriggerType.EVENT and event.type == config.event_type
            and (config.collection_id is None or event.collection_id == config.collection_id)
            and matches(config.filters or [], event.attributes))


def event_key(event: Occurrence) -> str | None:
    if event.id is None:
        return None
    return hashlib.sha256(f"{event.source}\0{event.id}".encode()).hexdigest()[:16]


def bucket_width(window_seconds: int) -> int:
    return max(1, window_seconds // WINDOW_BUCKETS)


def current_window(status: TriggerStatus, spec: TriggerSpec, now: dt.datetime) -> tuple[tuple[int, int], ...]:
    """The buckets still inside the window at ``now``."""
    window = spec.schedule_config.window_seconds
    if window is None:
        return ()
    oldest = int(now.timestamp()) - window
    return tuple(b for b in status.event_window if b[0] + bucket_width(window) > oldest)


def count_events(status: TriggerStatus, spec: TriggerSpec, events: Iterable[Occurrence],
                 now: dt.datetime) -> tuple[TriggerStatus, Tally]:
    """``status`` with ``events`` counted (they already apply to the Trigger)."""
    ids = list(status.recent_event_ids)
    seen = set(ids)
    counted = duplicates = 0
    for event in events:
        key = event_key(event)
        if key is not None and key in seen:
            duplicates += 1
            continue
        if key is not None:
            ids.append(key)
            seen.add(key)
        counted += event.count
    updated = replace(status, recent_event_ids=tuple(ids[-RECENT_EVENT_IDS:]))
    window = spec.schedule_config.window_seconds
    if window is None:
        return replace(updated, event_counter=status.event_counter + counted), Tally(counted, duplicates)
    buckets = list(current_window(status, spec, now))
    start = int(now.timestamp()) // bucket_width(window) * bucket_width(window)
    if counted:
        if buckets and buckets[-1][0] == start:
            buckets[-1] = (start, buckets[-1][1] + counted)
        else:
            buckets.append((start, counted))
    return (replace(updated, event_window=tuple(buckets), event_counter=sum(n for _, n in buckets)),
            Tally(counted, duplicates))


def refresh_window(status: TriggerStatus, spec: TriggerSpec, now: dt.datetime) -> TriggerStatus:
    """Drops the buckets that left the window; the counter follows."""
    if spec.schedule_config.window_seconds is None:
        return status if not status.event_window else replace(status, event_window=())
    buckets = current_window(status, spec, now)
    return replace(status, event_window=buckets, event_counter=sum(n for _, n in buckets))


def next_expiry(status: TriggerStatus, spec: TriggerSpec) -> dt.datetime | None:
    """When the oldest bucket leaves the window (the counter drops then)."""
    window = spec.schedule_config.window_seconds
    if window is None or not status.event_window:
        return None
    return dt.datetime.fromtimestamp(status.event_window[0][0] + bucket_width(window) + window, dt.UTC)


def spend_threshold(status: TriggerStatus, spec: TriggerSpec) -> TriggerStatus:
    """The counter after a run fired: the threshold is used up, the surplus kept (oldest events first)."""
    threshold = spec.schedule_config.event_threshold or 1
    if not status.event_window:
        return replace(status, event_counter=max(0, status.event_counter - threshold))
    left, buckets = threshold, []
    for start, n in status.event_window:
        used = min(left, n)
        left -= used
        if n - used:
            buckets.append((start, n - used))
    return replace(status, event_window=tuple(buckets), event_counter=sum(n for _, n in buckets))
