"""Per-key counting (``scheduleConfig.groupBy``): each value of one CloudEvents attribute is a key
with its own counter, window, cooldown and runs, as Prefect's ``for_each`` and Dagster's
partitions. Pure. docs/events.md, "Per-key counting".

Decisions:

- The key is the event's attribute (a CloudEvents attribute or extension) named by groupBy, kept
  as-is (the Job is told it) and at most `KEY_MAX_CHARS` characters: a longer value, or an event
  without the attribute, counts for no key (``ungrouped`` in the answer and the metrics).
- At most ``maxKeys`` keys (default 100, at most 1,000) are followed at once. A new key's events
  beyond it are refused for this Trigger alone (``refused``; the other Triggers count them), and
  the Ready message and a Warning Event say the bound was reached. A key leaves status when it has
  nothing counted and no cooldown running (threshold Triggers; its runs going hold their key; an absence Trigger
  follows every key it has seen), which frees its place.
- Status stays small: one compact row per key, [key, counter, firings, lastCooldownAt (unix s, 0:
  none), base (unix s), counts...], the counts being the key's window buckets from ``base`` on, in
  steps of `key_bucket_width` (12 buckets per window: exact to 1/12 of it); without a window, no
  counts. People read ``status.eventKeys``: the number of keys and the top `TOP_KEYS` by counter.
  With 1,000 keys of 64 characters and full windows the rows stay within STATUS_MAX_BYTES
  (tests/unit/test_event_keys.py computes it).
- Counts per key saturate at `COUNT_MAX` (a key's counter is a digit string in status; a threshold
  or absence.fewerThan above it is refused with groupBy: model/spec.py, ``KEY_COUNT_MAX``).
- A row holds at most `ROW_BUCKETS_MAX` buckets (absence: `ABSENCE_ROW_BUCKETS`), the newest,
  whatever the Trigger's phase, and a change to it costs O(its buckets), never O(time passed since
  its base).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from trigger_operator.events.cloudevents import Occurrence
from trigger_operator.model.spec import KEY_COUNT_MAX, MAX_KEYS_DEFAULT, TriggerSpec

KEY_MAX_CHARS = 64  # a key's value as kept: 1,000 keys with their windows must fit STATUS_MAX_BYTES
KEY_WINDOW_BUCKETS = 12  # a key's window, in buckets of 1/12 of it
TOP_KEYS = 10  # the keys status.eventKeys names, by counter
COUNT_MAX = KEY_COUNT_MAX  # a key's counter and each bucket saturate here (the spec's bound: model/spec.py)
# A row keeps at most this many buckets, the newest. A threshold window spans ceil(W / width) + 1
# buckets of `key_bucket_width`: at most 24 (W of 12 to 23 s, buckets of 1 s), usually 13. An absence
# row needs the open window and the last closed one (an outage judges only the last closed window).
# Older buckets are never read again, so nothing piles up whatever the reconciler does meanwhile.
ROW_BUCKETS_MAX = 2 * KEY_WINDOW_BUCKETS
ABSENCE_ROW_BUCKETS = 2


@dataclass(frozen=True)
class KeyState:
    """One key's share of the Trigger's counting."""

    key: str
    counter: int = 0  # events counted towards the key's next run (absence: in its open window)
    firings: int = 0  # runs fired for the key
    last_cooldown_at: int = 0  # unix s of the key's last run (its cooldown starts there); 0: none
    base: int = 0  # unix s: the start of the first bucket in ``counts``
    counts: tuple[int, ...] = ()  # events per bucket (threshold window) or per window (absence)

    def row(self) -> tuple[str | int, ...]:
        tail = (self.base, *self.counts) if self.counts else ()
        return (self.key, self.counter, self.firings, self.last_cooldown_at, *tail)

    @classmethod
    def from_row(cls, row: tuple[str | int, ...]) -> KeyState:
        key, counter, firings, cooldown, *rest = row
        base, counts = (int(rest[0]), tuple(int(n) for n in rest[1:])) if rest else (0, ())
        return cls(str(key), int(counter), int(firings), int(cooldown), base, counts)

    @property
    def idle(self) -> bool:
        return not self.counter and not any(self.counts)


def key_of(spec: TriggerSpec, event: Occurrence) -> str | None:
    """The event's key, or None: no such attribute, empty, or longer than `KEY_MAX_CHARS`."""
    name = spec.schedule_config.group_by
    value = event.attributes.get(name) if name is not None else None
    return value if value and len(value) <= KEY_MAX_CHARS else None


