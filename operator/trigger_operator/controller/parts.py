"""The index of compound Triggers' parts, beside the store (controller/store.py), fed by the same
inputs (the watch, and our own writes' answers).

Compound Triggers (core/firing/compound.py) read their parts' status: the index keeps part ->
compounds, so that a part's firing (or its creation or deletion) brings the compounds naming it a
pass, whichever way the part's new status came in. Each Trigger's view as a part is made once per
change of its body, not per pass; a part's firing brings a pass to the first MAX_COMPOUNDS_PER_PART
compounds naming it only (creation order, then name: the others never fire, and one enters when one
of them lets go)."""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from trigger_operator.core.firing.compound import MAX_COMPOUNDS_PER_PART, MAX_REACHABLE_PARTS, part_names, part_view
from trigger_operator.core.plan import PartView

_Key = tuple[str, str]  # (namespace, trigger name), as the store's Key
_Place = tuple[str, str]  # a compound's place among those naming a part: (creationTimestamp, name)


class PartIndex:
    def __init__(self) -> None:
        # The parts each compound names (and its place: creationTimestamp, name), the compounds
        # naming each part in that order, and what of each Trigger its compounds read (its uid and
        # view; a change of anything else requeues none of them).
        self._parts_of: dict[_Key, tuple[tuple[str, ...], _Place]] = {}
        self._compounds_of: dict[_Key, list[_Place]] = {}
        self._signals: dict[_Key, tuple[Any, PartView]] = {}

    def index(self, key: _Key, body: Mapping[str, Any] | None) -> list[_Key]:
        """Keeps the index for ``key`` (None: the Trigger is gone); returns the compounds that need a
        pass because what they read of it changed: its last firing, its being there, or (a compound
        itself) its parts; and any compound entering or leaving the first MAX_COMPOUNDS_PER_PART of
        a part's."""
        namespace, name = key
        requeue: list[str] = []
        parts = tuple(dict.fromkeys(part_names(body.get("spec") or {}))) if body is not None else ()
        place = (str(body["metadata"].get("creationTimestamp") or ""), name) if body is not None else ("", name)
        known = self._parts_of.get(key)
        if known != ((parts, place) if parts else None):
            if known is not None:
                for part in known[0]:
                    requeue += self._unlist((namespace, part), known[1])
                del self._parts_of[key]
            if parts:
                self._parts_of[key] = (parts, place)
                for part in parts:
                    requeue += self._list((namespace, part), place)
        signal = None
        if body is not None:
            signal = (body["metadata"].get("uid"), part_view(body))
        if self._signals.get(key) != signal:
            if signal is None:
                self._signals.pop(key, None)
            else:
                self._signals[key] = signal
            requeue += [compound for _, compound in self._compounds_of.get(key, [])[:MAX_COMPOUNDS_PER_PART]]
        return [(namespace, compound) for compound in dict.fromkeys(requeue)]

    def _list(self, part: _Key, place: _Place) -> list[str]:
        """Adds a compound to the part's list; returns the one it pushes out of the first
        MAX_COMPOUNDS_PER_PART, if any (it needs a pass to say so)."""
        naming = self._compounds_of.setdefault(part, [])
        index = bisect.bisect_left(naming, place)
        naming.insert(index, place)
        return [naming[MAX_COMPOUNDS_PER_PART][1]] if index < MAX_COMPOUNDS_PER_PART < len(naming) else []

    def _unlist(self, part: _Key, place: _Place) -> list[str]:
        """Removes a compound from the part's list; returns the one it lets into the first
        MAX_COMPOUNDS_PER_PART, if any (it may fire now)."""
        naming = self._compounds_of.get(part, [])
        index = bisect.bisect_left(naming, place)
        if index == len(naming) or naming[index] != place:
            return []
        del naming[index]
        if not naming:
            del self._compounds_of[part]
        return [naming[MAX_COMPOUNDS_PER_PART - 1][1]] if index < MAX_COMPOUNDS_PER_PART <= len(naming) else []

    def part_views(self, namespace: str, compound: str, names: tuple[str, ...]) -> dict[str, PartView]:
        """What the pass of the compound ``compound`` naming ``names`` reads: the Triggers ``names``
        (each told how many compounds naming it come before this one), then every Trigger their
        compounds name in turn, breadth first, up to one more than MAX_REACHABLE_PARTS (the core
        says TooManyParts then). Names of no Trigger are left out. The views were made when the
        bodies came in: a pass only looks them up."""
        found: dict[str, PartView] = {}
        queue = list(names)
        for name in queue:  # the queue grows as compounds are met: breadth first, direct parts first
            if len(found) > MAX_REACHABLE_PARTS:
                break
            signal = self._signals.get((namespace, name))
            if name in found or signal is None:
                continue
            view = signal[1]
            if name in names:
                view = replace(view, compounds_before=self._rank((namespace, name), compound))
            found[name] = view
            queue.extend(view.parts)
        return found

    def _rank(self, part: _Key, compound: str) -> int:
        """How many compounds naming ``part`` come before ``compound`` (its place in the list)."""
        known = self._parts_of.get((part[0], compound))
        naming = self._compounds_of.get(part, [])
        return bisect.bisect_left(naming, known[1]) if known is not None else len(naming)
