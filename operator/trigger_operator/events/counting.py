"""Which event Triggers an event counts for, and counting it into status exactly once. Pure.

An event counts for an event Trigger when its ``type`` is the Trigger's ``eventType``, its
``collectionid`` is the Trigger's ``collectionId`` (when set) and every filter holds. A delivery
is counted once per (source, id): status keeps the hashes of the last `RECENT_EVENT_IDS` pairs
counted, so a retry with the same pair within that many later events is acknowledged and not
counted, across restarts and replicas (the hashes live in the Trigger's status, written in the
same guarded write as the count).

With ``windowSeconds``, only the events of the last N seconds count: they are kept in buckets of
N/60 seconds (at least 1 s), so the window is exact to 1/60 of its length and status stays small.

With ``groupBy`` each key counts on its own (events/keys.py); with ``absence`` the events of each
tumbling window are counted for its verdict (events/absence.py). De-duplication by (source, id)
stays the Trigger's, across its keys.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, replace

from trigger_operator.events import absence, keys
from trigger_operator.events.cloudevents import Occurrence
from trigger_operator.model.filters import matches
from trigger_operator.model.spec import TriggerSpec, TriggerType
from trigger_operator.model.status import RECENT_EVENT_IDS, TriggerStatus, cut

WINDOW_BUCKETS = 60


@dataclass(frozen=True)
class Tally:
    counted: int = 0  # occurrences added to the counter
    duplicates: int = 0  # events not counted again (their source and id were counted before)
    ungrouped: int = 0  # groupBy: occurrences without the key attribute, counted for no key
    refused: int = 0  # groupBy: occurrences of new keys beyond maxKeys, not counted (nor remembered)


def applies_to(spec: TriggerSpec, event: Occurrence) -> bool:
    config = spec.schedule_config
    return (spec.trigger_type is TriggerType.EVENT and event.type == config.event_type
            and (config.collection_id is None or event.collection_id == config.collection_id)
            and matches(config.filters or [], event.attributes))


def event_keys(event: Occurrence) -> tuple[str, str] | None:
    """The key status remembers for (source, id), and its former spelling (or None without an id):
    `Occurrence.keys`, the rule's home, hashed once per event however many steps ask."""
    return event.keys


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
    config = spec.schedule_config
    grouped = _Grouped(status, spec, now) if config.group_by is not None else None
    a = absence.anchor(status)
    for event in events:
        both = event_keys(event)
        key = None if both is None else both[0]
        if both is not None and (both[0] in seen or both[1] in seen):
            duplicates += 1
            continue
        if config.absence is not None and a is None:
            continue  # not Active yet: no window to count in (events/absence.py)
        if grouped is not None and not grouped.add(event):
            continue
        if key is not None:
            ids.append(key)
            seen.add(key)
        counted += event.count
    updated = replace(status, recent_event_ids=tuple(ids[-RECENT_EVENT_IDS:]))
    if grouped is not None:
        return grouped.into(updated), Tally(counted, duplicates, grouped.ungrouped, grouped.refused)
    if config.absence is not None:
        if not counted or a is None:
            return updated, Tally(counted, duplicates)
        start = absence.window_start(a, config.absence.within_seconds, int(now.timestamp()))
        # The open window and the last closed one: older ones are never judged (events/absence.py).
        kept = [(s, n) for s, n in status.event_window if s != start and s >= start - config.absence.within_seconds]
        here = absence.count_in(status.event_window, start) + counted
        return (replace(updated, event_window=tuple(sorted((*kept, (start, here)))), event_counter=here),
                Tally(counted, duplicates))
    window = spec.schedule_config.window_seconds
    if window is None:
        return replace(updated, event_counter=status.event_counter + counted), Tally(counted, duplicates)
    buckets = list(current_window(status, spec, now))
    start = int(now.timestamp()) // bucket_width(window) * bucket_width(window)
    if counted:  # into its bucket, kept in order: an inbox fold counts at the time stored, maybe before the last
        by_start: dict[int, int] = {}
        for s, n in buckets:  # summed: an older operator appended a repeated start after a clock step
            by_start[s] = by_start.get(s, 0) + n
        by_start[start] = by_start.get(start, 0) + counted
        buckets = sorted(by_start.items())
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