def max_keys(spec: TriggerSpec) -> int:
    return spec.schedule_config.max_keys or MAX_KEYS_DEFAULT


def key_bucket_width(window_seconds: int) -> int:
    return max(1, window_seconds // KEY_WINDOW_BUCKETS)


def read_keys(rows: Iterable[tuple[str | int, ...]]) -> dict[str, KeyState]:
    return {state.key: state for state in map(KeyState.from_row, rows)}


def rows(keys: dict[str, KeyState]) -> tuple[tuple[str | int, ...], ...]:
    return tuple(state.row() for state in keys.values())


def row_buckets(spec: TriggerSpec) -> int:
    """The buckets a key's row keeps at most."""
    return ABSENCE_ROW_BUCKETS if spec.schedule_config.absence is not None else ROW_BUCKETS_MAX


def add(state: KeyState, start: int, width: int, n: int, keep: int = ROW_BUCKETS_MAX) -> KeyState:
    """``state`` with ``n`` events added to the bucket that starts at ``start`` (grid of ``width``);
    the row keeps its newest ``keep`` buckets (the base moves up, leading zeros kept: the key was
    seen before them)."""
    if not state.counts:
        return replace(state, base=start, counts=(min(n, COUNT_MAX),))
    index = (start - state.base) // width
    if index < 0:  # older than the first bucket kept (a clock step back): into the first
        index = 0
    if index >= keep:  # slide the row: only the buckets still among the newest stay
        shift = index + 1 - keep
        state, index = replace(state, base=state.base + shift * width, counts=state.counts[shift:]), keep - 1
    counts = list(state.counts) + [0] * (index + 1 - len(state.counts))
    counts[index] = min(counts[index] + n, COUNT_MAX)
    return replace(state, counts=tuple(counts))


def clip(state: KeyState, keep: int, width: int) -> KeyState:
    """``state`` with its newest ``keep`` buckets only (the base moves up, leading zeros kept)."""
    shift = len(state.counts) - keep
    return state if shift <= 0 else replace(state, base=state.base + shift * width, counts=state.counts[shift:])


def drop_before(state: KeyState, oldest: int, width: int) -> KeyState:
    """``state`` without the buckets that end at or before ``oldest`` (a slice: O(1) in the time
    passed, however far ``oldest`` is past the base)."""
    gone = max(0, (oldest - state.base) // width) if state.counts else 0
    counts = list(state.counts[gone:])
    while counts and not counts[-1]:
        counts.pop()
    return replace(state, base=state.base + gone * width if counts else 0, counts=tuple(counts))


def refreshed(state: KeyState, window: int | None, now: int) -> KeyState:
    """A key's threshold window at ``now``: buckets that left it dropped, the counter their sum
    (the same rule as events/counting.py's, with `key_bucket_width`)."""
    if window is None:
        return state
    state = drop_before(state, now - window, key_bucket_width(window))
    return replace(state, counter=sum(state.counts))


def spend(state: KeyState, threshold: int, width: int) -> KeyState:
    """The key after a run fired: the threshold used up, oldest buckets first, the surplus kept."""
    if not state.counts:
        return replace(state, counter=max(0, state.counter - threshold))
    left, counts = threshold, []
    for n in state.counts:
        used = min(left, n)
        left -= used
        counts.append(n - used)
    base = state.base
    while counts and not counts[0]:  # the base stays on the first bucket with events
        counts.pop(0)
        base += width
    return replace(state, counts=tuple(counts), base=base if counts else 0, counter=sum(counts))


def summary(keys: dict[str, KeyState], refused: int, noticed: int) -> dict[str, Any]:
    """``status.eventKeys``: how many keys are followed, the `TOP_KEYS` with the highest counters
    (ties by key, so the list is stable), and how many events new keys lost to maxKeys."""
    top = sorted(keys.values(), key=lambda s: (-s.counter, s.key))[:TOP_KEYS]
    return {"total": len(keys), "top": [{"key": s.key, "counter": s.counter} for s in top],
            "refused": refused, "refusedNoticed": noticed}
