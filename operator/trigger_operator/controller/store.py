"""The store of Triggers and Jobs, as client-go's informer cache: what the watches told us, indexed
(Triggers by namespace, Jobs by their Trigger), kept in resourceVersion order (an older copy never
replaces a newer one), re-listed (`resync_jobs`, `know`). The controller, the event intake, the web
routes and the metrics read it through this one interface; it tells the controller which Trigger
changed through ``changed`` (the informer's event handler), and decides nothing itself.

Compound Triggers (core/firing/compound.py) read their parts' status: the store indexes part ->
compounds, so that a part's firing (or its creation or deletion) brings the compounds naming it a
pass, whichever way the part's new status came in (the watch, or our own write's answer). Each
Trigger's view as a part is made once per change of its body, not per pass; a part's firing
brings a pass to the first MAX_COMPOUNDS_PER_PART compounds naming it only (creation order, then
name: the others never fire, and one enters when one of them lets go)."""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from trigger_operator.api import LABEL_TRIGGER
from trigger_operator.core.firing.compound import MAX_COMPOUNDS_PER_PART, MAX_REACHABLE_PARTS, part_names, part_view
from trigger_operator.core.plan import PartView
from trigger_operator.jobs.observe import JobView, Presence, observe_job, revision
from trigger_operator.kube.interface import Body, ClusterApi
from trigger_operator.logs import about

log = logging.getLogger("trigger_operator.controller")
Key = tuple[str, str]  # (namespace, trigger name)
_Place = tuple[str, str]  # a compound's place among those naming a part: (creationTimestamp, name)
DELETED_UIDS_KEPT = 10_000
# Namespaces `know` remembers as read whole, least recently asked first out: the event intake asks
# for any namespace a caller names, and forgetting one costs only one more LIST of it.
KNOWN_NAMESPACES_KEPT = 4096


class TriggerIndex(dict[Key, Body]):
    """The latest Trigger bodies, also indexed by namespace: the event intake asks for a namespace's
    Triggers on every request, and a scan of all of them would cost O(Triggers) each time."""

    def __init__(self) -> None:
        super().__init__()
        self.by_namespace: dict[str, dict[str, Body]] = {}

    def __setitem__(self, key: Key, body: Body) -> None:
        super().__setitem__(key, body)
        self.by_namespace.setdefault(key[0], {})[key[1]] = body

    def __delitem__(self, key: Key) -> None:
        super().__delitem__(key)
        names = self.by_namespace[key[0]]
        del names[key[1]]
        if not names:
            del self.by_namespace[key[0]]

    def forget(self, key: Key) -> None:
        """Removes ``key`` if known (use this, not ``pop``, which would leave it in the index)."""
        if key in self:
            del self[key]