class _Grouped:
    """Counting with groupBy: the keys of ``status`` as they take one event after another."""

    def __init__(self, status: TriggerStatus, spec: TriggerSpec, now: dt.datetime) -> None:
        self.spec, self.now = spec, int(now.timestamp())
        config = spec.schedule_config
        self.window = config.window_seconds
        self.keys = {k: keys.refreshed(s, self.window, self.now)
                     for k, s in keys.read_keys(status.event_key_state).items()}
        self.summary = dict(status.event_keys or {})
        self.ungrouped = self.refused = 0
        a = absence.anchor(status)
        if config.absence is not None and a is not None:  # one bucket per tumbling window
            self.width = config.absence.within_seconds
            self.start = absence.window_start(a, self.width, self.now)
        else:
            self.width = keys.key_bucket_width(self.window) if self.window else 1
            self.start = self.now // self.width * self.width

    def add(self, event: Occurrence) -> bool:
        """Counts ``event`` for its key; False when it counts for none (no key, or the bound)."""
        key = keys.key_of(self.spec, event)
        if key is None:
            self.ungrouped += event.count
            return False
        state = self.keys.get(key)
        if state is None:
            if len(self.keys) >= keys.max_keys(self.spec):
                self.refused += event.count
                return False
            state = keys.KeyState(key)
        if self.window is not None or self.spec.schedule_config.absence is not None:
            state = keys.add(state, self.start, self.width, event.count, keys.row_buckets(self.spec))
            current = state.counts[(self.start - state.base) // self.width] if state.counts else 0
            state = replace(state, counter=current if self.spec.schedule_config.absence else sum(state.counts))
        else:
            state = replace(state, counter=min(state.counter + event.count, keys.COUNT_MAX))
        self.keys[key] = state
        return True

    def into(self, status: TriggerStatus) -> TriggerStatus:
        refused = int(self.summary.get("refused", 0)) + self.refused
        noticed = int(self.summary.get("refusedNoticed", 0))
        return replace(status, event_key_state=keys.rows(self.keys), event_window=(),
                       event_counter=sum(s.counter for s in self.keys.values()),
                       event_keys=keys.summary(self.keys, refused, noticed))


def message_follows(before: TriggerStatus, after: TriggerStatus, spec: TriggerSpec) -> TriggerStatus:
    """``after`` with its Ready message (and status.message) restated for its counts, when they state
    ``before``'s counts word for word (an Active event Trigger's message, `event_message`).

    The count's own guarded write carries the message that states it, so the scheduler's next pass
    finds nothing to change: without this every counted event cost a second status write (the
    message alone), which also conflicted with the next count's write. Any other message (another
    phase or reason) is the scheduler's to write and is left as it is."""
    old, new = cut(event_message(before, spec)), cut(event_message(after, spec))  # as status stores them
    if old == new:
        return after
    ready = next((c for c in after.conditions if c.type == "Ready"), None)
    if ready is None or ready.message != old or after.message != old:
        return after
    conditions = tuple(replace(c, message=new) if c is ready else c for c in after.conditions)
    return replace(after, conditions=conditions, message=new)


def event_message(status: TriggerStatus, spec: TriggerSpec) -> str:
    """The Ready message of an Active event Trigger (core/ready.py): what it counts towards, and,
    with groupBy, how many keys it follows and whether maxKeys refused new ones."""
    config = spec.schedule_config
    if config.absence is not None:
        last = status.last_absence or {}
        message = (f"runs when fewer than {config.absence.fewer_than} {config.event_type} events arrive in a "
                   f"window of {config.absence.within_seconds} s; {status.event_counter} in the current one")
        if last:
            message += (f"; last window ({last.get('windowEnd')}): {last.get('count')}, "
                        + ("fired" if last.get("fired") else "not fired"))
    else:
        message = (f"{status.event_counter} of {config.event_threshold} {config.event_type} events counted"
                   + (f" in the last {config.window_seconds} s" if config.window_seconds else ""))
    if config.group_by is not None:
        summary = status.event_keys or {}
        total, bound = int(summary.get("total", 0)), keys.max_keys(spec)
        if config.absence is None:
            message = (f"{status.event_counter} {config.event_type} events counted over {total} {config.group_by} "
                       f"key(s); each key runs at {config.event_threshold}"
                       + (f" in the last {config.window_seconds} s" if config.window_seconds else ""))
        else:
            message += f"; {total} {config.group_by} key(s) followed, each judged on its own"
        if total >= bound and summary.get("refused"):
            message += (f"; maxKeys ({bound}) reached: {summary['refused']} event(s) of new keys refused "
                        "(raise spec.scheduleConfig.maxKeys, at most 1000)")
    return message
