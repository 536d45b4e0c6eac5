"""The one scheduler for all Triggers: the imperative shell around `core.reconcile`.

Watch events (delivered by kopf) keep an in-memory view of every Trigger and of the Jobs labelled
with a Trigger, and put the Trigger's key on a delaying queue. Workers take due keys, ask the pure
core what to do, and carry the plan out: status first (guarded by resourceVersion), then Jobs,
then Events; and put the key back for the plan's wake-up time. No timer or task per Trigger.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from trigger_operator.config import OperatorConfig
from trigger_operator.core.reconcile import Notice, Plan, TriggerView, reconcile
from trigger_operator.jobs.catalog import parse_catalog
from trigger_operator.jobs.observe import JobPhase, JobView, failure_message, observe_job, revision
from trigger_operator.jobs.render import LABEL_TRIGGER
from trigger_operator.kube.api import Conflict, Gone, KubeApi, Rejected
from trigger_operator.model.status import Execution, Outcome, TriggerStatus, parse_time
from trigger_operator.scheduler.queue import DelayQueue

log = logging.getLogger("trigger_operator.scheduler")
Key = tuple[str, str]  # (namespace, trigger name)
DELETED_UIDS_KEPT = 10_000
# A running Job of an active run not heard of for this long is read again from the API server.
STALE_JOB_SECONDS = 300.0


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def status_patch(current: Mapping[str, Any] | None, new: TriggerStatus) -> dict[str, Any]:
    """The merge patch from the status as stored to ``new``: changed keys only (None removes one).
    Compared with the stored dict, not a parsed copy, so that fields still at their defaults
    (``consecutiveFailures: 0``) are written once and shown to users."""
    current = current or {}
    return {k: v for k, v in new.to_dict().items() if current.get(k) != v}


def trigger_view(body: Mapping[str, Any]) -> TriggerView:
    meta = body["metadata"]
    created = parse_time(meta.get("creationTimestamp")) or utc_now()
    try:
        status = TriggerStatus.from_dict(body.get("status"))
    except (KeyError, TypeError, ValueError) as error:
        # A status edited by hand into something unreadable: start it afresh (the next write
        # replaces every broken key) rather than retry this Trigger forever.
        log.warning("status of %s/%s is unreadable (%s); starting it afresh", meta["namespace"], meta["name"], error)
        status = TriggerStatus()
    return TriggerView(namespace=meta["namespace"], name=meta["name"], uid=meta.get("uid", ""),
                       generation=int(meta.get("generation") or 1), created_at=created,
                       annotations=meta.get("annotations") or {}, spec=body.get("spec") or {}, status=status)


@dataclass
class _Memory:
    """What the watches told us: the latest Trigger bodies and Job views."""

    triggers: dict[Key, dict[str, Any]] = field(default_factory=dict)
    jobs: dict[Key, dict[str, JobView]] = field(default_factory=dict)
    job_seen_at: dict[tuple[str, str], float] = field(default_factory=dict)  # (namespace, Job) -> monotonic
    deleted_uids: dict[str, None] = field(default_factory=dict)  # recently deleted Triggers, oldest first


class Scheduler:
    def __init__(self, api: KubeApi, config: OperatorConfig, clock: Callable[[], dt.datetime] = utc_now) -> None:
        self.api = api
        self.config = config
        self.clock = clock
        self.memory = _Memory()
        self.queue: DelayQueue[Key] = DelayQueue(clock)
        self.catalog: dict[str, dict[str, Any]] = {}
        self._event_tasks: set[asyncio.Task[None]] = set()  # kept referenced until done

    # --- inputs from the watches -----------------------------------------------------------------

    def on_trigger(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        known = self.memory.triggers.get(key)
        if event_type == "DELETED":
            self.memory.deleted_uids[meta.get("uid", "")] = None
            while len(self.memory.deleted_uids) > DELETED_UIDS_KEPT:
                del self.memory.deleted_uids[next(iter(self.memory.deleted_uids))]
            # A Trigger deleted and created again under its name: the old one's DELETED may come
            # after the new one's ADDED; it must not remove the new one.
            if known is not None and known["metadata"].get("uid") == meta.get("uid"):
                self.memory.triggers.pop(key, None)
                self.queue.forget(key)
            return
        if meta.get("uid") in self.memory.deleted_uids:
            return
        if known is not None and known["metadata"].get("uid") == meta.get("uid") and _older(body, known):
            return  # our own status write already gave us a newer copy
        self.memory.triggers[key] = dict(body)
        self.queue.add(key)

    def on_job(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        trigger = (meta.get("labels") or {}).get(LABEL_TRIGGER)
        if not trigger:
            return
        key = (meta["namespace"], trigger)
        view = observe_job(body, deleted=event_type == "DELETED")
        jobs = self.memory.jobs.setdefault(key, {})
        known = jobs.get(view.name)
        if known is not None and _older_view(view, known):
            return  # e.g. our create's response after the watch already told us more
        jobs[view.name] = view
        self.memory.job_seen_at[(meta["namespace"], view.name)] = time.monotonic()
        self.queue.add(key)

    def on_catalog(self, data: Mapping[str, str] | None) -> None:
        self.catalog, problems = parse_catalog(data)
        for problem in problems:
            log.warning("actions ConfigMap %s/%s: %s", self.config.actions.namespace,
                        self.config.actions.config_map, problem)
        log.info("action templates: %s", ", ".join(sorted(self.catalog)) or "none")
        for key in self.memory.triggers:
            self.queue.add(key)

    # --- the loop --------------------------------------------------------------------------------

    async def run(self) -> None:
        workers = [asyncio.create_task(self._worker()) for _ in range(self.config.scheduler.workers)]
        try:
            await asyncio.gather(*workers)
        finally:
            for w in workers:
                w.cancel()

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                await self.sync(key)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                retry = self.clock() + dt.timedelta(seconds=self.config.scheduler.retry_seconds)
                log.warning("reconcile of %s/%s failed, retrying at %s: %s", *key, retry.time(), error,
                            exc_info=not isinstance(error, (Conflict, Rejected)))
                self.queue.add(key, retry)
            finally:
                self.queue.done(key)

    async def sync(self, key: Key) -> None:
        """One reconcile of one Trigger."""
        body = self.memory.triggers.get(key)
        if body is None:
            self._forget_jobs(key)
            return
        view = trigger_view(body)
        jobs = await self._jobs_for(view)
        now = self.clock()
        plan = reconcile(view, jobs, self.catalog, now)
        written = await self._write_status(key, body, plan.status)
        if written is None:
            return
        await self._carry_out(key, written, plan, now)
        if plan.wake_at is not None:
            self.queue.add(key, plan.wake_at)
        if plan.status.active:  # look at running Jobs now and then, should their watch events be lost
            self.queue.add(key, self.clock() + dt.timedelta(seconds=STALE_JOB_SECONDS))

    async def _carry_out(self, key: Key, body: dict[str, Any], plan: Plan, now: dt.datetime) -> None:
        # Deletes first: under concurrencyPolicy Replace the old Job must be gone before the new one.
        for name in plan.delete:
            await self.api.delete_job(key[0], name)
            log.info("deleted Job %s/%s", key[0], name)
        failed: list[Execution] = []
        for new in plan.create:
            try:
                created = await self.api.create_job(key[0], new.manifest)
            except Rejected as error:
                failed.append(Execution(name=new.run.name, kind=new.run.kind, scheduled_time=new.run.scheduled_time,
                                        outcome=Outcome.FAILED, finished_at=now,
                                        error=f"the API server refused Job {new.run.name}: {error}"))
                continue
            if created is not None:
                self.on_job("ADDED", created)
                log.info("created Job %s/%s", key[0], new.run.name)
        for notice in plan.notices:
            self._post_later(body, notice, now)
        if failed:
            await self._record_refused_creates(key, failed, now)

    async def _write_status(self, key: Key, body: dict[str, Any], status: TriggerStatus) -> dict[str, Any] | None:
        """Writes what changed in status, if anything, guarded by the resourceVersion we decided on.
        Returns the Trigger as written, or None when someone else wrote first (the newest copy is
        read and the key comes back at once) or the Trigger is gone."""
        patch = status_patch(body.get("status"), status)
        if not patch:
            return body
        try:
            written = await self.api.patch_trigger_status(*key, body["metadata"]["resourceVersion"], patch)
        except Conflict:
            await self._refresh(key)
            self.queue.add(key)
            return None
        except Gone:
            self.memory.triggers.pop(key, None)
            return None
        if written["metadata"].get("uid") in self.memory.deleted_uids:
            return None  # deleted while we wrote: make no Job for it
        self.memory.triggers[key] = written
        return written

    async def _record_refused_creates(self, key: Key, failed: list[Execution], now: dt.datetime) -> None:
        """A Job the API server refuses (e.g. an invalid template) is a failed run, counted now."""
        body = self.memory.triggers[key]
        status = trigger_view(body).status  # the one (lenient) way status is read
        for execution in failed:
            status = status.with_run_finished(execution)
        written = await self._write_status(key, body, status)
        if written is None:
            return
        for execution in failed:
            self._post_later(written, Notice("Warning", "JobCreateFailed", execution.error or ""), now)
        self.queue.add(key)  # the failure may reach maxConsecutiveFailures

    def _post_later(self, body: Mapping[str, Any], notice: Notice, now: dt.datetime) -> None:
        """Events are best effort and must not hold up the next Trigger: they are posted in the
        background, in order per reconcile (each task is one Event)."""
        task = asyncio.create_task(self.api.post_event(body, notice, now))
        self._event_tasks.add(task)
        task.add_done_callback(self._event_tasks.discard)

    async def _jobs_for(self, view: TriggerView) -> dict[str, JobView]:
        """The Trigger's Jobs as the watch saw them, completed by live reads where the watch may
        lag (a run in status.active with no Job seen) and by pod messages for failed runs."""
        key = (view.namespace, view.name)
        jobs = self.memory.jobs.setdefault(key, {})
        for run in view.status.active:
            current = jobs.get(run.name)
            # Not seen at all, or running but not heard of for long: a watch re-list after an
            # outage reports no DELETED for Jobs that went meanwhile, so ask the API server.
            silent_for = time.monotonic() - self.memory.job_seen_at.get((view.namespace, run.name), 0.0)
            if current is None or (not current.finished and silent_for > STALE_JOB_SECONDS):
                job = await self.api.get_job(view.namespace, run.name)
                if job is not None:
                    self.on_job(None, job)
                elif current is not None:
                    jobs[run.name] = dataclasses.replace(current, deleted=True)
            current = jobs.get(run.name)
            if current is not None and current.phase is JobPhase.FAILED and not current.message_enriched:
                pods = await self.api.job_pods(view.namespace, run.name)
                jobs[run.name] = current.with_message(failure_message(current.message, pods))
        # Forget Jobs that are gone and counted.
        active = {r.name for r in view.status.active}
        for name in [n for n, j in jobs.items() if j.deleted and n not in active]:
            del jobs[name]
            self.memory.job_seen_at.pop((view.namespace, name), None)
        # A Trigger deleted and created again under the same name must not see its predecessor's Jobs.
        return {n: j for n, j in jobs.items() if j.owner_uid in (None, view.uid)}

    def _forget_jobs(self, key: Key) -> None:
        for name in self.memory.jobs.pop(key, {}):
            self.memory.job_seen_at.pop((key[0], name), None)

    async def _refresh(self, key: Key) -> None:
        try:
            self.memory.triggers[key] = await self.api.get_trigger(*key)
        except Gone:
            self.memory.triggers.pop(key, None)


def _older_revision(candidate: int | None, known: int | None) -> bool:
    """Whether a copy is older than the one we hold; when either revision is unknown, the new copy wins."""
    return candidate is not None and known is not None and candidate < known


def _older_view(candidate: JobView, known: JobView) -> bool:
    """Whether a view of a Job is older than the one we hold (a deletion is never older)."""
    if candidate.deleted or candidate.uid != known.uid:
        return False
    return _older_revision(candidate.resource_version, known.resource_version)


def _older(candidate: Mapping[str, Any], known: Mapping[str, Any]) -> bool:
    """Whether a watched copy of a Trigger is older than the one we hold."""
    return _older_revision(revision(candidate["metadata"]), revision(known["metadata"]))