@dataclass
class _Knowing:
    """One namespace's read by `know`, and how many callers wait for it (its entry goes with the last)."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class Store:
    """``changed(key)``: a Trigger, or one of its Jobs, changed in a way a decision reads.
    ``watched(namespace)``: whether the watches cover it (the operator's -n patterns)."""

    def __init__(self, api: ClusterApi, changed: Callable[[Key], None], *,
                 watched: Callable[[str], bool] = lambda namespace: True,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.api = api
        self.changed = changed
        self.watched = watched
        self.monotonic = monotonic
        self.triggers = TriggerIndex()
        self.jobs: dict[Key, dict[str, JobView]] = {}
        self.job_seen_at: dict[tuple[str, str], float] = {}  # (namespace, Job) -> monotonic
        self.deleted_uids: dict[str, None] = {}  # recently deleted Triggers, oldest first
        self._known: OrderedDict[str, None] = OrderedDict()  # namespaces read whole by `know`, LRU
        self._knowing: dict[str, _Knowing] = {}  # one read per namespace at a time, while one is wanted
        # Compound Triggers: the parts each names (and its place: creationTimestamp, name), the
        # compounds naming each part in that order, and what of each Trigger its compounds read (its
        # uid and view; a change of anything else requeues none of them).
        self._parts_of: dict[Key, tuple[tuple[str, ...], _Place]] = {}
        self._compounds_of: dict[Key, list[_Place]] = {}
        self._signals: dict[Key, tuple[Any, PartView]] = {}

    # --- inputs from the watches -----------------------------------------------------------------

    def on_trigger(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        known = self.triggers.get(key)
        if event_type == "DELETED":
            self.deleted_uids[meta.get("uid", "")] = None
            while len(self.deleted_uids) > DELETED_UIDS_KEPT:
                del self.deleted_uids[next(iter(self.deleted_uids))]
            # A Trigger deleted and created again under its name: the old one's DELETED may come
            # after the new one's ADDED; it must not remove the new one.
            if known is not None and known["metadata"].get("uid") == meta.get("uid"):
                self.triggers.forget(key)
                self.changed(key)  # its Jobs are being deleted: release them
            if key not in self.triggers:
                self._index(key, None)
            return
        if meta.get("uid") in self.deleted_uids:
            return
        if known is not None and known["metadata"].get("uid") == meta.get("uid") and _not_newer(body, known):
            return  # the echo of our own status write, or older: the write's answer gave us this copy
        self.triggers[key] = dict(body)
        self._index(key, body)
        self.changed(key)

    def on_job(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        trigger = (meta.get("labels") or {}).get(LABEL_TRIGGER)
        if not trigger:
            return
        key = (meta["namespace"], trigger)
        view = observe_job(body, deleted=event_type == "DELETED")
        jobs = self.jobs.setdefault(key, {})
        known = jobs.get(view.name)
        if known is not None and _older_view(view, known):
            return  # e.g. our create's response after the watch already told us more
        jobs[view.name] = view
        self.job_seen_at[(meta["namespace"], view.name)] = self.monotonic()
        if known is not None and replace(known, resource_version=view.resource_version) == view:
            return  # a change the decision does not read (pods scheduled, ready, counted): no pass
        self.changed(key)

    # --- what our own calls told us ----------------------------------------------------------------

    def wrote(self, key: Key, written: Body) -> bool:
        """Keeps the answer of our status write; False if the Trigger was deleted meanwhile."""
        if written["metadata"].get("uid") in self.deleted_uids:
            return False
        self.triggers[key] = written
        self._index(key, written)
        return True

    def _index(self, key: Key, body: Mapping[str, Any] | None) -> None:
        """Keeps the part -> compounds index for ``key`` (None: the Trigger is gone) and requeues the
        compounds naming it when what they read of it changed: its last firing, its being there, or
        (a compound itself) its parts; and any compound entering or leaving the first
        MAX_COMPOUNDS_PER_PART of a part's."""
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
        for compound in dict.fromkeys(requeue):
            self.changed((namespace, compound))

    def _list(self, part: Key, place: _Place) -> list[str]:
        """Adds a compound to the part's list; returns the one it pushes out of the first
        MAX_COMPOUNDS_PER_PART, if any (it needs a pass to say so)."""
        naming = self._compounds_of.setdefault(part, [])
        index = bisect.bisect_left(naming, place)
        naming.insert(index, place)
        return [naming[MAX_COMPOUNDS_PER_PART][1]] if index < MAX_COMPOUNDS_PER_PART < len(naming) else []

    def _unlist(self, part: Key, place: _Place) -> list[str]:
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

    def saw_job(self, key: Key, name: str, body: Body | None) -> None:
        """A Job as our own call returned it (None: it does not exist)."""
        if body is None:
            self.mark_gone(key, name, Presence.VANISHED)
        elif body["metadata"].get("deletionTimestamp") and not body["metadata"].get("finalizers"):
            self.on_job("DELETED", body)  # our release was the last finalizer: it is gone now
        else:
            self.on_job(None, body)

    def mark_deleted(self, key: Key, name: str, existed: bool) -> None:
        """After our delete: a Job our finalizer holds waits for its release (the plan that deleted
        it wakes for that); any other is gone."""
        job = self.jobs.get(key, {}).get(name)
        held = existed and job is not None and job.finalized
        self.mark_gone(key, name, Presence.DELETING if held else Presence.DELETED if existed else Presence.VANISHED)

    def mark_gone(self, key: Key, name: str, presence: Presence) -> None:
        jobs = self.jobs.get(key, {})
        if name in jobs and jobs[name].exists:
            jobs[name] = jobs[name].gone(presence)

    def forget_job(self, key: Key, name: str) -> None:
        jobs = self.jobs.get(key, {})
        jobs.pop(name, None)
        self.job_seen_at.pop((key[0], name), None)
        if not jobs:
            self.jobs.pop(key, None)

    def enrich_job(self, key: Key, name: str, message: str) -> None:
        """Adds what the failed pods said to a Job's message (read once: `JobView.message_enriched`)."""
        job = self.jobs.get(key, {}).get(name)
        if job is not None:
            self.jobs[key][name] = job.with_message(message)

    def forget_trigger(self, key: Key) -> None:
        """The Trigger is gone (a fresh read found it missing); its Jobs stay until released."""
        self.triggers.forget(key)

    def silent_for(self, namespace: str, job: str) -> float:
        """Seconds since the watch (or our call) last told us of the Job."""
        return self.monotonic() - self.job_seen_at.get((namespace, job), 0.0)

    # --- readers -----------------------------------------------------------------------------------

    def trigger(self, key: Key) -> Body | None:
        return self.triggers.get(key)

    def trigger_keys(self) -> list[Key]:
        return list(self.triggers)

    def holds(self, key: Key) -> bool:
        """Whether anything of the Trigger (itself, or its Jobs) is known."""
        return key in self.triggers or key in self.jobs

    def jobs_of(self, key: Key) -> dict[str, JobView]:
        """The Jobs labelled with the Trigger's name, as last seen (a copy)."""
        return dict(self.jobs.get(key, {}))

    def job(self, key: Key, name: str) -> JobView | None:
        return self.jobs.get(key, {}).get(name)

    def all_triggers(self) -> list[Body]:
        return list(self.triggers.values())

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

    def _rank(self, part: Key, compound: str) -> int:
        """How many compounds naming ``part`` come before ``compound`` (its place in the list)."""
        known = self._parts_of.get((part[0], compound))
        naming = self._compounds_of.get(part, [])
        return bisect.bisect_left(naming, known[1]) if known is not None else len(naming)

    def triggers_in(self, namespace: str) -> list[Body]:
        """The Triggers of a namespace as last seen (for the event intake)."""
        return list(self.triggers.by_namespace.get(namespace, {}).values())

    def phases(self) -> dict[str, int]:
        """Triggers by phase, as last seen (for the metrics)."""
        counts: dict[str, int] = {}
        for body in self.triggers.values():
            phase = str((body.get("status") or {}).get("phase") or "Unknown")
            counts[phase] = counts.get(phase, 0) + 1
        return counts

    def failing(self) -> list[tuple[str, str, int, bool]]:
        """(namespace, name, consecutive failures, stopped in Failed) of each Trigger whose last run
        failed, as last seen: the only per-Trigger metrics, so they exist only while a run fails."""
        found = []
        for (namespace, name), body in self.triggers.items():
            status = body.get("status") or {}
            failures = status.get("consecutiveFailures")
            failures = failures if isinstance(failures, int) else 0  # a hand-edited status may hold anything
            stopped = status.get("phase") == "Failed"
            if failures > 0 or stopped:
                found.append((namespace, name, failures, stopped))
        return found

    def event_keys(self) -> list[tuple[str, str, int]]:
        """(namespace, name, keys held) of each groupBy Trigger counting for any key, as last seen."""
        found = []
        for (namespace, name), body in self.triggers.items():
            rows = (body.get("status") or {}).get("eventKeyState")
            if isinstance(rows, list) and rows:
                found.append((namespace, name, len(rows)))
        return found

    # --- re-lists ----------------------------------------------------------------------------------

    async def know(self, namespace: str) -> None:
        """Makes the store hold every Trigger of a watched namespace, once per process: right after a
        start the watch's first listing may still be on its way, and an event acknowledged then
        would be counted by no Trigger (the event intake calls this before counting). Bounded: the
        last KNOWN_NAMESPACES_KEPT namespaces asked for are remembered, a forgotten one is read again."""
        if namespace in self._known:
            self._known.move_to_end(namespace)
            return
        if not self.watched(namespace):
            return
        knowing = self._knowing.setdefault(namespace, _Knowing())
        knowing.users += 1
        try:
            async with knowing.lock:
                if namespace not in self._known:
                    for body in await self.api.list_triggers(namespace):
                        self.on_trigger(None, body)
                    self._known[namespace] = None
                    while len(self._known) > KNOWN_NAMESPACES_KEPT:
                        self._known.popitem(last=False)
        finally:
            knowing.users -= 1
            if not knowing.users:
                del self._knowing[namespace]

    async def resync_jobs(self) -> None:
        """Reconciles the store with a fresh list of our Jobs, namespace by namespace: a watch re-list
        after an outage reports no deletions, so a Job deleted meanwhile would stay in memory for
        ever (a ghost that takes a history slot and draws a DELETE on every pass)."""
        keys: dict[str, list[Key]] = {namespace: [] for namespace in self.triggers.by_namespace}
        for key in self.jobs:  # grouped once: a scan per namespace would be O(namespaces x Triggers)
            keys.setdefault(key[0], []).append(key)
        for namespace in sorted(keys):
            try:
                items, version = await self.api.list_jobs(namespace)
            except Exception as error:  # one namespace failing stops no other's
                log.warning("could not list the Jobs of namespace %s: %s", namespace, error, extra=about(namespace))
                continue
            self.resync_namespace(namespace, items, version, keys[namespace])

    def resync_namespace(self, namespace: str, items: list[Body], list_version: str,
                         keys: list[Key] | None = None) -> None:
        """``keys``: the namespace's keys of ``jobs``, when the caller has them grouped."""
        listed = {item["metadata"]["name"] for item in items}
        as_of = int(list_version) if list_version.isdigit() else None
        for key in keys if keys is not None else [k for k in self.jobs if k[0] == namespace]:
            jobs = self.jobs.get(key)
            if jobs is None:
                continue
            for name, job in list(jobs.items()):
                newer = as_of is None or job.resource_version is None or job.resource_version > as_of
                if job.exists and name not in listed and not newer:
                    jobs[name] = job.gone(Presence.VANISHED)
                    self.changed(key)
        for item in items:  # Jobs the watch missed, or newer than we know
            known = self.jobs.get((namespace, (item["metadata"].get("labels") or {}).get(LABEL_TRIGGER, "")),
                                  {}).get(item["metadata"]["name"])
            if known is None or _older_revision(known.resource_version, revision(item["metadata"])):
                self.on_job(None, item)


def _older_revision(candidate: int | None, known: int | None) -> bool:
    """Whether a copy is older than the one we hold; when either revision is unknown, the new copy wins."""
    return candidate is not None and known is not None and candidate < known


def _older_view(candidate: JobView, known: JobView) -> bool:
    """Whether a view of a Job is no newer than the one we hold (a deletion is never older). The
    same revision is no news: ours may know more (our delete's outcome, the pods' messages), and the
    echo of our release, coming before the deletion's, would bring a deleted Job back to be deleted
    again."""
    if candidate.presence is Presence.DELETED or candidate.uid != known.uid:
        return False
    return _no_newer_revision(candidate.resource_version, known.resource_version)


def _not_newer(candidate: Mapping[str, Any], known: Mapping[str, Any]) -> bool:
    """Whether a watched copy of a Trigger is the one we hold, or older."""
    return _no_newer_revision(revision(candidate["metadata"]), revision(known["metadata"]))


def _no_newer_revision(candidate: int | None, known: int | None) -> bool:
    """Whether a copy is the one we hold or older; when either revision is unknown, the new copy wins."""
    return candidate is not None and known is not None and candidate <= known
