"""Which event Triggers of a namespace an event counts for, kept up to date as the store changes,
so that a request costs O(its events), not O(the namespace's Triggers). No I/O.

The rule, in one place: an event counts for a Trigger of its namespace when the Trigger's spec is a
valid event spec, the Trigger is not disabled, its status can be read (one that cannot counts
nothing: its write would fail), and `events.counting.applies_to` holds. The index only narrows the
Triggers `applies_to` is asked about, by the ``eventType`` it requires.

The store tells the index of every change (`changed`); the index only notes the newest body of a
Trigger then (O(1)), and takes the notes of a namespace in when that namespace is asked about, so
namespaces nobody sends events to cost no spec parse. A note with the same uid and generation as
the Trigger already known keeps its parsed spec (a status write, the usual change, parses nothing);
readability is judged once per body, and only for a Trigger an event matches.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from trigger_operator.events.cloudevents import Occurrence
from trigger_operator.events.counting import applies_to
from trigger_operator.model.spec import State, TriggerSpec
from trigger_operator.model.status import read_status

log = logging.getLogger("trigger_operator.intake")

Key = tuple[str, str]
Body = Mapping[str, Any]


@dataclass
class _Entry:
    """One Trigger as last noted: what decides whether it counts events."""

    uid: object
    generation: object
    spec: TriggerSpec | None  # its event spec when it counts events (valid, not disabled), else None
    body: Body
    readable: bool | None = None  # its status reads (judged on first need, once per body)

    def reads(self) -> bool:
        if self.readable is None:
            self.readable = read_status(self.body.get("status"))[1] is None
        return self.readable


class _Namespace:
    def __init__(self) -> None:
        self.entries: dict[str, _Entry] = {}
        self.by_type: dict[str, dict[str, _Entry]] = {}  # eventType -> name -> entry (counting ones)

    def take(self, name: str, body: Body | None, spec_of: Callable[[Body], TriggerSpec | None]) -> None:
        old = self.entries.pop(name, None)
        if old is not None and old.spec is not None:
            self._unindex(old.spec, name)
        if body is None:
            return
        meta = body["metadata"]
        uid, generation = meta.get("uid"), meta.get("generation")
        if old is not None and old.uid == uid and old.generation == generation:
            spec = old.spec  # the same spec (a status write, a label): not parsed again
        else:
            parsed = spec_of(body)
            spec = parsed if parsed is not None and parsed.state is not State.DISABLED else None
        entry = self.entries[name] = _Entry(uid, generation, spec, body)
        if spec is not None:
            self.by_type.setdefault(str(spec.schedule_config.event_type), {})[name] = entry

    def _unindex(self, spec: TriggerSpec, name: str) -> None:
        event_type = str(spec.schedule_config.event_type)
        named = self.by_type[event_type]
        del named[name]
        if not named:
            del self.by_type[event_type]


class EventCandidates:
    """``spec_of(body)``: a Trigger's event spec, or None (another type, or invalid): parsed where
    the caller caches it, once per generation."""

    def __init__(self, spec_of: Callable[[Body], TriggerSpec | None]) -> None:
        self._spec_of = spec_of
        self._noted: dict[str, dict[str, Body | None]] = {}  # namespace -> name -> newest body, not taken in yet
        self._namespaces: dict[str, _Namespace] = {}  # namespaces taken in that hold Triggers

    def changed(self, key: Key, body: Body | None) -> None:
        """The store's newest copy of ``key`` (None: gone)."""
        namespace, name = key
        state = self._namespaces.get(namespace)
        if body is None and (state is None or name not in state.entries):
            noted = self._noted.get(namespace)
            if noted is not None:  # never taken in: nothing to undo, nothing to keep (churning names)
                noted.pop(name, None)
                if not noted:
                    del self._noted[namespace]
            return
        self._noted.setdefault(namespace, {})[name] = body

    def matching(self, namespace: str, events: Sequence[Occurrence]) -> list[list[tuple[Key, TriggerSpec]]]:
        """For each of ``events``, the Triggers it counts for."""
        state = self._taken_in(namespace)
        if state is None:
            return [[] for _ in events]
        return [[((namespace, name), entry.spec) for name, entry in state.by_type.get(event.type, {}).items()
                 if entry.spec is not None and applies_to(entry.spec, event) and entry.reads()] for event in events]

    def of(self, namespace: str) -> list[tuple[Key, TriggerSpec]]:
        """Every Trigger of the namespace that counts events now (whatever their type)."""
        state = self._taken_in(namespace)
        if state is None:
            return []
        return [((namespace, name), entry.spec) for name, entry in state.entries.items()
                if entry.spec is not None and entry.reads()]

    def _taken_in(self, namespace: str) -> _Namespace | None:
        noted = self._noted.get(namespace)
        state = self._namespaces.get(namespace)
        if noted:
            if state is None:
                state = self._namespaces[namespace] = _Namespace()
            failed: dict[str, Body | None] = {}
            for name, body in noted.items():
                try:
                    state.take(name, body, self._spec_of)
                except Exception:  # a bug of ours (an author's bad spec is a SpecError: not counting)
                    log.exception("Trigger %s/%s not taken in for events; asked again next time", namespace, name)
                    failed[name] = body  # kept for the next ask; the others are taken in
            if failed:
                self._noted[namespace] = failed
            else:
                del self._noted[namespace]
            if not state.entries:  # all gone: an empty namespace keeps nothing
                del self._namespaces[namespace]
                return None
        return state
