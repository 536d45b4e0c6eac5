"""The store of Triggers and Jobs, as client-go's informer cache: what the watches told us, indexed
(Triggers by namespace, Jobs by their Trigger), kept in resourceVersion order (an older copy never
replaces a newer one), re-listed (`resync_jobs`, `know`). The controller, the event intake, the web
routes and the metrics read it through this one interface; it tells the controller which Trigger
changed through ``changed`` (the informer's event handler), and decides nothing itself.

Compound Triggers' parts are indexed beside it (controller/parts.py), fed by the same inputs."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from trigger_operator.api import LABEL_TRIGGER
from trigger_operator.controller.parts import PartIndex
from trigger_operator.core.plan import PartView
from trigger_operator.jobs.observe import JobView, Presence, observe_job, revision
from trigger_operator.kube.interface import Body, ClusterApi
from trigger_operator.logs import about

log = logging.getLogger("trigger_operator.controller")
Key = tuple[str, str]  # (namespace, trigger name)
DELETED_UIDS_KEPT = 10_000
# Namespaces `know` remembers as read whole, least recently asked first out: the event intake asks
# for any namespace a caller names, and forgetting one costs only one more LIST of it.
KNOWN_NAMESPACES_KEPT = 4096


Follower = Callable[[Key, Body | None], None]


class TriggerIndex(dict[Key, Body]):
    """The latest Trigger bodies, also indexed by namespace, and told to followers as they change:
    the event intake keeps its own index of which Triggers count events (intake/candidates.py) from
    these changes, where a scan of the namespace per request would cost O(Triggers) each time."""

    def __init__(self) -> None:
        super().__init__()
        self.by_namespace: dict[str, dict[str, Body]] = {}
        self._followers: list[Follower] = []

    def follow(self, follower: Follower) -> None:
        """``follower(key, body)`` for every body held now, then on every change (None: gone). A
        follower must be quick and must not change the index: it runs inside the change."""
        for key, body in self.items():
            follower(key, body)
        self._followers.append(follower)

    def __setitem__(self, key: Key, body: Body) -> None:
        super().__setitem__(key, body)
        self.by_namespace.setdefault(key[0], {})[key[1]] = body
        for follower in self._followers:
            follower(key, body)

    def __delitem__(self, key: Key) -> None:
        super().__delitem__(key)
        names = self.by_namespace[key[0]]
        del names[key[1]]
        if not names:
            del self.by_namespace[key[0]]
        for follower in self._followers:
            follower(key, None)

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
    ``watched(namespace)``: whether the watches cover it (the operator's -n patterns).
    ``keeps(key)``: whether this replica keeps the Jobs of a Trigger (in the sharded mode, only
    those of the shards it holds: memory per replica falls with the number of replicas)."""

    def __init__(self, api: ClusterApi, changed: Callable[[Key], None], *,
                 watched: Callable[[str], bool] = lambda namespace: True,
                 keeps: Callable[[Key], bool] = lambda key: True,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.api = api
        self.changed = changed
        self.watched = watched
        self.keeps = keeps
        self.monotonic = monotonic
        self.triggers = TriggerIndex()
        self.jobs: dict[Key, dict[str, JobView]] = {}
        self.job_seen_at: dict[tuple[str, str], float] = {}  # (namespace, Job) -> monotonic
        self.deleted_uids: dict[str, None] = {}  # recently deleted Triggers, oldest first
        self._known: OrderedDict[str, None] = OrderedDict()  # namespaces read whole by `know`, LRU
        self._knowing: dict[str, _Knowing] = {}  # one read per namespace at a time, while one is wanted
        self.parts = PartIndex()

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
        self.triggers[key] = kept_trigger(body)
        self._index(key, body)
        self.changed(key)

    def on_job(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        trigger = (meta.get("labels") or {}).get(LABEL_TRIGGER)
        if not trigger:
            return
        key = (meta["namespace"], trigger)
        if not self.keeps(key):  # another replica's shard (the unfiltered resync lists it too)
            return
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
        """Keeps the answer of our status write; False if the Trigger was deleted meanwhile. A newer
        copy of the same Trigger the watch delivered while the write was on its way (an edit, a
        pause) stays, as in `on_trigger`: the answer is older, and the watch never sends that copy
        again. The Trigger gets a pass, to decide on the newer copy."""
        if written["metadata"].get("uid") in self.deleted_uids:
            return False
        known = self.triggers.get(key)
        if known is not None and known["metadata"].get("uid") == written["metadata"].get("uid") \
                and _older_revision(revision(written["metadata"]), revision(known["metadata"])):
            self.changed(key)
            return True
        self.triggers[key] = kept_trigger(written)
        self._index(key, written)
        return True

    def _index(self, key: Key, body: Mapping[str, Any] | None) -> None:
        """The compounds naming ``key`` get a pass when what they read of it changed."""
        for compound in self.parts.index(key, body):
            self.changed(compound)

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

    def forget_unkept(self) -> None:
        """Drops the Jobs of Triggers no longer kept (shards handed over): their new holder's watch
        lists them, and ours lists them again should their shard come back."""
        for key in [k for k in self.jobs if not self.keeps(k)]:
            for name in list(self.jobs[key]):
                self.job_seen_at.pop((key[0], name), None)
            del self.jobs[key]

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
        """What the pass of a compound Trigger reads of its parts (controller/parts.py)."""
        return self.parts.part_views(namespace, compound, names)

    def follow_triggers(self, follower: Follower) -> None:
        """Tells ``follower`` every Trigger held now and every change after (`TriggerIndex.follow`)."""
        self.triggers.follow(follower)

    def triggers_in(self, namespace: str) -> list[Body]:
        """The Triggers of a namespace as last seen (for the event intake)."""
        return list(self.triggers.by_namespace.get(namespace, {}).values())

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


def kept_trigger(body: Mapping[str, Any]) -> Body:
    """The copy of a Trigger the store keeps: the body without ``metadata.managedFields``, which no
    reader of the store reads (the REST API reads Triggers with the caller's token, not from here)
    and which repeats the shape of the whole spec and status: at 5,000 Triggers, the largest part
    of the operator's memory not needed. Shallow: the rest is shared with the body given."""
    meta = body["metadata"]
    if "managedFields" not in meta:
        return dict(body)
    return {**body, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}


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
